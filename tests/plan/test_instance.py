"""The documented instance format: round trip, and every malformed field named."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.plan import PlanInstance

BASE = {"maxFPGAs": 2, "maxSizePerFPGA": 10.0, "maxCPUs": 5, "sensitivityBudget": 1.0,
        "nodes": [{"id": 7, "fpgaLatency": 3.0, "size": 4.0,
                   "bitOptions": [{"bits": 8, "latency": 1.5, "size": 1.0, "sensitivity": 0.25}]},
                  {"id": 9, "fpgaLatency": 2.0, "size": 0.0, "colorClass": 1},
                  {"id": 11, "fpgaLatency": 1.0, "size": 2.0, "colorClass": 1}],
        "edges": [{"sourceId": 7, "destId": 9, "cost": 0.5}, {"sourceId": 9, "destId": 11, "cost": 0.25}]}


def test_round_trip_keeps_ids_options_budget_and_classes(tmp_path):
    inst = PlanInstance.from_json_dict(BASE, name="i")
    assert inst.raw_ids == (7, 9, 11) and inst.k == 2 and inst.budget == 1.0 and inst.mem_caps == (10.0, 10.0)
    assert inst.bits[0].tolist() == [32, 8] and not inst.valid[1, 1]
    back = PlanInstance.from_json(inst.dump(tmp_path / "x.json"))
    assert back.raw_ids == inst.raw_ids and back.budget == inst.budget
    assert np.array_equal(back.time, inst.time) and np.array_equal(back.sens, inst.sens)
    assert sorted(map(sorted, back.base.classes)) == sorted(map(sorted, inst.base.classes))


def test_heterogeneous_stage_devices():
    data = copy.deepcopy(BASE)
    data["stageDevices"] = [{"name": "big", "memory": 100, "timeScale": {"32": 0.5, "8": 0.25}},
                            {"name": "small", "memory": 5, "nodeLatency": {"7": [9.0, 4.0]}}]
    inst = PlanInstance.from_json_dict(data, name="h")
    assert inst.mem_caps == (100.0, 5.0) and not inst.homogeneous
    assert inst.time[0, 0].tolist() == [1.5, 0.375] and inst.time[1, 0].tolist() == [9.0, 4.0]
    again = PlanInstance.from_json_dict(json.loads(json.dumps(inst.to_json_dict())), name="h")
    assert np.allclose(again.time, inst.time) and again.mem_caps == inst.mem_caps


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("maxFPGAs"), "maxFPGAs"),
    (lambda d: d.update(maxFPGAs=0), "maxFPGAs"),
    (lambda d: d.update(sensitivityBudget="lots"), "sensitivityBudget"),
    (lambda d: d.update(maxSizePerFPGA=-3), "memory"),
    (lambda d: d["nodes"][0].update(bitOptions={"bits": 8}), "bitOptions"),
    (lambda d: d["nodes"][0]["bitOptions"][0].pop("sensitivity"), "sensitivity"),
    (lambda d: d["nodes"][0]["bitOptions"][0].update(bits=32), "bits"),
    (lambda d: d["nodes"][0]["bitOptions"][0].update(bits=4.5), "bits"),
    (lambda d: d["nodes"][0]["bitOptions"][0].update(latency=-1), "negative"),
    (lambda d: d["nodes"][0]["bitOptions"].append(dict(d["nodes"][0]["bitOptions"][0])), "two options"),
    (lambda d: d["edges"].append({"sourceId": 11, "destId": 7, "cost": 1}), "cycle"),
    (lambda d: d["edges"].append({"sourceId": 11, "destId": 99, "cost": 1}), "does not exist"),
    (lambda d: d.update(stageDevices=[{}]), "stageDevices"),
    (lambda d: d.update(nodes="x"), "nodes"),
])
def test_malformed_instance_names_the_problem(mutate, words):
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(InvalidGraphError) as err:
        PlanInstance.from_json_dict(data, name="bad")
    assert words in str(err.value)


def test_unreadable_instance_files(tmp_path):
    with pytest.raises(InvalidGraphError, match="not found"):
        PlanInstance.from_json(tmp_path / "none.json")
    (tmp_path / "b.json").write_text("{nope")
    with pytest.raises(InvalidGraphError, match="not valid JSON"):
        PlanInstance.from_json(tmp_path / "b.json")
