"""PyInstaller hook: look for ``spdesk.resources`` in the folder pyproject.toml maps it to (the
checkout's ``resources/``), not inside ``spdesk/``, where only a plain pip install puts it."""

import importlib.util
from pathlib import Path


def _bundle_inputs():
    path = Path(__file__).resolve().parents[2] / "bundle_inputs.py"
    spec = importlib.util.spec_from_file_location("spdesk_bundle_inputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pre_find_module_path(api):
    api.search_dirs = [str(_bundle_inputs().resource_folder().parent)]
