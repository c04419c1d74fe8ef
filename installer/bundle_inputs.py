"""What spdesk.spec bundles from the checkout, whatever way spdesk is installed in the build venv.

``spdesk.resources`` is the repository's ``resources/`` folder, mapped by pyproject.toml's
``package-dir``. A plain install copies it to ``site-packages/spdesk/resources``, but an editable
install (``pip install -e .``) only maps it through an import hook PyInstaller cannot see: a build
from there had no resources package and could not start. So the spec analyses the checkout itself
and takes the resources from where pyproject.toml says they are, as pip does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOOKS = Path(__file__).resolve().parent / "hooks"
RESOURCES = "spdesk.resources"


def _setuptools_config(repo: Path) -> Any:
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["tool"]["setuptools"]


def resource_folder(repo: Path = REPO) -> Path:
    """The folder that pyproject.toml's package-dir maps ``spdesk.resources`` to."""
    folder: Path = repo / _setuptools_config(repo)["package-dir"][RESOURCES]
    if folder.name != RESOURCES.rsplit(".", 1)[1] or not (folder / "__init__.py").is_file():
        # hooks/pre_find_module_path finds the package by its folder's name, beside the others.
        raise SystemExit(f"{RESOURCES} must map to a package folder named resources, not {folder}.")
    return folder


def resource_datas(repo: Path = REPO) -> list[tuple[str, str]]:
    """PyInstaller ``datas``: the package-data files of ``spdesk.resources`` (the patterns in
    pyproject.toml), each into its folder under ``spdesk/resources``."""
    folder = resource_folder(repo)
    patterns = _setuptools_config(repo)["package-data"][RESOURCES]
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    destination = Path(*RESOURCES.split("."))
    return [(str(path), str(destination / path.parent.relative_to(folder))) for path in files]
