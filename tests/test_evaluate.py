"""Evaluation metrics on hand-made arrays, workload-grouped folds, and the evaluation pipeline on a tiny
generated fixture (FAKE latencies, made up in the test; never data)."""
import json
import math

import numpy as np
import pytest

from costpass import evaluate as E
from costpass import features as F


def test_perfect_predictor():
    y = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 9.0, 7.0, 8.0])
    g = ["a"] * 5 + ["b"] * 3
    m = E.metrics(y, y, g)
    assert m["mape"] == 0 and m["median_ape"] == 0
    assert m["kendall_tau"] == 1.0 and m["pairwise_acc"] == 1.0
    assert m["top1"] == 1.0 and m["top5"] == 1.0 and m["n_workloads"] == 2


def test_reversed_predictor():
    y = np.array([1.0, 2.0, 4.0, 8.0])
    m = E.metrics(y, 1.0 / y, ["w"] * 4)
    assert m["kendall_tau"] == -1.0 and m["pairwise_acc"] == 0.0
    assert m["top1"] == pytest.approx(1.0 / 8.0)       # picked the slowest: best 1 / its 8
    assert m["top5"] == 1.0                             # all 4 are in the top 5
    assert m["mape"] == pytest.approx(np.mean(np.abs(1 / y - y) / y))


def test_hand_computed_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 3.0, 2.0, 4.0])                 # one discordant pair of 6
    assert E.kendall_tau(y, p) == pytest.approx((5 - 1) / 6)
    assert E.pairwise_accuracy(y, p) == pytest.approx(5 / 6)
    assert E.pairwise_accuracy(y, np.ones(4)) == 0.5   # all ties: a coin flip per pair
    assert E.topk_score([4.0, 1.0, 2.0], [0.1, 0.3, 0.2], 1) == pytest.approx(1 / 4)
    assert E.topk_score([4.0, 1.0, 2.0], [0.1, 0.3, 0.2], 2) == pytest.approx(1 / 2)
    assert math.isnan(E.kendall_tau([1.0], [1.0]))


def test_uncalibrated_has_no_mape():
    y = np.array([1.0, 2.0, 3.0])
    m = E.metrics(y, -np.array([3.0, 2.0, 1.0]) * 100, ["w"] * 3, calibrated=False)
    assert m["mape"] is None and m["kendall_tau"] == 1.0


def test_group_kfold_never_splits_a_workload():
    groups = [f"w{i % 7}" for i in range(100)]
    folds = E.group_kfold(groups, 5)
    assert len(folds) == 5
    seen = []
    for tr, te in folds:
        a, b = {groups[i] for i in tr}, {groups[i] for i in te}
        assert not (a & b) and b
        seen += list(te)
    assert sorted(seen) == list(range(100))            # every row held out exactly once
    with pytest.raises(ValueError):
        E.group_kfold(["only"] * 5, 5)


def _synthetic_dataset(gpu="h100", n_wl=6, per=20, seed=0):
    """Feature rows with FAKE latencies = estimate x a function of occupancy (to exercise the code)."""
    rng = np.random.default_rng(seed)
    n = n_wl * per
    X = rng.normal(size=(n, len(F.FEATURE_SCHEMA)))
    i = F.FEATURE_SCHEMA.index
    X[:, i("log_estimate_us")] = rng.uniform(1, 8, n)
    X[:, i("occupancy")] = rng.uniform(0, 1, n)
    y = F.estimate_us_of(X) / 1e3 * np.exp(1.0 - 2.0 * X[:, i("occupancy")])
    wls = [f"w{k // per}" for k in range(n)]
    return E.Dataset(gpu, [f"c{k}" for k in range(n)], wls, y, X)


