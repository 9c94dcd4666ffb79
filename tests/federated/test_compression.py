"""Compression: exact byte counts, error feedback conserves the update mass, top-k keeps the largest entries."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from forgeflow.tasks.federated.compression import decode, encode
from forgeflow.tasks.federated.config import Compression, FederatedConfigError

vectors = arrays(np.float32, st.integers(1, 300), elements=st.floats(-1e3, 1e3, width=32))


@settings(max_examples=60, deadline=None)
@given(update=vectors, data=st.data(), kind=st.sampled_from(["topk", "randk"]), ratio=st.floats(0.001, 1.0),
       seed=st.integers(0, 2**31))
def test_error_feedback_conserves_update_mass_exactly_for_sparsifiers(update, data, kind, ratio, seed):
    residual = data.draw(arrays(np.float32, update.size, elements=st.floats(-1e3, 1e3, width=32)))
    msg, new_residual = encode(update, Compression(kind, ratio), residual, seed)
    np.testing.assert_array_equal(decode(msg) + new_residual, update + residual)


@settings(max_examples=40, deadline=None)
@given(update=vectors, seed=st.integers(0, 2**31))
def test_error_feedback_conserves_mass_for_int8_to_rounding(update, seed):
    residual = np.full(update.size, 0.25, np.float32)
    msg, new_residual = encode(update, Compression("int8"), residual, seed)
    np.testing.assert_allclose(decode(msg) + new_residual, update + residual, rtol=1e-5, atol=1e-3)
    assert msg.nbytes == update.size + 4


def test_error_feedback_delivers_everything_eventually():
    """Summed over rounds, what was sent plus the last residual equals everything that was meant to be sent."""
    rng = np.random.default_rng(0)
    comp, residual, sent, meant = Compression("topk", 0.05), None, np.zeros(200), np.zeros(200)
    for r in range(50):
        u = rng.normal(size=200).astype(np.float32)
        msg, residual = encode(u, comp, residual, r)
        sent += decode(msg)
        meant += u
    np.testing.assert_allclose(sent + residual, meant, rtol=1e-4, atol=1e-4)


def test_byte_counts_are_exact():
    u = np.linspace(-1, 1, 1000).astype(np.float32)
    assert encode(u, Compression("none"), None, 0)[0].nbytes == 4000
    topk, _ = encode(u, Compression("topk", 0.01), None, 0)
    assert topk.nbytes == 10 * (4 + 4)  # int32 index + float32 value
    assert set(np.abs(topk.values)) == set(np.sort(np.abs(u))[-10:])  # the ten largest magnitudes
    randk, _ = encode(u, Compression("randk", 0.01), None, 123)
    assert randk.nbytes == 10 * 4 + 8  # values + the shared seed
    again, _ = encode(u, Compression("randk", 0.01), None, 123)
    np.testing.assert_array_equal(decode(randk), decode(again))


def test_int8_rounding_is_unbiased():
    u = np.full(20000, 0.3, np.float32)
    u[0] = 1.0  # scale = 1/127
    msg, _ = encode(u, Compression("int8", error_feedback=False), None, 1)
    assert abs(decode(msg)[1:].mean() - 0.3) < 2e-4


@pytest.mark.parametrize("text", ["topk", "topk:0", "topk:2", "zip:0.1", "randk:x"])
def test_bad_compression_specs_name_the_problem(text):
    with pytest.raises(FederatedConfigError, match="compression"):
        Compression.parse(text)
