"""Step results cached across runs through the catalog (tasks.step_cache), without Prefect or Dask."""

from __future__ import annotations

import dataclasses
import json

import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks import step_cache
from forgeflow.tasks.step_cache import cached_step, canonical, reuses


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int
    bits: tuple[int, ...] = (4, 8)


calls: list[tuple] = []


@cached_step("toy-step")
def toy_step(catalog_url: str, run_id: str, config: Config, path: str | None = None,
             endpoint_url: str | None = None) -> dict:
    calls.append((run_id, config))
    cat = open_catalog(catalog_url)
    key = cat.put_object(f"{run_id}:{config.epochs}".encode(), ".txt", run_id=run_id)
    return {"object": key, "epochs": config.epochs, "bits": config.bits}


@cached_step("failing-step")
def failing_step(catalog_url: str, run_id: str, n: int) -> dict:
    calls.append((run_id, n))
    raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    calls.clear()
    monkeypatch.delenv("FORGEFLOW_STEP_CACHE", raising=False)


def test_second_run_reuses_the_finished_step_through_the_catalog(tmp_path):
    url = str(tmp_path / "cat")
    first = toy_step(url, "run-1", Config(3))
    second = toy_step(url, "run-2", Config(3))
    assert len(calls) == 1  # the step ran once
    assert second == json.loads(json.dumps(first))  # the stored result, found through the catalog
    cat = open_catalog(url)
    assert cat.get_object(second["object"]) == b"run-1:3"
    assert [(r["step"], r["status"], r["source_run_id"]) for r in reuses(cat, "run-2")] == [
        ("toy-step", "reused", "run-1")]
    assert [r["status"] for r in reuses(cat, "run-1")] == ["completed"]


def test_other_inputs_file_content_and_code_version_change_the_key(tmp_path, monkeypatch):
    url = str(tmp_path / "cat")
    data = tmp_path / "data.json"
    data.write_text("a")
    toy_step(url, "r1", Config(3), str(data))
    toy_step(url, "r2", Config(3, bits=(2, 4)), str(data))  # other inputs
    toy_step(url, "r3", Config(3), str(data))  # same: reused
    data.write_text("b")  # same path, other content
    toy_step(url, "r4", Config(3), str(data))
    assert [c[0] for c in calls] == ["r1", "r2", "r4"]
    monkeypatch.setattr(step_cache, "code_version", lambda module: "another-code-version")
    toy_step(url, "r5", Config(3), str(data))  # code changed
    assert [c[0] for c in calls] == ["r1", "r2", "r4", "r5"]


def test_failed_step_stores_nothing_and_cache_can_be_turned_off(tmp_path, monkeypatch):
    url = str(tmp_path / "cat")
    for run in ("a", "b"):
        with pytest.raises(RuntimeError):
            failing_step(url, run, 1)
    assert len(calls) == 2  # a failure is never reused
    monkeypatch.setenv("FORGEFLOW_STEP_CACHE", "0")
    toy_step(url, "x", Config(1))
    toy_step(url, "y", Config(1))
    assert [c[0] for c in calls[2:]] == ["x", "y"]


def test_the_callers_switch_wins_over_the_environment_of_the_process_that_runs_the_step(tmp_path, monkeypatch):
    """A flow submits each cached step with ``step_cache=`` its command's setting: the worker that runs it (a warm
    cluster started with other settings) obeys that, and only a direct call reads FORGEFLOW_STEP_CACHE."""
    import inspect

    from prefect.utilities.callables import get_call_parameters, parameters_to_args_kwargs

    url = str(tmp_path / "cat")
    toy_step(url, "a", Config(2))
    toy_step(url, "b", Config(2), step_cache=False)  # the worker's environment says on: the caller's off wins
    monkeypatch.setenv("FORGEFLOW_STEP_CACHE", "0")
    toy_step(url, "c", Config(2), step_cache=True)  # the worker's says off: the caller's on wins (reused)
    toy_step(url, "d", Config(2))  # no switch given: this process's setting (off)
    assert [c[0] for c in calls] == ["a", "b", "d"]
    assert [r["status"] for r in reuses(open_catalog(url), "c")] == ["reused"]
    # what Prefect binds, records and sends to the worker: the switch is a keyword-only parameter of the step
    param = inspect.signature(toy_step).parameters["step_cache"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    bound = get_call_parameters(toy_step, (url, "e", Config(2)), {"step_cache": False})
    assert bound["step_cache"] is False
    args, kwargs = parameters_to_args_kwargs(toy_step, bound)
    assert kwargs == {"step_cache": False}
    with pytest.raises(TypeError, match="step_cache"):
        cached_step("clash")(lambda catalog_url, run_id, step_cache: None)


def test_canonical_form_and_code_version():
    assert canonical({"b": (1, 2), "a": Config(1)}) == canonical({"a": Config(1, (4, 8)), "b": [1, 2]})
    assert canonical(Config(1)) != canonical(Config(2))
    with pytest.raises(step_cache.Uncacheable):
        canonical(object())
    v = step_cache.code_version("forgeflow.tasks.partition.steps")
    assert v == step_cache.code_version("forgeflow.tasks.partition.steps") and len(v) == 24
    assert v != step_cache.code_version("forgeflow.tasks.quantize.steps")


def test_step_retries_reads_the_setting(monkeypatch):
    monkeypatch.setenv("FORGEFLOW_STEP_RETRIES", "3")
    assert step_cache.step_options()["retries"] == 3
    monkeypatch.delenv("FORGEFLOW_STEP_RETRIES")
    assert step_cache.step_options()["retries"] == 1


def test_finished_tells_whether_a_call_would_replay_and_writes_nothing(tmp_path):
    url = str(tmp_path / "cat")
    assert toy_step.finished(url, "r1", Config(2)) is None  # nothing stored yet
    toy_step(url, "r1", Config(2))
    hit = toy_step.finished(url, "r2", Config(2))
    assert hit is not None and hit["source_run_id"] == "r1"
    assert toy_step.finished(url, "r2", Config(3)) is None  # other inputs: it would run
    assert reuses(open_catalog(url), "r2") == []  # asking wrote no reused row
    assert len(calls) == 1


@cached_step("optimize-supernet")
def fake_supernet_step(catalog_url: str, run_id: str, family: str) -> dict:
    calls.append((run_id, family))
    return {"supernet_id": family, "cached": False, "source": "imported"}  # what a first run finds


@cached_step("optimize-profile")
def fake_profile_step(catalog_url: str, run_id: str, family: dict) -> dict:
    calls.append((run_id, family["supernet_id"]))
    return {"profile_id": "p", "units": 3, "cached": False, "traces_cached": False}


def test_optimize_summary_says_cached_for_a_replayed_step(tmp_path):
    # a replayed step returns the first run's result, whose flags say what *that* run found (cached False); the
    # summary of the rerun must say the supernet and the profile were cached, and from which run
    from forgeflow.flows.optimize import provenance, reused_steps

    url = str(tmp_path / "cat")
    cat = open_catalog(url)
    for run in ("first", "rerun"):
        fam = fake_supernet_step(url, run, "digits")
        prof = fake_profile_step(url, run, fam)
        sn, pr = provenance(fam, prof, reused_steps(cat, run))
        if run == "first":
            assert sn["cached"] is False and pr["cached"] is False and pr["traces_cached"] is False
    assert fam["cached"] is False  # the replayed result still carries the first run's flag
    assert sn["cached"] is True and sn["reused_from"] == "first"
    assert pr["cached"] is True and pr["traces_cached"] is True and pr["reused_from"] == "first"
    assert len(calls) == 2  # each step ran once