def test_cross_validate_fast_methods():
    ds = _synthetic_dataset()
    res = E.cross_validate(ds, methods=E.FAST_METHODS, folds=3, progress=False)
    r = res["methods"]
    assert res["folds"] == 3 and res["n"] == len(ds)
    assert r["analytical"]["mape"] > 0.5                       # estimate misses the occupancy factor
    assert r["analytical-scaled"]["mape"] < r["analytical"]["mape"]
    assert r["costpass-reg-resid"]["median_ape"] < 0.2        # learns it on unseen workloads
    assert r["costpass-rank"]["mape"] is None and r["costpass-rank"]["kendall_tau"] > 0.5
    # cross-GPU on the same candidate ids
    ds2 = _synthetic_dataset("h200", seed=0)
    res2 = E.cross_validate(ds, methods=("analytical-scaled",), folds=3, progress=False, test_ds=ds2)
    assert res2["train_gpu"] == "h100" and res2["test_gpu"] == "h200"
    assert "| analytical-scaled |" in E.markdown_table(res2)


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    """Real candidates (traces) of 3 small workloads, FAKE latencies, written as records + a trace file."""
    from costpass.measure import candidates as C
    from costpass.measure.build import cuda_target
    from costpass.measure.records import JsonlWriter, Record

    root = tmp_path_factory.mktemp("fixture")
    (root / "ds" / "h100").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "traces.jsonl", "w") as ft, JsonlWriter(str(root / "ds" / "h100" / "fake.jsonl"),
                                                             fsync=False) as w:
        for wl in ("rmsnorm_4096_fp16", "row_sum_fp32", "row_max_fp32"):
            for c in C.random_candidates(wl, cuda_target(), 4, seed=1, max_seconds=20):
                ft.write(json.dumps({"id": c.id, "workload": wl, "trace_json": c.trace_json}) + "\n")
                ms = float(rng.uniform(0.01, 1.0))           # FAKE
                w.append(Record(workload=wl, candidate_id=c.id, status="ok", gpu="NVIDIA H100 80GB HBM3",
                                run_times_ms=[ms], median_ms=ms, tag="FAKE-test-fixture"))
            w.append(Record(workload=wl, candidate_id="no-trace-" + wl, status="ok", gpu="NVIDIA H100 80GB HBM3",
                            run_times_ms=[1.0], median_ms=1.0, tag="FAKE-test-fixture"))
    return root


def test_pipeline_on_fixture(fixture_dataset):
    root = fixture_dataset
    tr = E.trace_index([str(root / "traces.jsonl")], search=())
    ex = E.Extractor(cache_dir=str(root / "cache"), progress=False)
    ds = E.load_dataset("h100", traces=tr, extractor=ex, root=str(root / "ds"))
    assert ds.info["no_trace"] == 3 and ds.info["workloads"] == 3 and len(ds) >= 9
    assert np.all(np.isfinite(ds.X)) and ds.X.shape[1] == len(F.FEATURE_SCHEMA)
    assert all(p.ndim == 2 and p.shape[1] == 164 for p in ds.perstore)
    assert (root / "cache" / ".gitignore").exists()
    # the cache answers a second load without extracting again
    ex2 = E.Extractor(cache_dir=str(root / "cache"), progress=False)
    ds2 = E.load_dataset("h100", traces=tr, extractor=ex2, root=str(root / "ds"))
    assert ex2.timing["n_demand"] == 0 and ex2.timing["n_perstore"] == 0
    assert np.array_equal(ds.X, ds2.X)
    res = E.cross_validate(ds, methods=E.METHODS, folds=3, progress=False)
    for m, r in res["methods"].items():
        assert r["n"] == len(ds) and r["kendall_tau"] is not None, m
        assert (r["mape"] is None) == (not E.CALIBRATED[m])


def test_transfer_and_online_adaptation():
    a, b = _synthetic_dataset("h100", per=24), _synthetic_dataset("h200", per=24, seed=0)
    r = E.transfer(a, b, methods=("analytical", "costpass-reg-resid"))
    assert r["n"] == len(b) and r["methods"]["costpass-reg-resid"]["median_ape"] < 0.2
    # revealing 8 measured candidates per held-out workload lets the online residual model learn the
    # occupancy factor the analytical estimate misses (mean over 3 synthetic draws: one draw's noise columns
    # move the ratio between 0.3 and 0.55)
    ratios = []
    for s in (0, 1, 2):
        a = _synthetic_dataset("h100", per=24, seed=s)
        on = E.online_adaptation(a, folds=3, ks=(0, 8), methods=("analytical+online",), progress=False)
        r0, r8 = on["methods"]["analytical+online k=0"], on["methods"]["analytical+online k=8"]
        assert r0["n"] == r8["n"] == on["n"] == 6 * (24 - 8)  # scored on the same never-revealed candidates
        ratios.append(r8["median_ape"] / r0["median_ape"])
    assert np.mean(ratios) < 0.5 and max(ratios) < 0.75


