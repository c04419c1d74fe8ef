"""Fixtures shared by the whole suite.

Every test runs with ``SPDESK_HOME`` in a fresh temporary folder, so nothing touches the developer's
real settings, models or library; Qt runs offscreen.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from spdesk.core.jobs import ProtectSettings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED = Path(__file__).resolve().parents[2] / "shared"
if "SPDESK_SHARED" in os.environ:
    SHARED = Path(os.environ["SPDESK_SHARED"])


# The suite's --timeout (300 s) catches hangs. Tests marked slow are compute-bound: on a 2-core
# machine shared with other work, at nice 19, one that takes 15 s alone took over 300 s (the
# fresh-clone .ci/run), so they get three times the limit unless they set their own.
SLOW_TIMEOUT_FACTOR = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    limit = float(config.getoption("timeout", None) or 0)
    for item in items:
        if limit and item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(limit * SLOW_TIMEOUT_FACTOR))


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("spdesk-home")
    monkeypatch.setenv("SPDESK_HOME", str(home))
    monkeypatch.delenv("SPDESK_MODELS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub reads its paths once, at import: point them at this test's home too, so
    # that no test sees the developer's real cache or `hf auth login` token.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HOME", str(home / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hf-home" / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "hf-home" / "stored_tokens"))
    monkeypatch.setattr("spdesk.core.keys._made_here", None)  # each test a fresh install
    return home


@pytest.fixture
def shared_dir() -> Path:
    """The read-only test assets; skips with a reason when they are absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test assets not found at {SHARED} (real TAESD weights and photos)")
    return SHARED


@pytest.fixture
def taesd_path(shared_dir: Path) -> Path:
    path = shared_dir / "models" / "taesd" / "taesd_f8e4m3.safetensors"
    if not path.is_file():
        pytest.skip(f"real TAESD weights not found at {path}")
    return path


@pytest.fixture
def shared_photos(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "imagenet-sample"
    if not path.is_dir():
        pytest.skip(f"shared photos not found at {path}")
    return path


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (to prove originals are untouched)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def originals_guard() -> Iterator[list[Path]]:
    """Append input folders to the yielded list; after the test their bytes must be unchanged."""
    roots: list[Path] = []
    before: dict[Path, dict[str, str]] = {}

    class _Roots(list[Path]):
        def append(self, root: Path) -> None:
            before[root] = tree_hashes(root)
            super().append(root)

    watched = _Roots()
    yield watched
    for root, hashes in before.items():
        assert tree_hashes(root) == hashes, f"originals under {root} were modified"
    del roots


# --- protection jobs (test_jobs*.py) ----------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> ProtectSettings:
    """Job settings with a small test perturbation at a 16 px working size."""
    from spdesk.core.jobs import ProtectSettings
    from tests import protect_samples as samples

    folder = tmp_path / "perturbation"
    folder.mkdir()
    return ProtectSettings(perturbation=samples.perturbation_file(folder), working_size=16)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """An empty input folder."""
    root = tmp_path / "in"
    root.mkdir()
    return root


# --- photo mode (test_photo_mode.py, test_cuda.py) --------------------------------------------
@pytest.fixture
def generator_file(tmp_path: Path) -> Path:
    """A small random-weight protection generator file (eps 8)."""
    import torch

    from spdesk.core.generator import DeltaGenerator, GeneratorConfig, shaping_to_dict
    from spdesk.core.generator_file import save_generator
    from spdesk.core.shaping import Shaping

    torch.manual_seed(0)
    config = GeneratorConfig(width=8, blocks=1)
    return save_generator(
        tmp_path / "gen.safetensors", DeltaGenerator(config).state_dict(), eps=8,
        network=config.to_dict(), shaping=shaping_to_dict(Shaping(floor=0.5)),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_dangling_qthreads() -> Iterator[None]:
    """Fail any test that leaves a worker thread running (as napari's ``_dangling_qthreads``).

    Runs after pytest-qt has closed the test's widgets, whose close must stop their workers.
    """
    yield
    workers = sys.modules.get("spdesk.gui.workers")
    if workers is None:  # Qt never loaded: core and CLI tests
        return
    running = [thread for thread in list(workers._LIVE) if thread.isRunning()]
    for worker in (workers._LIVE[t] for t in running):
        worker._cancel.cancel()
    for thread in running:
        thread.wait(30_000)
    assert not running, f"{len(running)} worker thread(s) still running after the test"
    _automatic_garbage_collection_back_on()


def _automatic_garbage_collection_back_on() -> None:
    """The app's windows collect garbage on the GUI thread only (spdesk.gui.garbage): give
    automatic collection back once the test's threads have ended, as the app found it (later
    tests run without an event loop to collect)."""
    from spdesk.gui import garbage

    garbage.uninstall()
    assert gc.isenabled(), "automatic garbage collection was left off"


def resolves_on_the_main_thread(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """From now on, the paths ``Path.resolve`` is called on by the main (GUI) thread: a call
    per part of the path, which a window must not make for each of thousands of photos."""
    import threading

    calls: list[Path] = []
    real_resolve = Path.resolve

    def resolve(self: Path, strict: bool = False) -> Path:
        if threading.current_thread() is threading.main_thread():
            calls.append(self)
        return real_resolve(self, strict)

    monkeypatch.setattr(Path, "resolve", resolve)
    return calls
