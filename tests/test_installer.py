"""The installers' scripts, without PyInstaller: the Linux tarball and its install.sh on a stand-in
build, and what spdesk.spec gives PyInstaller, run against stand-ins of PyInstaller's names."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"
posix_only = pytest.mark.skipif(os.name != "posix", reason="bash and tar: the Linux installer")


def _stand_in_build(dist: Path) -> None:
    """dist/spdesk as PyInstaller leaves it, in miniature: the program and its _internal folder."""
    program = dist / "spdesk" / "spdesk"
    (dist / "spdesk" / "_internal").mkdir(parents=True)
    (dist / "spdesk" / "_internal" / "base_library.zip").write_bytes(b"zip")
    program.write_text("#!/bin/sh\necho spdesk 0.1.0\n")
    program.chmod(0o755)


def _bash(script: Path, *args: str, home: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"}
    if home:
        env["HOME"] = str(home)
    done = subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@posix_only
def test_the_linux_tarball_holds_install_sh_which_installs_and_uninstalls(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _stand_in_build(dist)
    said = _bash(INSTALLER / "linux" / "pack.sh", str(dist), "0.1.0")
    (archive,) = dist.glob("spdesk-0.1.0-linux-*.tar.gz")
    assert f"archive: {archive}" in said
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {
            "spdesk/spdesk",
            "spdesk/_internal/base_library.zip",
            "spdesk/install.sh",
            "spdesk/spdesk.desktop",
            "spdesk/spdesk-256.png",
        } <= names
        tar.extractall(tmp_path / "unpacked", filter="data")

    home = tmp_path / "home"  # the user's, as the README's commands run them
    _bash(tmp_path / "unpacked" / "spdesk" / "install.sh", home=home)
    app = home / ".local" / "share" / "spdesk-app"
    entry = home / ".local" / "share" / "applications" / "spdesk.desktop"
    icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "spdesk.png"
    link = home / ".local" / "bin" / "spdesk"
    assert (app / "spdesk").is_file() and icon.is_file() and link.resolve() == app / "spdesk"
    assert f'Exec="{app / "spdesk"}" gui %F' in entry.read_text().splitlines()

    said = _bash(app / "install.sh", "--uninstall", home=home)
    assert "spdesk removed" in said
    assert not any(p.exists() or p.is_symlink() for p in (app, entry, icon, link))


def test_build_sh_packs_with_the_tested_script() -> None:
    build = (INSTALLER / "build.sh").read_text()
    assert 'bash installer/linux/pack.sh dist "$version"' in build
    assert "--self-test" in build  # a frozen app that cannot start fails the build


def _run_spec(monkeypatch: pytest.MonkeyPatch, platform: str = "linux") -> dict[str, Any]:
    """Execute spdesk.spec with stand-ins for PyInstaller: what Analysis was given."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda name: [f"{name}.stub"]  # type: ignore[attr-defined]
    hooks.copy_metadata = lambda name: []  # type: ignore[attr-defined]
    hooks.collect_data_files = lambda *a, **k: []  # type: ignore[attr-defined]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "platform", platform)
    given: dict[str, Any] = {}

    def analysis(scripts: list[str], **options: Any) -> types.SimpleNamespace:
        given.update(options, scripts=scripts)
        return types.SimpleNamespace(pure=[], scripts=[], binaries=[], datas=[])

    spec = INSTALLER / "spdesk.spec"
    namespace = {
        "SPECPATH": str(INSTALLER),
        "Analysis": analysis,
        **{name: lambda *a, **k: None for name in ("PYZ", "EXE", "COLLECT", "BUNDLE")},
    }
    exec(compile(spec.read_text(), str(spec), "exec"), namespace)
    return given


def test_the_spec_builds_from_the_checkout_however_spdesk_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = _run_spec(monkeypatch)
    assert given["pathex"] == [str(REPO)]
    assert "spdesk.resources" in given["hiddenimports"]
    resources = REPO / "resources"
    for kind in ("perturbations", "generators"):
        file = str(resources / kind / "default.safetensors")
        assert (file, str(Path("spdesk", "resources", kind))) in given["datas"]
    assert (str(resources / "icons" / "spdesk-256.png"), str(Path("spdesk/resources/icons"))) in (
        given["datas"]
    )
    assert not [src for src, _ in given["datas"] if src.endswith((".py", ".pyc"))]
    assert Path(given["scripts"][0]) == INSTALLER / "spdesk_entry.py"


def test_the_resources_hook_finds_the_package_where_pyproject_maps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (hooks,) = _run_spec(monkeypatch)["hookspath"]
    path = Path(hooks) / "pre_find_module_path" / "hook-spdesk.resources.py"
    spec = importlib.util.spec_from_file_location("hook_spdesk_resources", path)
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    api = types.SimpleNamespace(search_dirs=["site-packages/spdesk"])
    hook.pre_find_module_path(api)
    (found,) = api.search_dirs
    assert (Path(found) / "resources" / "__init__.py").is_file()  # resources/, as pip maps it


def test_the_mac_spec_names_the_icon_step_when_the_icon_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if (INSTALLER / "macos" / "spdesk.icns").is_file():
        pytest.skip("this checkout has the macOS icon")
    with pytest.raises(SystemExit, match=r"spdesk.icns is missing: make it as installer/macos"):
        _run_spec(monkeypatch, platform="darwin")
