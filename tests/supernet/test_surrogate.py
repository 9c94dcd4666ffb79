import numpy as np
import pytest
from sklearn.linear_model import Ridge

from forgeflow.tasks.supernet.surrogate import RidgeSurrogate


@pytest.mark.parametrize("n, d", [(60, 20), (15, 40)])  # primal and dual (more features than rows) paths
def test_ridge_matches_sklearn_and_exact_leave_one_out(n, d):
    rng = np.random.default_rng(0)
    x = rng.random((n, d))
    y = np.stack([x @ rng.normal(size=d) + rng.normal(0, 0.1, n), rng.normal(size=n)], axis=1)
    model = RidgeSurrogate().fit(x, y)
    for j in range(2):
        ref = Ridge(alpha=model.penalty_[j]).fit(x, y[:, j])
        np.testing.assert_allclose(model.predict(x)[:, j], ref.predict(x), atol=1e-8)
        loo = []
        for i in range(n):
            keep = np.arange(n) != i
            loo.append(Ridge(alpha=model.penalty_[j]).fit(x[keep], y[keep, j]).predict(x[i : i + 1])[0] - y[i, j])
        assert np.isclose(np.sqrt(np.mean(np.square(loo))), model.rmse_[j])
    # float32 features give the same predictions
    np.testing.assert_allclose(model.predict(x.astype(np.float32)), model.predict(x), rtol=1e-4, atol=1e-4)


def test_boosted_surrogate_learns_what_an_additive_ridge_cannot():
    from forgeflow.tasks.supernet.surrogate import BoostedSurrogate

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(400, 3))
    y = np.where(x[:, 0] == x[:, 1], 10.0, 0.0) + x[:, 2]  # a pure interaction plus an additive term
    test = rng.integers(0, 5, size=(200, 3))
    truth = np.where(test[:, 0] == test[:, 1], 10.0, 0.0) + test[:, 2]
    trees = BoostedSurrogate().fit(x, y[:, None])
    onehot = lambda g: np.concatenate([np.eye(5)[g[:, i]] for i in range(3)], axis=1)
    ridge = RidgeSurrogate().fit(onehot(x), y)
    err_trees = np.sqrt(np.mean((trees.predict(test)[:, 0] - truth) ** 2))
    err_ridge = np.sqrt(np.mean((ridge.predict(onehot(test))[:, 0] - truth) ** 2))
    assert err_trees < 1.0 and err_ridge > 3.0  # the interaction alone has an RMS of 4 around an additive fit
    assert np.array_equal(trees.predict(test), BoostedSurrogate().fit(x, y).predict(test))  # deterministic
    with pytest.raises(RuntimeError):
        BoostedSurrogate().predict(test)
    with pytest.raises(ValueError):
        BoostedSurrogate().fit(x + 300, y)
