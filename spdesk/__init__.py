"""spdesk: protect photos from AI editing with hard-to-see, photo-specific perturbations.

The package is split into ``spdesk.core`` (all the work, no Qt), ``spdesk.gui`` (a thin PySide6
layer that presents and dispatches) and ``spdesk.cli`` (the command line over the same core).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spdesk")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
