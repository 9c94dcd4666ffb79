"""The layering docs/ARCHITECTURE.md states, enforced on the source (AST, nothing imported):
flows -> tasks -> catalog; catalog imports neither torch nor Prefect; in tasks only a domain's ``steps.py`` imports
Prefect; nothing outside flows imports flows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFECT = ("prefect", "prefect_dask")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def top(module: str) -> str:
    """The top-level name, with our own packages named without their ``forgeflow.`` prefix."""
    parts = module.split(".")
    return parts[1] if parts[0] == "forgeflow" and len(parts) > 1 else parts[0]


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def violations(package: str, allowed) -> list[str]:
    found = []
    for path in sources(package):
        for module in sorted(imported_modules(path)):
            why = allowed(path, module)
            if why:
                found.append(f"{path.relative_to(ROOT)} imports {module}: {why}")
    return found


def catalog_rule(path: Path, module: str) -> str | None:
    if top(module) in ("torch",) + PREFECT:
        return "catalog imports neither torch nor Prefect"
    if top(module) in ("tasks", "flows"):
        return "catalog is the bottom layer"
    return None


def tasks_rule(path: Path, module: str) -> str | None:
    if top(module) == "flows":
        return "nothing imports flows"
    if top(module) in PREFECT and path.name != "steps.py":
        return "only a domain's steps.py imports Prefect"
    return None


@pytest.mark.parametrize("package, rule", [("catalog", catalog_rule), ("tasks", tasks_rule)])
def test_layering(package, rule):
    assert sources(package), f"no sources under {package}/"
    assert violations(package, rule) == []


def test_the_rules_catch_violations(tmp_path):
    bad = tmp_path / "helper.py"
    bad.write_text("def f():\n    from prefect import flow\n    import forgeflow.flows.cli\n    import torch.nn\n")
    mods = imported_modules(bad)
    assert tasks_rule(bad, "prefect") and tasks_rule(bad, "forgeflow.flows.cli") and catalog_rule(bad, "torch.nn")
    assert not tasks_rule(tmp_path / "steps.py", "prefect") and {"prefect", "forgeflow.flows.cli", "torch.nn"} <= mods


def test_one_namespace():
    """Our packages are imported only as ``forgeflow.catalog`` / ``forgeflow.tasks`` / ``forgeflow.flows``: a bare
    ``import tasks`` would pick up a user's own ``tasks.py`` (Celery's convention) or ``flows/`` (Prefect's)."""
    bare = []
    for folder in ("catalog", "tasks", "flows", "tests", "bench"):
        for path in sources(folder):
            for module in imported_modules(path):
                if module.split(".")[0] in ("catalog", "tasks", "flows"):
                    bare.append(f"{path.relative_to(ROOT)} imports {module}")
    assert bare == []
