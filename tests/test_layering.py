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


def test_a_user_project_does_not_shadow_ours(tmp_path):
    """A worker started in a user's project (its own ``flows/`` package, Prefect's convention, and ``tasks.py``,
    Celery's) imports our entrypoints and every command from forgeflow, and the user's modules stay theirs."""
    import subprocess
    import sys

    (tmp_path / "flows").mkdir()
    for module in ("flows/__init__.py", "tasks.py", "catalog.py"):
        (tmp_path / module).write_text("import sys\nsys.user_imports = getattr(sys, 'user_imports', []) + "
                                       f"[{module!r}]\nOWNER = 'user'\n")
    script = ("import sys, forgeflow.flows.cli, forgeflow.flows.deployments as d, forgeflow.tasks.config\n"
              "d._domain_flow('quantize')\n"
              "assert getattr(sys, 'user_imports', []) == [], sys.user_imports\n"
              "import flows, tasks, catalog\n"
              "assert flows.OWNER == tasks.OWNER == catalog.OWNER == 'user'\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# tasks/step_cache.py: Prefect task options (retries) and the step cache switch are read where a Dask worker process
# imports the steps, before any flow code runs there; the worker inherits them from the flow process's environment,
# and flows' Settings validates both values before any run starts.
# flows/warm_client.py: the console command's first step, standard library only (before pydantic or Settings are
# imported), reads the warm path's switches (FORGEFLOW_WARM, FORGEFLOW_STATE_DIR, two diagnostics); listed in Settings.
ENV_READERS = {"flows/settings.py", "tasks/step_cache.py", "flows/warm_client.py"}


def forgeflow_env_reads(path: Path, root: Path = ROOT) -> list[str]:
    """``os.environ.get("FORGEFLOW_X")``, ``os.getenv("FORGEFLOW_X")`` and ``os.environ["FORGEFLOW_X"]`` reads."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        key = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute) and (
                node.func.attr == "getenv" or node.func.attr == "get" and ast.unparse(node.func.value).endswith(
                    "environ")):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and \
                ast.unparse(node.value).endswith("environ"):
            key = node.slice
        if isinstance(key, ast.Constant) and str(key.value).startswith("FORGEFLOW_"):
            found.append(f"{path.relative_to(root)}:{node.lineno} reads {key.value}")
    return found


def test_forgeflow_settings_are_read_in_one_place(tmp_path):
    """Every FORGEFLOW_* variable is read by flows' Settings and passed down (the catalog takes its query limits
    as parameters, the model allow-list is an argument, ...)."""
    reads = [r for folder in ("catalog", "tasks", "flows") for path in sources(folder)
             if str(path.relative_to(ROOT)) not in ENV_READERS for r in forgeflow_env_reads(path)]
    assert reads == []
    planted = tmp_path / "planted.py"
    planted.write_text("import os\na = os.environ.get('FORGEFLOW_X', '')\nb = os.getenv('FORGEFLOW_Y')\n"
                       "c = os.environ['FORGEFLOW_Z']\nos.environ['FORGEFLOW_W'] = '1'\n")
    assert sorted(r.rsplit(" ", 1)[1] for r in forgeflow_env_reads(planted, tmp_path)) == [
        "FORGEFLOW_X", "FORGEFLOW_Y", "FORGEFLOW_Z"]
