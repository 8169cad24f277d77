"""CostpassModel: fit / predict / save / load round trip, schema check, objectives (synthetic rows only)."""
import json

import numpy as np
import pytest

from costpass import features as F
from costpass.model import CostpassModel, ModelSchemaError, read_header


def synthetic(n=240, seed=0):
    """Feature rows whose latency is the analytical estimate column times a function of two features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(F.FEATURE_SCHEMA)))
    i = F.FEATURE_SCHEMA.index
    X[:, i("log_estimate_us")] = rng.uniform(0, 8, n)
    X[:, i("occupancy")] = rng.uniform(0, 1, n)
    est_ms = F.estimate_us_of(X) / 1e3
    y = est_ms * np.exp(1.0 - 1.5 * X[:, i("occupancy")] + 0.05 * rng.normal(size=n))
    groups = [f"w{k % 6}" for k in range(n)]
    return X, y, groups


@pytest.mark.parametrize("objective,target,suffix", [("reg", "residual", ".json"), ("reg", "log", ".json.gz"),
                                                     ("rank", "log", ".json")])
def test_round_trip_identical(tmp_path, objective, target, suffix):
    X, y, g = synthetic()
    m = CostpassModel(objective=objective, target=target, seed=3, num_rounds=60, gpus=["h100"]).fit(X, y, groups=g)
    p = m.predict(X)
    path = m.save(str(tmp_path / f"m{suffix}"))
    m2 = CostpassModel.load(path)
    assert np.array_equal(p, m2.predict(X))
    h = read_header(path)
    assert h["feature_schema"]["hash"] == F.schema_hash() and h["gpus"] == ["h100"]
    assert h["objective"] == objective and h["n_train"] == len(y) and len(h["training_data_hash"]) == 16
    if objective == "reg":
        assert m.calibrated
        assert np.median(np.abs(p - y) / y) < 0.25
    else:
        assert not m.calibrated
        # ranks: the predicted order agrees with the true one on most pairs
        from costpass.evaluate import kendall_tau
        assert kendall_tau(y, p) > 0.5


def test_seeded():
    X, y, _ = synthetic()
    a = CostpassModel(seed=1, num_rounds=40).fit(X, y).predict(X)
    b = CostpassModel(seed=1, num_rounds=40).fit(X, y).predict(X)
    assert np.array_equal(a, b)


def test_schema_mismatch_refused(tmp_path):
    X, y, _ = synthetic(80)
    path = CostpassModel(num_rounds=5).fit(X, y).save(str(tmp_path / "m.json"))
    obj = json.load(open(path))
    obj["header"]["feature_schema"]["hash"] = "0000000000000000"
    json.dump(obj, open(path, "w"))
    with pytest.raises(ModelSchemaError, match="feature schema"):
        CostpassModel.load(path)
    with pytest.raises(ModelSchemaError):
        CostpassModel(num_rounds=5).fit(X, y).predict(X[:, :-1])


def test_bad_inputs():
    X, y, _ = synthetic(40)
    with pytest.raises(ValueError):
        CostpassModel().fit(X, -y)
    with pytest.raises(ValueError):
        CostpassModel(objective="rank").fit(X, y)        # needs groups
    with pytest.raises(ValueError):
        CostpassModel(objective="classify")
    with pytest.raises(RuntimeError):
        CostpassModel().predict(X)


def test_no_pickle_in_file(tmp_path):
    X, y, _ = synthetic(40)
    path = CostpassModel(num_rounds=5).fit(X, y).save(str(tmp_path / "m.json"))
    obj = json.load(open(path))          # plain JSON all the way down
    assert obj["format"] == "costpass-model" and "learner" in obj["booster"]


def test_stale_code_warns(tmp_path):
    from costpass.model import StaleModelWarning
    X, y, _ = synthetic(60)
    path = CostpassModel(num_rounds=5, gpus=["h100"]).fit(X, y).save(str(tmp_path / "m.json"))
    obj = json.load(open(path))
    assert "bounds.py" in obj["header"]["code_hashes"]
    obj["header"]["code_hashes"]["bounds.py"] = "000000000000"
    json.dump(obj, open(path, "w"))
    with pytest.warns(StaleModelWarning, match="bounds.py"):
        CostpassModel.load(path)
