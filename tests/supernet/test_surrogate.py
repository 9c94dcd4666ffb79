import numpy as np
import pytest
from sklearn.linear_model import Ridge

from tasks.supernet.surrogate import RidgeSurrogate


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
