"""Ray is optional: core, cli and gui import and protect without it, and say how to get it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import protect_samples as samples

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter where `import ray` fails, as on an install without the extra.
_WITHOUT_RAY = """
import importlib, pkgutil, sys
sys.modules["ray"] = None  # any `import ray` now raises ImportError
import spdesk
modules = pkgutil.walk_packages(spdesk.__path__, "spdesk.")
names = [m.name for m in modules if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
assert "ray" not in [m for m in sys.modules if sys.modules[m] is not None]
from spdesk.cli import main
photo, out = sys.argv[1:3]
local = main(["protect", photo, "--out", out + "/local", "--working-size", "16"])
ray = main(["protect", photo, "--out", out + "/ray", "--engine", "ray"])
print("imported", len(names), "exit", local, ray)
"""


def _run(script: str, photo: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter of this checkout, given the photo and output folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", script, str(photo), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_core_cli_and_gui_import_and_run_without_ray(tmp_path: Path) -> None:
    photo = samples.photo(tmp_path / "in" / "a.png")
    result = _run(_WITHOUT_RAY, photo, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    imported, exits = result.stdout.split("exit")
    assert int(imported.split()[-1]) > 50  # every module of core, cli and gui
    assert exits.split() == ["0", "2"]  # local protects; ray is refused with the fix
    refusal = "Ray is not installed, so the Ray engine cannot run."
    assert f'{refusal}\nInstall it with: pip install "ray[data,client]>=2.40"' in result.stderr
    assert (tmp_path / "out" / "local" / "a.protected.png").is_file()
    assert not (tmp_path / "out" / "ray").exists()  # refused before creating anything


# Ray without Ray Data (its pyarrow missing): the modes on actors need Ray Data.
_WITHOUT_RAY_DATA = """
import sys
sys.modules["pyarrow"] = None  # any `import pyarrow` now raises ImportError
import ray
started = []
start = ray.init
ray.init = lambda **kwargs: started.append(kwargs) or start(**kwargs)
from spdesk.cli import main
photo, out = sys.argv[1:3]
code = main(["protect", photo, "--out", out, "--engine", "ray", "--mode", "photo"])
print("exit", code, "ray started", bool(started))
"""


@pytest.mark.skipif(not importlib.util.find_spec("ray"), reason="Ray is not installed")
def test_ray_without_ray_data_names_it_and_the_missing_module_before_anything_starts(
    tmp_path: Path,
) -> None:
    """It once said "Ray is not installed", after Ray had started and the output folder had
    pending lines in its manifest."""
    photo = samples.photo(tmp_path / "in" / "a.png")
    result = _run(_WITHOUT_RAY_DATA, photo, tmp_path / "out")
    assert result.stdout.split() == ["exit", "2", "ray", "started", "False"], result.stderr[-3000:]
    assert "Ray Data" in result.stderr and "pyarrow" in result.stderr
    assert "Ray is not installed" not in result.stderr
    assert 'pip install "ray[data,client]>=2.40" "fsspec>=2024.12"' in result.stderr
    assert not (tmp_path / "out").exists()  # refused before creating anything


# An old Ray beside today's pyarrow: Ray 2.10-2.20's `import ray.data` raised AttributeError.
_OLD_RAY = """
import sys
import ray
class Loader:
    def find_spec(self, name, path=None, target=None):
        if name == "ray.data":
            raise AttributeError("module 'pyarrow' has no attribute 'PyExtensionType'")
        return None
sys.modules.pop("ray.data", None)
sys.meta_path.insert(0, Loader())
from spdesk.cli import main
photo, out = sys.argv[1:3]
print("exit", main(["protect", photo, "--out", out, "--engine", "ray", "--mode", "photo"]))
"""


@pytest.mark.skipif(not importlib.util.find_spec("ray"), reason="Ray is not installed")
def test_an_old_ray_that_cannot_load_ray_data_names_the_ray_it_needs(tmp_path: Path) -> None:
    """Ray 2.10 (the extra's floor then) beside pyarrow 26 failed as "unexpected error ... This
    is a bug"."""
    from spdesk.core.distributed.ray_engine import RAY_FLOOR

    photo = samples.photo(tmp_path / "in" / "a.png")
    result = _run(_OLD_RAY, photo, tmp_path / "out")
    assert result.stdout.split() == ["exit", "2"], result.stderr[-3000:]
    assert "does not load beside the installed libraries" in result.stderr
    assert f'pip install "ray[data]>={RAY_FLOOR}"' in result.stderr
    assert "This is a bug" not in result.stderr and not (tmp_path / "out").exists()


def test_the_ray_extras_floor_is_the_one_the_engine_names() -> None:
    from spdesk.core.distributed.ray_engine import RAY_FLOOR

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (ray,) = [r for r in project["optional-dependencies"]["ray"] if r.startswith("ray[")]
    assert ray.endswith(f">={RAY_FLOOR}")


def test_the_ray_extra_brings_ray_data_and_ray_client() -> None:
    """--address ray://HOST:10001 needs Ray Client (its grpcio), which ray[data] lacks."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (ray,) = [r for r in project["optional-dependencies"]["ray"] if r.startswith("ray[")]
    extras = {e.strip() for e in ray[len("ray[") : ray.index("]")].split(",")}
    assert {"data", "client"} <= extras


def test_the_install_hint_names_what_the_ray_extra_installs() -> None:
    """The hint names the extra's packages, not "spdesk[ray]", which pip would look up on PyPI
    rather than where this spdesk came from (a checkout, a wheel)."""
    from spdesk.core.distributed.ray_engine import INSTALL_HINT, RAY_REQUIREMENTS

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert list(RAY_REQUIREMENTS) == project["optional-dependencies"]["ray"]
    assert "spdesk[ray]" not in INSTALL_HINT
    assert all(f'"{requirement}"' in INSTALL_HINT for requirement in RAY_REQUIREMENTS)


@pytest.mark.parametrize(
    "failure",
    [ImportError("libgcc_s.so.1: cannot open shared object file"), AttributeError("float_")],
    ids=["a-library-of-its-own", "numpy-too-new"],
)
def test_a_ray_that_is_installed_but_does_not_load_is_named_with_its_cause(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """It was called "not installed" (an ImportError of Ray's own), or "a bug" (any other)."""
    import builtins

    from spdesk.core.distributed.ray_engine import import_ray
    from spdesk.core.errors import EngineError

    real_import = builtins.__import__

    def broken_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray":
            raise failure
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken_ray)
    with pytest.raises(EngineError, match="Ray is installed but does not load") as raised:
        import_ray()
    assert str(failure) in raised.value.message and "--force-reinstall" in (raised.value.hint or "")


def test_the_installed_app_which_has_no_pip_says_where_ray_comes_with_spdesk(
    tmp_path: Path,
) -> None:
    photo = samples.photo(tmp_path / "in" / "a.png")
    frozen = "import sys\nsys.frozen = True  # as in the installers' app\n" + _WITHOUT_RAY
    result = _run(frozen, photo, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "The installed app does not include Ray: install spdesk with pip" in result.stderr
    assert "pip install " not in result.stderr
