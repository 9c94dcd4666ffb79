"""The per-module summary (first step of `forgeflow optimize`) agrees with the profiler's FLOP rules."""

import pytest

from forgeflow.tasks.profiling.errors import InputShapeError
from forgeflow.tasks.profiling.module_summary import summarize_model
from forgeflow.tasks.profiling.profile import profile_model


def test_summary_rows_add_up_and_match_the_profile():
    s = summarize_model("torchvision:resnet18", (1, 3, 32, 32))
    assert sum(m.flops for m in s.modules) == s.total_flops
    assert sum(m.params for m in s.modules) == s.total_params == 11_689_512
    g = profile_model("torchvision:resnet18", (1, 3, 32, 32), repeats=1, warmup=0)
    assert g.total_flops == s.total_flops


def test_attention_is_counted_in_the_summary():
    s = summarize_model("tests.profiling._models:attention_block", (1, 10, 32))
    projections = 2 * 10 * 32 * (3 * 32) + 2 * 10 * 32 * 32
    attention = 2 * (2 * 4 * 10 * 10 * 8)
    assert s.total_flops == projections + attention
    assert {m.module: m.flops for m in s.modules}["attn"] == projections + attention


def test_summary_shape_mismatch():
    with pytest.raises(InputShapeError, match="cannot run on an input of shape"):
        summarize_model("forgeflow:digits_cnn", (1, 3, 8, 8))
