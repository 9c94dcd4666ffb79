"""A small trained-free family (random supernet weights on digits) planned on a 2-process host target: enough to build
real bundles, run real pipelines and render real reports without the shipped checkpoint's cost."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def small_family():
    from forgeflow.tasks.deploy.family import Family
    from forgeflow.tasks.deploy.profile import chain_keys
    from forgeflow.tasks.supernet.supernet import ElasticSupernet
    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    torch.manual_seed(0)
    data = load_dataset(None)
    net = ElasticSupernet(supernet_config_for(data, stage_channels=(8, 12, 16))).eval()
    sp = net.config.space
    arch = sp.decode(sp.encode(sp.smallest()))
    units = {}
    for a in (sp.smallest(), sp.largest()):
        for key, spec, _ in chain_keys(net, a, data.side):
            units[key] = 0.1 + 0.01 * len(units)  # synthetic host ms: the tests check plumbing, not timing
    traces = {n: 1.0 for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and n}
    return Family(net, data, units, traces, 16, {k: 2 * v for k, v in units.items()}), arch


@pytest.fixture(scope="session")
def host2():
    from forgeflow.tasks.deploy.target import host_view

    return host_view(2, 16)


@pytest.fixture(scope="session")
def bundle(small_family, host2, tmp_path_factory):
    from forgeflow.tasks.deploy.pipeline import export_bundle, plan_chosen

    fam, arch = small_family
    planned = plan_chosen(fam, arch.to_string(), host2)
    out = tmp_path_factory.mktemp("bundle") / "b"
    info = export_bundle(fam, arch.to_string(), planned, host2, out, "test-run")
    return out, planned, info
