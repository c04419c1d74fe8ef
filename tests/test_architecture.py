"""The layers are enforced, not just described: core and cli never import Qt, the import graph
keeps its contracts, and docs/architecture.md names every module."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spdesk"
HEAVY = {
    "torch",
    "diffusers",
    "transformers",
    "kornia",
    "huggingface_hub",
    "torchmetrics",
    "PySide6",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ["core", "cli"])
def test_layer_never_imports_qt_or_gui(layer: str) -> None:
    offenders = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in {"PySide6", "PyQt5", "PyQt6", "shiboken6"} or name.startswith("spdesk.gui"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
            if layer == "core" and name.startswith("spdesk.cli"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, 'import-linter is part of the test extra: pip install -e ".[test]"'
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_start_does_not_import_heavy_libraries() -> None:
    # `spdesk --help` and the window must not pay for torch/diffusers at start-up.
    code = (
        "import sys, spdesk.cli; spdesk.cli.build_parser(); "
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_event_modules_import_without_heavy_libraries() -> None:
    # The app matches core events by type on the GUI thread: importing them must stay cheap.
    modules = "spdesk.core.jobs.events, spdesk.core.events.training, spdesk.core.models.events"
    code = f"import sys, {modules}; print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_gui_never_matches_events_by_class_name_or_text() -> None:
    offenders = []
    for path in (PACKAGE / "gui").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if (
                "type(event).__name__" in line
                or "__name__ ==" in line
                or "reason.startswith" in line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_architecture_document_lists_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(spdesk/[\w/]+\.py)` \|", doc, re.MULTILINE))
    present = {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")}
    missing, gone = sorted(present - listed), sorted(listed - present)
    assert not missing and not gone, (
        f"docs/architecture.md needs a line for each of {missing} and none for {gone}"
    )


def test_images_from_arrays_never_pass_a_mode() -> None:
    """Pillow 11.3 deprecates ``Image.fromarray(array, mode=...)`` (12.x allows it again) and
    the dependency takes 11.3 in: spdesk lets Pillow infer the mode from the array."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "fromarray"
                and (len(node.args) > 1 or any(k.arg == "mode" for k in node.keywords))
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
