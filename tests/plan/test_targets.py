"""Hardware target files: the shipped ones load, every bad field is named in one line."""

from __future__ import annotations

import pytest
import yaml

from forgeflow.tasks.plan.target import TargetError, load_target, shipped_targets


def test_three_shipped_targets_load_with_their_declared_devices():
    shipped = shipped_targets()
    assert {"edge_npu_4x", "gpu_2x_pcie4", "hetero_1big_3small"} <= set(shipped)
    npu = load_target(shipped["edge_npu_4x"])
    assert npu.k == 4 and npu.homogeneous and npu.device_list[0].memory_bytes == 256 * 2 ** 20
    assert npu.device_list[0].speedup(8) == 2.0 and npu.device_list[0].speedup(32) == 1.0
    gpu = load_target("gpu_2x_pcie4")  # a bare name resolves to a shipped target
    assert gpu.k == 2 and gpu.device_list[1].memory_bytes == 16 * 2 ** 30
    het = load_target(shipped["hetero_1big_3small"])
    assert het.k == 4 and not het.homogeneous
    assert het.device_list[0].memory_bytes > het.device_list[1].memory_bytes
    assert het.with_count(6).k == 6 and npu.with_count(8).k == 8


GOOD = yaml.safe_load(open(shipped_targets()["edge_npu_4x"]))


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["devices"].update(memory_bytes=-1), "devices.memory_bytes"),
    (lambda d: d["devices"].update(count=0), "devices.count"),
    (lambda d: d["devices"].update(bit_speedup={8: 0}), "devices.bit_speedup"),
    (lambda d: d["devices"].update(bit_speedup={64: 2.0}), "devices.bit_speedup"),
    (lambda d: d["links"].update(bandwidth_bytes_per_s=0), "links.bandwidth_bytes_per_s"),
    (lambda d: d.update(objective="latency"), "objective"),
    (lambda d: d.update(budget={}), "budget"),
    (lambda d: d.update(budget={"max_sensitivity": 1, "fraction_of_uniform4": 0.5}), "budget"),
    (lambda d: d.pop("name"), "name"),
    (lambda d: d.update(colour="red"), "colour"),
])
def test_bad_target_field_is_named(tmp_path, mutate, field):
    import copy

    data = copy.deepcopy(GOOD)
    mutate(data)
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(TargetError) as err:
        load_target(p)
    msg = str(err.value)
    assert f"field '{field}" in msg and "\n" not in msg


def test_unreadable_target_files(tmp_path):
    with pytest.raises(TargetError, match="not found"):
        load_target(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(TargetError, match="not valid YAML"):
        load_target(p)
    p.write_text("- just a list\n")
    with pytest.raises(TargetError, match="mapping"):
        load_target(p)


def test_link_count_must_match_devices(tmp_path):
    import copy

    data = copy.deepcopy(GOOD)
    data["links"] = [{"bandwidth_bytes_per_s": 1e9}] * 5
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(TargetError, match="field 'links'"):
        load_target(p)
