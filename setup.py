"""Packaging shim. pyproject.toml declares the project, its packages and data; this only makes
each build start from the checkout as it is now. setuptools builds in ``build/lib`` and keeps
what an earlier build left there, so a module or resource deleted since (``pip install .`` again
after a pull) still went into the next wheel."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class FreshBuildPy(build_py):
    """build_py that first removes spdesk's tree from the build folder (only that tree)."""

    def run(self) -> None:
        shutil.rmtree(Path(self.build_lib) / "spdesk", ignore_errors=True)
        super().run()


setup(cmdclass={"build_py": FreshBuildPy})
