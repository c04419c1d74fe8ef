"""Packaging shim: the bundled resources live in the top-level ``resources/`` folder but install as
the ``spdesk.resources`` package, which ``packages.find`` cannot discover on its own."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["spdesk", "spdesk.*"]), "spdesk.resources"])
