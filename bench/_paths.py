"""Imported first by every benchmark script (``import _paths``, found because the script's own folder is on
sys.path): puts the repository root first and takes bench/ itself off sys.path, where bench/catalog.py would
otherwise shadow the ``catalog`` package."""

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]
