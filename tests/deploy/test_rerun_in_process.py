"""A rerun whose supernet, unit profile and sensitivities the catalog already holds has no heavy step left: the CLI
runs it in its own process (no LocalCluster), and the search then fans out serially, with the same result."""

from __future__ import annotations


def test_cached_family_says_what_the_catalog_holds_for_this_host(tmp_path):
    from forgeflow.catalog import open_catalog
    from forgeflow.flows.optimize import needs_cluster
    from forgeflow.tasks.deploy import pipeline as P
    from forgeflow.tasks.deploy.request import OptimizeRequest

    cat = open_catalog(str(tmp_path / "cat"))
    req = OptimizeRequest(supernet="digits", target="host-cpu-2", microbatch=16).validate()
    assert P.cached_family(cat, "digits", None, 16) == {"supernet": False, "profile": False, "traces": False}
    assert needs_cluster(req, cat)

    rec = P.resolve_family(cat, "run-1", "digits", None)
    assert rec["supernet_id"] == P.family_supernet_id("digits", None)
    sid, host = rec["supernet_id"], P.host_name()
    cat.append("deploy_unit_profiles", [{"profile_id": P.profile_id(sid, host, 16), "family": sid, "host": host,
                                         "microbatch": 16, "unit_key": "{}", "ms": 1.0, "ms_fakequant": 1.0}],
               run_id="run-1")
    assert P.cached_family(cat, "digits", None, 16) == {"supernet": True, "profile": True, "traces": False}
    assert needs_cluster(req, cat)  # the sensitivities still to estimate
    cat.append("deploy_traces", [{"family": sid, "layer": "stem", "trace_per_param": 1.0}], run_id="run-1")
    assert all(P.cached_family(cat, "digits", None, 16).values())
    assert not needs_cluster(req, cat)
    # another microbatch is another profile; a federated fine-tune always fans out
    assert not P.cached_family(cat, "digits", None, 32)["profile"]
    assert needs_cluster(OptimizeRequest(supernet="digits", target="host-cpu-2", microbatch=32).validate(), cat)
    assert needs_cluster(OptimizeRequest(supernet="digits", target="host-cpu-2", microbatch=16, clients=2
                                         ).validate(), cat)


def test_search_without_an_executor_runs_serially_and_matches_a_parallel_one(tmp_path, small_family):
    # off Dask (the in-process rerun) the search step gets SERIAL; batches larger than a chunk must still be
    # evaluated, with the same values as through a real parallel executor
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.deploy.pipeline import search_subnet
    from forgeflow.tasks.deploy.profile import family_units
    from forgeflow.tasks.deploy.target import host_view

    fam, _ = small_family
    ms = {k: 0.1 + 0.001 * i for i, k in enumerate(family_units(fam.net, fam.data.side))}
    fam = dataclasses.replace(fam, unit_ms=ms, unit_ms_fakequant={k: 2 * v for k, v in ms.items()})
    cat = open_catalog(str(tmp_path / "cat"))
    serial = search_subnet(cat, "r1", fam, host_view(2, 16), budget=20, seed=0, executor=None)
    with ThreadPoolExecutor(2) as pool:
        parallel = search_subnet(cat, "r2", fam, host_view(2, 16), budget=20, seed=0, executor=pool)
    assert serial["evaluations"] == 20
    assert serial["candidates"] == parallel["candidates"] and serial["chosen"] == parallel["chosen"]