def test_feature_cache_key_covers_the_code_behind_the_features(tmp_path):
    from costpass import spec
    ex = E.Extractor(cache_dir=str(tmp_path), progress=False)
    path = ex.feature_cache(spec.load("h100")).path
    for part in (F.schema_hash(), ex.demand_version, ex.bounds_version, "h100"):
        assert part in path
    assert ex.demand_version in ex.demand_cache("sm_90a").path


def test_joint_cross_gpu_training_and_ship(tmp_path):
    """A model trained across two GPUs: leave-workload-out folds never train on a held-out workload of either
    GPU; benchmarks/evaluate.py's ship() writes <a>+<b>.json.gz whose header lists both GPUs."""
    import importlib.util
    import os
    from costpass.model import CostpassModel, read_header

    a, b = _synthetic_dataset("h100", per=24), _synthetic_dataset("h200", per=24, seed=1)
    j = E.concat([a, b])
    assert j.gpu == "h100+h200" and len(j) == len(a) + len(b) and j.info["parts"] == {"h100": len(a), "h200": len(b)}
    seen = []
    orig = E.fit_predict

    def spy(method, train, test, seed=0):
        assert not set(train.workloads) & set(test.workloads)      # no held-out workload in training
        seen.append((len(train), len(test)))
        return orig(method, train, test, seed=seed)

    E.fit_predict = spy
    try:
        r = E.cross_validate_joint([a, b], b, methods=("costpass-reg-resid",), folds=3, progress=False)
    finally:
        E.fit_predict = orig
    assert r["train_gpu"] == "h100+h200" and r["test_gpu"] == "h200" and r["n"] == len(b)
    assert all(ntr + 2 * nte == len(a) + len(b) for ntr, nte in seen)  # both GPUs' training rows
    assert r["methods"]["costpass-reg-resid"]["median_ape"] < 0.2

    spec_ = importlib.util.spec_from_file_location(
        "bench_eval", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "evaluate.py"))
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    a.info, b.info = {"records": len(a)}, {"records": len(b)}
    p1 = bench.ship([a], "costpass-reg-resid", 0, str(tmp_path))
    p2 = bench.ship([a, b], "costpass-reg-resid", 0, str(tmp_path))
    assert os.path.basename(p1) == "h100.json.gz" and os.path.basename(p2) == "h100+h200.json.gz"
    h1, h2 = read_header(p1), read_header(p2)
    assert h1["gpus"] == ["h100"] and h2["gpus"] == ["h100", "h200"]
    assert h2["n_train"] == len(a) + len(b) and h2["training_data"]["per_gpu"]["h200"]["candidates"] == len(b)
    assert h1["training_data_hash"] != h2["training_data_hash"] and len(h2["training_data_hash"]) == 16
    m = CostpassModel.load(p2)
    assert np.all(np.isfinite(m.predict(b.X)))


def test_selection_bias_ratios_by_hand():
    """benchmarks/selection_bias.ratios: per workload ln(pred/measured) at the model's pick and at the measured
    best. Workload a: the model ranks candidate 2 fastest (pred 1, measured 2: ratio 0.5); the measured best is
    candidate 0 (measured 1, pred 3: ratio 3). Workload b has too few candidates and is left out."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "bench_sel", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "selection_bias.py"))
    sb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sb)
    y = np.array([1.0, 4.0, 2.0, 8.0, 1.0])
    pred = np.array([3.0, 4.0, 1.0, 8.0, 1.0])
    r = sb.ratios(y, pred, ["a", "a", "a", "a", "b"], min_n=4)
    assert r["workloads"] == ["a"]
    assert np.isclose(np.exp(r["model_pick"][0]), 0.5) and np.isclose(np.exp(r["measured_best"][0]), 3.0)
    assert np.isclose(np.exp(r["all_median"][0]), np.exp(np.median(np.log([3.0, 1.0, 0.5, 1.0]))))
    s = sb.summary(r["measured_best"] + [0.0])
    assert np.isclose(s["geomean_ratio"], np.sqrt(3.0)) and s["share_over"] == 0.5 and s["n"] == 2


def test_selection_bias_unknown_gpu_is_one_line_exit_2(tmp_path, capsys):
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "bench_sel2", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "selection_bias.py"))
    sb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sb)
    assert sb.main(["--gpus", "nosuchgpu", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown GPU 'nosuchgpu'" in err[0]
    assert not list(tmp_path.iterdir())          # nothing written
