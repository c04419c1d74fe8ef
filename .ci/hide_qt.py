"""A pytest plugin that hides PySide6, as if it were not installed (``-p hide_qt``).

CI runs the core and cli tests once more under it, to prove they need no Qt: any import of
PySide6 or shiboken6 raises ModuleNotFoundError, as on a machine without them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

HIDDEN = ("PySide6", "shiboken6")


class _HideQt(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by CI)", name=fullname)
        return None


loaded = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
if loaded:
    raise RuntimeError(f"Qt was imported before it could be hidden: {loaded}")
sys.meta_path.insert(0, _HideQt())
