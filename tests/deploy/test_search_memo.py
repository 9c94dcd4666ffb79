"""Accuracy does not depend on the target: a search on a new target reads the accuracies earlier searches measured
(catalog table subnet_accuracies, keyed on the supernet, its weights, the data and the code) and only plans them."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def whole_family(small_family):
    """The small family with a (synthetic) time for every unit of its space, so any subnet can be planned."""
    import dataclasses

    from forgeflow.tasks.deploy.profile import family_units

    fam, _ = small_family
    ms = {k: 0.1 + 0.001 * i for i, k in enumerate(family_units(fam.net, fam.data.side))}
    return dataclasses.replace(fam, unit_ms=ms, unit_ms_fakequant={k: 2 * v for k, v in ms.items()})


@pytest.fixture
def counted_accuracy(monkeypatch):
    """subnet_accuracy replaced by a cheap deterministic stand-in that counts its calls (the memo is what is tested,
    not the accuracy)."""
    from forgeflow.tasks.supernet import train

    seen: list[str] = []

    def fake(net, arch, data):
        seen.append(arch.to_string())
        return 50.0 + sum(map(ord, arch.to_string())) % 40

    monkeypatch.setattr(train, "subnet_accuracy", fake)
    return seen


def test_search_on_a_new_target_measures_only_subnets_never_measured(tmp_path, whole_family, counted_accuracy):
    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.deploy.pipeline import known_accuracies, search_subnet
    from forgeflow.tasks.deploy.target import host_view

    fam = whole_family
    cat = open_catalog(str(tmp_path / "cat"))
    first = search_subnet(cat, "run-1", fam, host_view(2, 16), budget=5, seed=0, memo_key="m1", family_id="f")
    archs1 = [c["arch"] for c in first["candidates"]]
    assert first["accuracies_measured"] == len(set(archs1)) == len(counted_accuracy)
    assert known_accuracies(cat, "m1") == {c["arch"]: c["accuracy_pct"] for c in first["candidates"]}

    counted_accuracy.clear()
    second = search_subnet(cat, "run-2", fam, host_view(1, 16), budget=5, seed=0, memo_key="m1", family_id="f")
    archs2 = {c["arch"] for c in second["candidates"]}
    assert set(counted_accuracy) == archs2 - set(archs1)  # only new subnets were measured
    assert second["accuracies_reused"] == len(archs2 & set(archs1)) > 0
    assert {c["arch"]: c["accuracy_pct"] for c in second["candidates"]}.items() >= {
        a: v for a, v in known_accuracies(cat, "m1").items() if a in archs2}.items()
    assert len(known_accuracies(cat, "m1")) == len(set(archs1) | archs2)  # each subnet stored once

    counted_accuracy.clear()
    search_subnet(cat, "run-3", fam, host_view(2, 16), budget=3, seed=0, memo_key="other-weights", family_id="f")
    assert len(counted_accuracy) == 3  # another supernet (key): nothing reused


def test_memo_key_follows_the_weights_and_the_data(tmp_path):
    from forgeflow.tasks.deploy.pipeline import accuracy_memo_key

    rec = {"supernet_id": "digits-abc", "weights_key": "objects/w1.safetensors"}
    k = accuracy_memo_key(rec, None)
    assert k == accuracy_memo_key(dict(rec), None)
    assert k != accuracy_memo_key(rec | {"weights_key": "objects/w2.safetensors"}, None)
    data = tmp_path / "d.npz"
    data.write_bytes(b"one")
    kd = accuracy_memo_key(rec, str(data))
    assert kd != k
    data.write_bytes(b"two")
    assert accuracy_memo_key(rec, str(data)) != kd


def test_shared_slice_perturbations_give_the_same_costs(small_family):
    # the per-process memo of ||Q_b(W) - W||^2 per (weights, layer, slice shape, bits) must not change any cost
    import dataclasses

    from forgeflow.tasks.deploy import family as F

    fam, _ = small_family
    sp = fam.net.config.space
    shared = dataclasses.replace(fam, weights_id="test-weights")
    F._PERTURBATIONS.clear()
    for arch in (sp.largest(), sp.smallest(), sp.largest()):
        plain = fam.costs(arch, (4, 8))[2]
        memo = shared.costs(arch, (4, 8))[2]
        assert [u.sensitivity_at for u in memo] == [u.sensitivity_at for u in plain]
    assert F._PERTURBATIONS and all(k[0] == "test-weights" for k in F._PERTURBATIONS)
