"""The installers' scripts, without PyInstaller: the Linux tarball and its install.sh on a stand-in
build, and what spdesk.spec gives PyInstaller, run against stand-ins of PyInstaller's names."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
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
    for notice in ("LICENSE", "NOTICES.txt", "licenses/LGPL-3.0.txt"):  # the spec's notice_datas
        (dist / "spdesk" / "_internal" / notice).parent.mkdir(parents=True, exist_ok=True)
        (dist / "spdesk" / "_internal" / notice).write_text(notice)
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
            "spdesk/LICENSE",  # where a person unpacking it looks, not only in _internal
            "spdesk/NOTICES.txt",
            "spdesk/licenses/LGPL-3.0.txt",
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
    stale = app / "_internal" / "libstale-from-an-older-build.so"
    stale.write_bytes(b"")
    _bash(tmp_path / "unpacked" / "spdesk" / "install.sh", home=home)  # an upgrade
    assert (app / "spdesk").is_file() and not stale.exists(), "the old build's files stayed"
    _bash(app / "install.sh", home=home)  # run from the installed folder: it stays whole
    assert (app / "spdesk").is_file() and (app / "_internal" / "base_library.zip").is_file()

    said = _bash(app / "install.sh", "--uninstall", home=home)
    assert "spdesk removed" in said
    assert not any(p.exists() or p.is_symlink() for p in (app, entry, icon, link))


def test_build_sh_packs_with_the_tested_script() -> None:
    build = (INSTALLER / "build.sh").read_text()
    assert 'bash installer/linux/pack.sh dist "$version"' in build
    assert "--self-test" in build  # a frozen app that cannot start fails the build


# What a Linux Analysis finds beside torch on a build machine with the CUDA toolkit: the runtime
# that transformers and kernels load through ctypes, and the symlink to it.
CUDA_TOOLKIT_RUNTIME = [
    ("libcudart.so.13", "/usr/local/cuda-13.0/lib/libcudart.so.13", "BINARY"),
    ("libcudart.so", "libcudart.so.13", "SYMLINK"),
]
TORCH_LIBRARY = ("torch/lib/libtorch_cpu.so", "/venv/torch/lib/libtorch_cpu.so", "BINARY")
# A torch source file (torch's hook collects them as data) that is no CUDA runtime.
TORCH_SOURCE = (
    "torch/_inductor/codegen/cutlass/lib_extensions/cutlass_mock_imports/cuda/cudart.py",
    "/venv/torch/_inductor/codegen/cutlass/lib_extensions/cutlass_mock_imports/cuda/cudart.py",
    "DATA",
)
# What Analysis collects by itself for spdesk/__init__.py's importlib.metadata.version("spdesk"):
# the whole dist-info folder, past the spec's datas.
SPDESK_INFO = "spdesk-0.1.0.dist-info"
FOUND_METADATA = [
    (f"{SPDESK_INFO}/{name}", f"/venv/{SPDESK_INFO}/{name}", "DATA")
    for name in ("METADATA", "direct_url.json")
]


def _run_spec(
    monkeypatch: pytest.MonkeyPatch,
    platform: str = "linux",
    *,
    cuda_torch: bool = False,
    metadata: dict[str, list[tuple[str, str]]] | None = None,
    found: tuple[tuple[str, str, str], ...] = (),
) -> dict[str, Any]:
    """Execute spdesk.spec with stand-ins for PyInstaller: what Analysis was given, and under
    "collected" the binaries and datas COLLECT was given. ``metadata``: copy_metadata's answers."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda name: [f"{name}.stub"]  # type: ignore[attr-defined]
    hooks.copy_metadata = lambda name: (metadata or {}).get(name, [])  # type: ignore[attr-defined]
    hooks.collect_data_files = lambda name, **k: [  # type: ignore[attr-defined]
        (f"/site-packages/{name}/data.json", name)
    ]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "path", [str(INSTALLER), *sys.path])
    import bundle_inputs

    monkeypatch.setattr(bundle_inputs, "torch_has_cuda", lambda: cuda_torch, raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    given: dict[str, Any] = {}

    def analysis(scripts: list[str], **options: Any) -> types.SimpleNamespace:
        given.update(options, scripts=scripts)
        binaries = [TORCH_LIBRARY, *CUDA_TOOLKIT_RUNTIME, *found]
        datas = [*options["datas"], *FOUND_METADATA, TORCH_SOURCE]
        return types.SimpleNamespace(pure=[], scripts=[], binaries=binaries, datas=datas)

    def collect(*parts: Any, **options: Any) -> None:
        given["collected"] = [entry for part in parts[-2:] for entry in part]

    spec = INSTALLER / "spdesk.spec"
    namespace = {
        "SPECPATH": str(INSTALLER),
        "workpath": tempfile.mkdtemp(prefix="spdesk-spec-"),  # PyInstaller's build folder
        "Analysis": analysis,
        "COLLECT": collect,
        **{name: lambda *a, **k: None for name in ("PYZ", "EXE", "BUNDLE")},
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
    for icon in ("spdesk-256.png", "check-mark.svg"):  # the app's and a ticked box's
        assert (str(resources / "icons" / icon), str(Path("spdesk/resources/icons"))) in (
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


def test_the_spec_collects_the_data_files_kernels_reads_when_transformers_imports_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # transformers 5 requires kernels and imports it whenever it is installed; kernels reads
    # _internals/python_depends.json at import, so without it no diffusers encoder imports.
    datas = _run_spec(monkeypatch)["datas"]
    assert ("/site-packages/kernels/data.json", "kernels") in datas


def test_the_bundle_carries_the_licence_and_the_bundled_libraries_notices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No licence text was in the repository, the wheel or the bundle, and the bundle ships Qt
    (PySide6, LGPL-3.0 or GPL) without a word of it."""
    datas = _run_spec(monkeypatch)["datas"]
    placed = {Path(source).name: target for source, target in datas}
    assert placed["LICENSE"] == "." and placed["NOTICES.txt"] == "."
    notices = next(Path(s) for s, _t in datas if Path(s).name == "NOTICES.txt").read_text()
    assert notices.startswith("spdesk is released under the MIT licence:")
    assert "Permission is hereby granted" in notices
    pyside = [line for line in notices.splitlines() if line.startswith("- PySide6")]
    assert pyside and "LGPL-3.0" in pyside[0]
    assert any(line.startswith("- torch ") for line in notices.splitlines())
    # The LGPL's own text and the GPL's it builds on travel with the Qt libraries.
    texts = {Path(s).name: Path(s) for s, t in datas if t == "licenses"}
    assert set(texts) == {"LGPL-3.0.txt", "GPL-3.0.txt"}
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in texts["LGPL-3.0.txt"].read_text()
    assert "Version 3, 29 June 2007" in texts["GPL-3.0.txt"].read_text()
    assert "licenses/LGPL-3.0.txt" in notices


def test_the_wheel_and_sdist_name_the_licence_file() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_the_wheel_names_every_package_and_data_folder_so_setuptools_ignores_none() -> None:
    """A folder setuptools finds but is not told of "would be ignored" (its warning): the
    bundled perturbation and generator would go missing from a wheel built by a later one."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"spdesk": REPO / "spdesk", "spdesk.resources": REPO / "resources"}
    found = {
        ".".join((name, *path.relative_to(root).parts))
        for name, root in folders.items()
        for path in [root, *root.rglob("*")]
        if path.is_dir() and path.name != "__pycache__" and any(path.iterdir())
    }
    assert set(tool["packages"]) == found
    assert tool["package-dir"] == {"spdesk": "spdesk", "spdesk.resources": "resources"}


def test_the_bundled_metadata_leaves_out_where_the_builder_installed_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = tmp_path / "spdesk-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Name: spdesk\nVersion: 0.1.0\n")
    builder = (tmp_path / "checkout").as_uri()  # the builder's folder, as pip records it
    (info / "direct_url.json").write_text(f'{{"url": "{builder}"}}')
    metadata = {"spdesk": [(str(info), info.name)]}
    datas = _run_spec(monkeypatch, metadata=metadata)["datas"]
    assert (str(info / "METADATA"), info.name) in datas  # importlib.metadata still finds spdesk
    assert not [src for src, _ in datas if "direct_url" in src or src == str(info)]


def test_the_metadata_pyinstaller_collects_by_itself_leaves_out_direct_url_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In a real build PyInstaller added spdesk's direct_url.json (file:///the/builder's/checkout)
    # for spdesk/__init__.py's version("spdesk"), whatever the spec's datas left out.
    collected = _run_spec(monkeypatch)["collected"]
    assert FOUND_METADATA[0] in collected  # spdesk --version still finds its version
    assert not [name for name, *_ in collected if "direct_url" in name]


def test_a_cpu_build_leaves_out_the_build_machines_cuda_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected = _run_spec(monkeypatch, cuda_torch=False)["collected"]
    assert {TORCH_LIBRARY, TORCH_SOURCE} <= set(collected)
    assert not [name for name, *_ in collected if "libcudart" in name]


def test_a_cuda_build_keeps_the_cuda_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    collected = _run_spec(monkeypatch, cuda_torch=True)["collected"]
    assert {TORCH_LIBRARY, *CUDA_TOOLKIT_RUNTIME} <= set(collected)


def test_the_spec_leaves_out_what_a_developers_venv_holds_beside_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build from the README's test venv took in pillow-heif (the GPL x265 encoder: the app
    then read HEIC, which installer/README.md says it does not), Ray, the test tools and
    readline (GPL-3 libreadline): 1.5 GB instead of 1.1."""
    excludes = set(_run_spec(monkeypatch)["excludes"])
    assert {"pillow_heif", "readline", "ray", "pyarrow", "pytest", "hypothesis", "mypy"} <= excludes
    assert not excludes & {"torch", "diffusers", "PIL", "PySide6", "fsspec", "huggingface_hub"}


def test_a_build_that_takes_in_the_gpl_hevc_encoder_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x265 = ("pillow_heif.libs/libx265-4883ecb5.so.217", "/venv/pillow_heif.libs/x", "BINARY")
    with pytest.raises(SystemExit, match="libx265"):
        _run_spec(monkeypatch, found=(x265,))


def test_torch_s_test_programs_stay_out_and_its_shared_memory_manager_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tools = (
        ("torch/bin/test_api", "/venv/torch/bin/test_api", "BINARY"),
        ("torch/bin/protoc", "/venv/torch/bin/protoc", "BINARY"),
        ("torch/test/test_jit", "/venv/torch/test/test_jit", "BINARY"),
    )
    manager = ("torch/bin/torch_shm_manager", "/venv/torch/bin/torch_shm_manager", "BINARY")
    collected = _run_spec(monkeypatch, found=(*tools, manager))["collected"]
    assert manager in collected and TORCH_LIBRARY in collected
    assert not set(tools) & set(collected)


def test_a_build_venv_whose_spdesk_is_another_version_than_the_checkout_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frozen app reports, and the archive is named by, the installed metadata: a bumped
    checkout built in a venv of the old install said the old version."""
    import importlib.metadata

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    monkeypatch.setattr(importlib.metadata, "version", lambda _name: "0.0.1")
    with pytest.raises(
        SystemExit, match=f"spdesk is 0.0.1, the checkout being frozen is {version}"
    ):
        _run_spec(monkeypatch)


def test_the_windows_setup_has_the_checkout_s_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    setup = (INSTALLER / "windows" / "spdesk.iss").read_text()
    assert f'#define AppVersion "{version}"' in setup


def test_a_build_leaves_out_files_an_earlier_build_left_and_the_checkout_no_longer_has(
    tmp_path: Path,
) -> None:
    """The README's `pip install .` leaves build/lib in the checkout; a module or resource
    deleted after it still went into the next wheel and install."""
    lib = tmp_path / "lib"
    stale = [lib / "spdesk" / "zz_removed.py", lib / "spdesk" / "resources" / "icons" / "old.png"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by an earlier build")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert (lib / "spdesk" / "__init__.py").is_file()
    assert (lib / "spdesk" / "resources" / "perturbations" / "default.safetensors").is_file()
    assert not [path for path in stale if path.exists()]
