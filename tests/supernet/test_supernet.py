import numpy as np
import pytest
import torch

from forgeflow.tasks.supernet.space import ElasticSpace, InvalidArchitectureError
from forgeflow.tasks.supernet.supernet import ElasticSupernet, SupernetConfig, extract_subnet
from forgeflow.tasks.supernet.train import (Dataset, TrainConfig, accuracy_pct, load_dataset, load_state_arrays, recalibrate_bn,
                                  state_arrays, subnet_accuracy, train_supernet)

torch.set_num_threads(1)

TINY = SupernetConfig(stem_channels=4, stage_channels=(4, 8), stage_strides=(1, 2),
                      space=ElasticSpace(resolutions=(6, 8), depths=(1, 2), expand_ratios=(1, 2), kernel_sizes=(1, 3),
                                         n_stages=2))


def test_elastic_space_encoding_round_trips_and_canonicalises():
    space = ElasticSpace()
    rng = np.random.default_rng(0)
    for g in space.sample(rng, 20):
        arch = space.decode(g)
        assert np.array_equal(space.encode(arch), g)
        assert np.array_equal(space.from_string(arch.to_string()), g)
        for s, d in enumerate(arch.depth):  # inactive slots hold the smallest choice
            assert all(e == space.expand_ratios[0] for e in arch.expand[s][d:])
    assert space.decode(space.encode(space.largest())).depth == (3, 3, 3)
    with pytest.raises(InvalidArchitectureError):
        space.from_string("r9|d1,1,1|e2,2,2;2,2,2;2,2,2|k3,3,3;3,3,3;3,3,3")  # resolution 9 not in the space


@pytest.mark.parametrize("training", [False, True])
def test_extracted_subnet_matches_supernet_exactly(training):
    torch.manual_seed(0)
    net = ElasticSupernet(SupernetConfig())
    x = torch.rand(12, 1, 8, 8)
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(x)
    space = net.config.space
    rng = np.random.default_rng(1)
    archs = [space.largest(), space.smallest()] + [space.decode(g) for g in space.sample(rng, 6)]
    for arch in archs:
        net.set_active(arch)
        net.train(training)
        sub = extract_subnet(net, arch)
        sub.train(training)
        with torch.no_grad():
            ref, got = net(x), sub(x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        n_params = sum(p.numel() for p in sub.parameters())
        if arch == space.smallest():
            assert n_params < sum(p.numel() for p in extract_subnet(net, space.largest()).parameters())


def test_extracted_weights_are_copies_not_views():
    net = ElasticSupernet(TINY)
    arch = TINY.space.largest()
    sub = extract_subnet(net, arch)
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    x = torch.rand(4, 1, 8, 8)
    net.set_active(arch)
    net.eval()
    sub2 = extract_subnet(net, arch).eval()
    torch.testing.assert_close(sub2(x), net(x))


def test_tiny_sandwich_training_learns_and_state_round_trips():
    data = load_dataset(None, seed=0)
    torch.manual_seed(0)
    net = ElasticSupernet(TINY)
    report = train_supernet(net, data, TrainConfig(epochs=2, batch_size=64, random_subnets=1, lr=1e-2))
    assert report.steps > 0 and len(report.loss_largest) == 2
    assert report.loss_largest[-1] < report.loss_largest[0]
    sp = TINY.space
    big = subnet_accuracy(net, sp.largest(), data)
    small = subnet_accuracy(net, sp.smallest(), data)
    assert big > 40.0 and small > 15.0  # 10 classes: chance is 10 %
    clone = load_state_arrays(ElasticSupernet(TINY), state_arrays(net))
    assert subnet_accuracy(clone, sp.largest(), data) == big


def test_bn_recalibration_sets_exact_batch_statistics():
    torch.manual_seed(0)
    net = ElasticSupernet(TINY)
    sub = extract_subnet(net, TINY.space.largest())
    x = torch.rand(64, 1, 8, 8) * 3 + 1
    recalibrate_bn(sub, x, batch_size=64)
    stem_in = sub.resize(x)
    conv_out = sub.stem.conv(stem_in)
    torch.testing.assert_close(sub.stem.bn.running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not sub.training


def test_user_dataset_npz_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forgeflow.tasks.supernet.train import DatasetError

    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_dataset(str(tmp_path / "d.npz"))
    assert d.side == 6 and d.in_channels == 1 and len(d.x_train) + len(d.x_test) == 40
    cols = {f"p{i}": x.reshape(40, -1)[:, i] for i in range(36)} | {"y": y}
    pq.write_table(pa.table(cols), tmp_path / "d.parquet")
    d2 = load_dataset(str(tmp_path / "d.parquet"))
    assert d2.x_train.shape[1:] == (1, 6, 6)
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", x=x, y=y[:5])
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "bad.npz"))
