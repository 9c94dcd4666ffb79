"""Installs the top-level folders catalog/, tasks/ and flows/ as the packages forgeflow.catalog, forgeflow.tasks and
forgeflow.flows (package-dir mapping; the metadata lives in pyproject.toml)."""

from setuptools import find_packages, setup

FOLDERS = ("catalog", "tasks", "flows")
found = find_packages(include=[f"{f}" for f in FOLDERS] + [f"{f}.*" for f in FOLDERS])
setup(packages=[f"forgeflow.{p}" for p in found], package_dir={f"forgeflow.{f}": f for f in FOLDERS})
