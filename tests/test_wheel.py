"""A wheel (a user's `pip install forgeflow`, not an editable checkout) carries every file the code looks up beside
itself: the shipped hardware targets, prefect.yaml, the pretrained supernet and the op profiles; the code then finds
them from the installed package alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_data_the_code_reads(tmp_path):
    src = tmp_path / "src"  # a copy: setuptools builds in the source tree and leaves build/ there
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for folder in ("catalog", "tasks", "flows", "deploy"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("forgeflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [f"forgeflow/deploy/targets/{p.name}" for p in (ROOT / "deploy" / "targets").glob("*.yaml")]
    assert shipped and set(shipped) <= names
    assert {"forgeflow/deploy/prefect.yaml", "forgeflow/tasks/partition/op_profiles.json"} <= names
    assert any(n.startswith("forgeflow/tasks/supernet/pretrained/") for n in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = ("from forgeflow.tasks.plan.target import shipped_targets, load_target\n"
             "from forgeflow.flows.deployments import DEFAULT_FILE\n"
             "import forgeflow.tasks, sys\n"
             "t = shipped_targets(); [load_target(str(p)) for p in t.values()]\n"
             "assert DEFAULT_FILE.is_file(), DEFAULT_FILE\n"
             "print(forgeflow.tasks.__file__, len(t))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    where, count = run.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and int(count) == len(shipped)
