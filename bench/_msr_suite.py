"""The msr-fiddle graph suite as the partition benchmarks read it: where it lies and the optima issue 4 listed.

Shared by bench/partition.py and bench/partition_bounds.py (``python bench/<name>.py`` puts bench/ on the path).
"""

from __future__ import annotations

from pathlib import Path

#: ``../shared/data/msr_graphs`` beside the checkout (every script takes ``--data`` to point elsewhere)
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "msr_graphs"

#: exact optima (DP over ideals) as listed in issue 4, rounded to 6 significant digits there
KNOWN_OPTIMA: dict[str, dict[int, float]] = {
    "LayerGraphs/bert24": {2: 47.479, 4: 24.9169, 6: 17.7899, 8: 14.2039, 16: 7.19591},
    "LayerGraphs/gnmt": {2: 93.1943, 4: 47.1607, 6: 32.9107, 8: 25.8496, 16: 24.7881},
    "LayerGraphs/inceptionv3": {},
    "LayerGraphs/resnet50": {2: 101.281, 4: 50.9899, 6: 34.2229, 8: 26.7612, 16: 18.9979},
    "OperatorGraphs/bert_l-12": {2: 383.694, 4: 197.692, 6: 147.478, 8: 108.044, 16: 79.977},
    "OperatorGraphs/bert_l-3": {2: 33.9891, 3: 27.9186, 4: 27.9186, 8: 27.9186, 16: 27.9186},
    "OperatorGraphs/bert_l-6": {2: 47.0179, 3: 33.9891, 4: 27.9186, 8: 27.9186, 16: 27.9186},
    "OperatorGraphs/resnet50": {2: 194.439, 4: 151.126, 6: 128.074, 8: 124.349, 16: 124.349},
}

#: the listed optima carry 6 significant digits: a ratio up to this counts as proven optimal
PROVEN = 1.0001
