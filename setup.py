"""Installs the top-level folders catalog/, tasks/ and flows/ as the packages forgeflow.catalog, forgeflow.tasks and
forgeflow.flows (package-dir mapping; the metadata lives in pyproject.toml), and deploy/ (the shipped hardware
targets, prefect.yaml and the Dask recipes) as the data package forgeflow.deploy, so a wheel install finds them where
the source tree has them: beside tasks/ and flows/."""

from setuptools import find_packages, setup

FOLDERS = ("catalog", "tasks", "flows")
found = find_packages(include=[f"{f}" for f in FOLDERS] + [f"{f}.*" for f in FOLDERS])
setup(packages=[f"forgeflow.{p}" for p in found] + ["forgeflow.deploy"],
      package_dir={**{f"forgeflow.{f}": f for f in FOLDERS}, "forgeflow.deploy": "deploy"})
