"""Evaluation of cost models on measured records: leave-workload-out cross-validation and cross-GPU transfer.

    from costpass import evaluate as E
    ds = E.load_dataset("h100")                # measured records + traces -> features (cached)
    res = E.cross_validate(ds, methods=E.METHODS, folds=5)
    E.metrics(y_true_ms, y_pred_ms, workloads) # MAPE, median APE, Kendall tau, pairwise acc., top-1/top-5
    E.cross_validate_joint([h100, h200], h100)  # one model trained across both GPUs, scored on H100's
                                                # held-out workloads (the same folds as cross_validate(h100))

Splits are always by workload (GroupKFold over workloads, never by row): a model is scored only on
workloads it never saw. Within-workload metrics (Kendall tau, pairwise accuracy, top-k) are computed per
workload and averaged over workloads; MAPE / median APE over all held-out candidates.

top-k score of a workload = best true latency / best true latency among the k candidates the method ranks
fastest (1.0: the method's top-k contains the true best).

Methods (all trained on exactly the same training folds, scored on the same held-out candidates):

* ``analytical``           costpass's analytical estimate (``bounds``), no fit.
* ``analytical-scaled``    the same x one global factor (geometric mean of measured / estimate on the
                           training folds).
* ``costpass-reg-log``     XGBoost on costpass features, target ln(ms).
* ``costpass-reg-resid``   XGBoost on costpass features, target ln(ms) - ln(analytical estimate).
* ``costpass-rank``        XGBoost rank:pairwise on costpass features, one query group per workload
                           (ranking metrics only).
* ``tvm-xgbmodel``         TVM's own ``XGBModel`` with ``PerStoreFeature``, trained through its ``update``
                           with the training folds' ``RunnerResult`` s, one call per workload (its feature
                           groups are per task); it predicts normalised throughput, so ranking metrics only.
* ``tvm-perstore-xgb-reg`` the same PerStoreFeature rows, aggregated to a fixed vector (sum and max over
                           stores, number of stores), XGBoost on ln(ms) with costpass's XGBoost settings:
                           the baseline whose MAPE is comparable.
* ``costpass+perstore``    costpass features concatenated with the aggregated PerStoreFeature rows,
                           residual target.

Feature extraction costs ~50 ms per candidate (lowering), so demands, costpass features and PerStoreFeature
rows are cached per candidate id under ``.cache/costpass/`` (a folder that ignores itself in git), keyed
by the demand code's hash and target arch (demands), the feature schema hash + demand code + bounds and
features code + GPU spec (features), and the TVM version (PerStoreFeature).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import features as F
from . import spec as S
from .model import CostpassModel, DEFAULT_PARAMS, DEFAULT_ROUNDS
from .records import KernelDemand

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.path.join(REPO, ".cache", "costpass")

CALIBRATED = {"analytical": True, "analytical-scaled": True, "costpass-reg-log": True,
              "costpass-reg-resid": True, "costpass-rank": False, "tvm-xgbmodel": False,
              "tvm-perstore-xgb-reg": True, "costpass+perstore": True}
METHODS = tuple(CALIBRATED)
FAST_METHODS = ("analytical", "analytical-scaled", "costpass-reg-log", "costpass-reg-resid", "costpass-rank")


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------

def _pair_signs(x) -> np.ndarray:
    """sign(x[i] - x[j]) for every pair i < j."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x[:, None] - x[None, :])[np.triu_indices(len(x), 1)]


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two sequences (nan when either is constant or shorter than 2)."""
    if len(a) < 2:
        return float("nan")
    da, db = _pair_signs(a), _pair_signs(b)
    s = float(np.sum(da * db))
    n0 = len(da)
    ta, tb = float(np.sum(da == 0)), float(np.sum(db == 0))
    den = math.sqrt((n0 - ta) * (n0 - tb))
    return s / den if den > 0 else float("nan")


def pairwise_accuracy(y_true, y_pred) -> float:
    """Share of candidate pairs with different true latency that the prediction orders the same way
    (a tie in the prediction counts one half). nan when there is no such pair."""
    if len(y_true) < 2:
        return float("nan")
    dt, dp = _pair_signs(y_true), _pair_signs(y_pred)
    keep = dt != 0
    if not keep.any():
        return float("nan")
    agree = np.where(dp[keep] == 0, 0.5, (dp[keep] == dt[keep]).astype(np.float64))
    return float(agree.mean())


def topk_score(y_true, y_pred, k: int = 1) -> float:
    """best true latency / best true latency among the k candidates predicted fastest (1.0 = perfect)."""
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(t) == 0:
        return float("nan")
    top = np.argsort(p, kind="stable")[:k]
    return float(t.min() / t[top].min())


def _nanmean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else None


def metrics(y_true, y_pred, groups, calibrated: bool = True) -> dict:
    """All metrics of one method on held-out candidates. ``y_pred``: latency (ms) when ``calibrated``,
    else any score where *lower means faster* (only the ranking metrics are then reported)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    g = np.asarray([str(x) for x in groups])
    out: dict = {"n": int(len(t)), "n_workloads": int(len(set(g)))}
    if calibrated:
        ape = np.abs(p - t) / t
        out["mape"] = float(ape.mean())
        out["median_ape"] = float(np.median(ape))
    else:
        out["mape"] = out["median_ape"] = None
    taus, accs, top1, top5 = [], [], [], []
    per = {}
    for w in sorted(set(g)):
        m = g == w
        tw, pw = t[m], p[m]
        row = {"n": int(m.sum()), "kendall_tau": kendall_tau(tw, pw), "pairwise_acc": pairwise_accuracy(tw, pw),
               "top1": topk_score(tw, pw, 1), "top5": topk_score(tw, pw, 5)}
        per[w] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        if m.sum() >= 2:
            taus.append(row["kendall_tau"])
            accs.append(row["pairwise_acc"])
            top1.append(row["top1"])
            top5.append(row["top5"])
    out["kendall_tau"] = _nanmean(taus)
    out["pairwise_acc"] = _nanmean(accs)
    out["top1"] = _nanmean(top1)
    out["top5"] = _nanmean(top5)
    out["top1_min"] = float(min(top1)) if top1 else None
    out["per_workload"] = per
    return out


def group_kfold(groups, n_splits: int = 5) -> list:
    """(train_idx, test_idx) pairs with every group entirely on one side; groups are assigned largest
    first to the currently smallest fold (deterministic; as scikit-learn's GroupKFold)."""
    g = np.asarray([str(x) for x in groups])
    names, counts = np.unique(g, return_counts=True)
    k = min(n_splits, len(names))
    if k < 2:
        raise ValueError(f"need at least 2 workloads for cross-validation, got {len(names)}")
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))
    fold_of, sizes = {}, [0] * k
    for i in order:
        f = min(range(k), key=lambda j: (sizes[j], j))
        fold_of[names[i]] = f
        sizes[f] += counts[i]
    fid = np.array([fold_of[x] for x in g])
    idx = np.arange(len(g))
    return [(idx[fid != f], idx[fid == f]) for f in range(k)]


# ---------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------

def _src_hash(*modules) -> str:
    h = hashlib.sha256()
    for m in modules:
        with open(m.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def _spec_hash(g: S.GPUSpec) -> str:
    return hashlib.sha256(json.dumps(g.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


class JsonlCache:
    """Append-only JSONL map id -> value (the last line of an id wins)."""

    def __init__(self, path: str):
        self.path = path
        self.data: dict = {}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ign = os.path.join(os.path.dirname(path), ".gitignore")
        if not os.path.exists(ign):
            with open(ign, "w") as f:
                f.write("# cache of costpass.evaluate: never committed\n*\n")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                        self.data[obj["id"]] = obj["v"]
                    except (ValueError, KeyError):
                        continue  # a torn last line from a killed run

    def __contains__(self, k):
        return k in self.data

    def get(self, k, default=None):
        return self.data.get(k, default)

    def put(self, k, v):
        self.data[k] = v
        with open(self.path, "a") as f:
            f.write(json.dumps({"id": k, "v": v}, separators=(",", ":")) + "\n")


def _enc(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def _dec(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.float32).reshape(d["shape"])


# ---------------------------------------------------------------------------------------------------
# Traces and datasets
# ---------------------------------------------------------------------------------------------------

TRACE_FILE_HINTS = ("manifest", "candidates", "traces")


def _iter_jsonl(path):
    from costpass.measure.records import iter_json_lines
    for _, obj in iter_json_lines(path):
        yield obj


def trace_index(paths=(), search=(os.path.join(REPO, "datasets"), os.path.join(REPO, "carry"))) -> dict:
    """candidate id -> (workload, trace_json) from JSONL files holding ``trace_json`` (bundle manifests,
    candidate lists): the explicit ``paths`` (files or folders) plus files under ``search`` whose name
    contains manifest / candidates / traces. Candidates with an empty trace (hand-written kernels of the
    smoke bundle) are left out."""
    files = []
    for p in list(paths):
        if os.path.isdir(p):
            files += [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if ".jsonl" in f]
        elif os.path.exists(p):
            files.append(p)
    for root in search:
        if not os.path.isdir(root):
            continue
        for r, _, fs in os.walk(root):
            for f in fs:
                if ".jsonl" in f and any(h in f for h in TRACE_FILE_HINTS):
                    files.append(os.path.join(r, f))
    idx = {}
    for path in dict.fromkeys(files):
        for obj in _iter_jsonl(path):
            cid = obj.get("id", obj.get("candidate_id"))
            tj = obj.get("trace_json")
            if isinstance(cid, str) and tj and obj.get("workload"):
                idx[cid] = (obj["workload"], tj)
    return idx


def record_trace(r):
    """A record's own trace (``Record.trace_json``; older records keep it in ``extra``), or None."""
    tj = getattr(r, "trace_json", None) or (r.extra or {}).get("trace_json")
    return tj or None


@dataclass
class Dataset:
    gpu: str                    # spec name, e.g. "h100"
    ids: list
    workloads: list
    y_ms: np.ndarray
    X: np.ndarray               # costpass features on this GPU
    perstore: list = field(default_factory=list)   # PerStoreFeature rows per candidate (or None)
    info: dict = field(default_factory=dict)

    def subset(self, idx) -> "Dataset":
        idx = list(idx)
        return Dataset(self.gpu, [self.ids[i] for i in idx], [self.workloads[i] for i in idx],
                       self.y_ms[idx], self.X[idx], [self.perstore[i] for i in idx] if self.perstore else [],
                       dict(self.info))

    def __len__(self):
        return len(self.ids)


def measured(records) -> dict:
    """candidate id -> (workload, median over that candidate's ok records of their median ms)."""
    by: dict = {}
    for r in records:
        if r.status != "ok" or r.median_ms is None or not (r.median_ms > 0):
            continue
        by.setdefault(r.candidate_id, (r.workload, []))[1].append(float(r.median_ms))
    return {cid: (wl, float(np.median(v))) for cid, (wl, v) in by.items()}


class Extractor:
    """Demands (cached), costpass features (cached) and PerStoreFeature rows (cached) per candidate."""

    def __init__(self, cache_dir: str = CACHE_DIR, progress: bool = True):
        from . import bounds, demand, records
        self.cache_dir = cache_dir
        self.progress = progress
        self.demand_version = _src_hash(demand, records)
        self.bounds_version = _src_hash(bounds, F)
        self._dcache: dict = {}
        self._fcache: dict = {}
        self._pcache = None
        self.timing = {"apply_s": 0.0, "demand_s": 0.0, "features_s": 0.0, "perstore_s": 0.0,
                       "n_demand": 0, "n_perstore": 0}

    def _bar(self, it, total, desc):
        if not self.progress:
            return it
        from tqdm import tqdm
        return tqdm(it, total=total, desc=desc, leave=False, mininterval=1.0)

    def demand_cache(self, arch: str) -> JsonlCache:
        if arch not in self._dcache:
            self._dcache[arch] = JsonlCache(os.path.join(self.cache_dir,
                                                         f"demands-{self.demand_version}-{arch}.jsonl"))
        return self._dcache[arch]

    def feature_cache(self, g: S.GPUSpec) -> JsonlCache:
        # features depend on the demands too: a demand-pass change must not reuse old feature rows
        key = f"{F.schema_hash()}-{self.demand_version}-{self.bounds_version}-{g.name}-{_spec_hash(g)}"
        if key not in self._fcache:
            self._fcache[key] = JsonlCache(os.path.join(self.cache_dir, f"features-{key}.jsonl"))
        return self._fcache[key]

    def perstore_cache(self) -> JsonlCache:
        if self._pcache is None:
            import tvm
            self._pcache = JsonlCache(os.path.join(self.cache_dir, f"perstore-{tvm.__version__}.jsonl"))
        return self._pcache

    def demands(self, items, arch: str) -> dict:
        """items: [(cid, workload, trace_json)] -> cid -> [KernelDemand] or an error string."""
        cache = self.demand_cache(arch)
        todo = [it for it in items if it[0] not in cache]
        if todo:
            from . import demand as D
            from costpass.measure.candidates import apply_trace
            target = D.default_target(arch)
            for cid, wl, tj in self._bar(todo, len(todo), f"demands ({arch})"):
                try:
                    t0 = time.perf_counter()
                    sch = apply_trace(wl, tj)
                    t1 = time.perf_counter()
                    ds = D.extract(sch, target=target)
                    t2 = time.perf_counter()
                    self.timing["apply_s"] += t1 - t0
                    self.timing["demand_s"] += t2 - t1
                    self.timing["n_demand"] += 1
                    cache.put(cid, [d.to_dict() for d in ds])
                except Exception as e:  # noqa: BLE001 - reported, the candidate is left out
                    msg = str(e).strip().splitlines()
                    cache.put(cid, f"{type(e).__name__}: {msg[-1] if msg else ''}"[:500])
        out = {}
        for cid, _, _ in items:
            v = cache.get(cid)
            out[cid] = v if isinstance(v, str) else [KernelDemand.from_dict(d) for d in v]
        return out

    def features(self, items, g: S.GPUSpec) -> dict:
        """cid -> feature row on GPU g (None when the demand extraction failed)."""
        fc = self.feature_cache(g)
        need = [it for it in items if it[0] not in fc]
        if need:
            ds = self.demands(need, g.arch)
            t0 = time.perf_counter()
            for cid, _, _ in need:
                d = ds[cid]
                fc.put(cid, None if isinstance(d, str) else [float(v) for v in F.featurize(d, g)])
            self.timing["features_s"] += time.perf_counter() - t0
        return {cid: (None if fc.get(cid) is None else np.asarray(fc.get(cid), dtype=np.float64))
                for cid, _, _ in items}

    def perstore(self, items, target=None) -> dict:
        """cid -> PerStoreFeature rows (n_stores x 164, float32), None when the trace does not apply."""
        cache = self.perstore_cache()
        todo = [it for it in items if it[0] not in cache]
        if todo:
            from tvm.s_tir import meta_schedule as ms
            from costpass.measure.build import cuda_target
            from costpass.measure.candidates import apply_trace
            from schedules import workloads as W
            target = target or cuda_target()
            fe = ms.feature_extractor.PerStoreFeature()
            by_wl: dict = {}
            for it in todo:
                by_wl.setdefault(it[1], []).append(it)
            bar = self._bar(None, len(todo), "PerStoreFeature") if self.progress else None
            for wl, its in by_wl.items():
                mod = W.get(wl).mod()
                ctx = ms.TuneContext(mod=mod, target=target, task_name=wl, num_threads=1)
                ai = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
                for cid, _, tj in its:
                    try:
                        sch = apply_trace(wl, tj)
                        t0 = time.perf_counter()
                        rows = fe.extract_from(ctx, [ms.MeasureCandidate(sch, ai)])[0].numpy()
                        self.timing["perstore_s"] += time.perf_counter() - t0
                        self.timing["n_perstore"] += 1
                        cache.put(cid, _enc(rows))
                    except Exception:  # noqa: BLE001 - recorded as no PerStoreFeature row
                        cache.put(cid, None)
                    if bar is not None:
                        bar.update(1)
            if bar is not None:
                bar.close()
        return {cid: (None if cache.get(cid) is None else _dec(cache.get(cid))) for cid, _, _ in items}


def available_gpus(root: str | None = None) -> list:
    from costpass import data
    root = root or data.DATASETS
    if not os.path.isdir(root):
        return []
    known = set(S.available())      # folders named after a GPU spec (not ncu/, noise/ ...)
    return sorted(d for d in os.listdir(root) if d in known and os.path.isdir(os.path.join(root, d))
                  and data.dataset_files(os.path.join(root, d)))


def measured_items(records, traces: dict, meas: dict | None = None, info: dict | None = None) -> list:
    """[(candidate, workload, trace_json)] of every measured candidate (``meas``, default :func:`measured`) with a
    trace (``traces``, to which the records' own traces are added) and a known workload; the others are counted in
    ``info["no_trace"]`` / ``info["unknown_workload"]`` when ``info`` is given."""
    from schedules import workloads as W

    meas = measured(records) if meas is None else meas
    info = {"no_trace": 0, "unknown_workload": 0} if info is None else info
    known = set(W.names())
    for r in records:
        tj = record_trace(r)
        if tj and r.candidate_id not in traces:
            traces[r.candidate_id] = (r.workload, tj)
    items = []
    for cid, (wl, _) in sorted(meas.items()):
        if cid not in traces:
            info["no_trace"] += 1
        elif wl not in known:
            info["unknown_workload"] += 1
        else:
            items.append((cid, wl, traces[cid][1]))
    return items


def load_dataset(gpu: str, records=None, traces: dict | None = None, extractor: Extractor | None = None,
                 with_perstore: bool = True, root: str | None = None, build: str | None = "auto") -> Dataset:
    """Measured candidates of one GPU with their features. ``records`` default: ``costpass.data.load(gpu)``
    of one ``build`` (``costpass.data.select_build``: TVM's own build where the GPU has it);
    ``traces`` default: :func:`trace_index`. Candidates with no trace, an unknown workload or a failed
    extraction are left out and counted in ``info``."""
    from costpass import data

    g = S.load(data.gpu_key(gpu))
    if records is None:
        records = data.load(gpu, root=root, build=build)
    traces = trace_index() if traces is None else traces
    ex = extractor or Extractor()
    meas = measured(records)
    info = {"records": len(records), "ok_candidates": len(meas), "no_trace": 0, "unknown_workload": 0,
            "extract_failed": 0, "perstore_failed": 0, "gpu_names": sorted({r.gpu for r in records if r.gpu}),
            "builds": sorted({data.build_kind(r) for r in records})}
    items = measured_items(records, traces, meas, info)
    feats = ex.features(items, g)
    ps = ex.perstore(items) if with_perstore else {}
    ids, wls, ys, X, P = [], [], [], [], []
    for cid, wl, _ in items:
        if feats[cid] is None:
            info["extract_failed"] += 1
            continue
        if with_perstore and ps.get(cid) is None:
            info["perstore_failed"] += 1
            continue
        ids.append(cid)
        wls.append(wl)
        ys.append(meas[cid][1])
        X.append(feats[cid])
        if with_perstore:
            P.append(ps[cid])
    info["used"] = len(ids)
    info["workloads"] = len(set(wls))
    Xa = np.vstack(X) if X else np.zeros((0, len(F.FEATURE_SCHEMA)))
    return Dataset(g.name, ids, wls, np.asarray(ys, dtype=np.float64), Xa, P, info)


# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------

def aggregate_perstore(rows_list) -> np.ndarray:
    """PerStoreFeature rows per candidate -> fixed vector: [sum over stores, max over stores, n stores]."""
    out = []
    for rows in rows_list:
        r = np.asarray(rows, dtype=np.float64)
        if r.size == 0:
            out.append(np.zeros(2 * 164 + 1))
            continue
        out.append(np.concatenate([r.sum(axis=0), r.max(axis=0), [float(r.shape[0])]]))
    return np.vstack(out)


def _xgb_reg(X, y_log, params=None, rounds=DEFAULT_ROUNDS, seed=0):
    import xgboost as xgb
    p = {**DEFAULT_PARAMS, **(params or {}), "seed": seed, "objective": "reg:squarederror"}
    return xgb.train(p, xgb.DMatrix(X, label=y_log), num_boost_round=rounds)


def _xgb_pred(b, X):
    return np.asarray(b.inplace_predict(np.asarray(X, dtype=np.float64))).astype(np.float64)


_EST_COL = F.FEATURE_SCHEMA.index("log_estimate_us")


def _est_ms(X):
    return F.estimate_us_of(X) / 1e3


def _tvm_xgbmodel_fit_predict(train: Dataset, test: Dataset, seed: int = 0):
    """Train TVM's XGBModel through ``update`` (one call per training workload, RunnerResult = measured
    seconds) and score the test candidates with its ``predict``. The PerStoreFeature rows are those
    computed once per candidate (same extractor, cached), served by a PyFeatureExtractor keyed by candidate
    id, so XGBModel sees exactly what PerStoreFeature gives for each candidate."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import XGBConfig
    from costpass.measure.build import cuda_target
    from schedules import workloads as W

    table = {}
    for d in (train, test):
        for cid, rows in zip(d.ids, d.perstore):
            table[cid] = rows

    @derived_object
    class CachedPerStore(ms.feature_extractor.PyFeatureExtractor):
        def extract_from(self, context, candidates):
            return [tvm.runtime.tensor(np.asarray(table[str(c.sch.mod.attrs["costpass.candidate_id"])],
                                                  dtype=np.float32)) for c in candidates]

    target = cuda_target()
    model = ms.cost_model.XGBModel(extractor=CachedPerStore(), config=XGBConfig(seed=seed, nthread=1),
                                   num_warmup_samples=0, verbose_eval=0, adaptive_training=True)
    ctxs: dict = {}

    def ctx_of(wl):
        if wl not in ctxs:
            mod = W.get(wl).mod()
            ctxs[wl] = (ms.TuneContext(mod=mod, target=target, task_name=wl, num_threads=1),
                        ms.arg_info.ArgInfo.from_prim_func(mod["main"]), mod)
        return ctxs[wl]

    def cands(wl, cids):
        ctx, ai, mod = ctx_of(wl)
        return [ms.MeasureCandidate(tvm.s_tir.Schedule(mod.with_attr("costpass.candidate_id", c)), ai)
                for c in cids]

    wls = sorted(set(train.workloads))
    # defer training to the last update call: XGBModel's adaptive-training rule skips training while the
    # data grew by less than 20% since the last training; a huge last_train_size makes every call but the
    # last skip, so the model is trained once on all training workloads
    model.last_train_size = 10 ** 12
    for i, wl in enumerate(wls):
        idx = [j for j, w in enumerate(train.workloads) if w == wl]
        if i == len(wls) - 1:
            model.adaptive_training = False
        res = [ms.runner.RunnerResult([float(train.y_ms[j]) / 1e3], None) for j in idx]
        model.update(ctx_of(wl)[0], cands(wl, [train.ids[j] for j in idx]), res)
    scores = np.zeros(len(test))
    for wl in sorted(set(test.workloads)):
        idx = [j for j, w in enumerate(test.workloads) if w == wl]
        s = model.predict(ctx_of(wl)[0], cands(wl, [test.ids[j] for j in idx]))
        scores[idx] = s
    return -scores   # higher throughput score = faster: lower is faster after negation


def fit_predict(method: str, train: Dataset, test: Dataset, seed: int = 0) -> np.ndarray:
    """Predictions for ``test`` (ms when CALIBRATED[method], else lower = faster) after fitting on ``train``."""
    if method == "analytical":
        return _est_ms(test.X)
    if method == "analytical-scaled":
        s = float(np.exp(np.mean(np.log(train.y_ms) - np.log(_est_ms(train.X)))))
        return s * _est_ms(test.X)
    if method == "costpass-reg-log":
        return CostpassModel(objective="reg", target="log", seed=seed).fit(train.X, train.y_ms).predict(test.X)
    if method == "costpass-reg-resid":
        return CostpassModel(objective="reg", target="residual", seed=seed).fit(train.X, train.y_ms).predict(test.X)
    if method == "costpass-rank":
        return CostpassModel(objective="rank", seed=seed).fit(train.X, train.y_ms, groups=train.workloads).predict(test.X)
    if method == "tvm-perstore-xgb-reg":
        b = _xgb_reg(aggregate_perstore(train.perstore), np.log(train.y_ms), seed=seed)
        return np.exp(_xgb_pred(b, aggregate_perstore(test.perstore)))
    if method == "costpass+perstore":
        Xtr = np.hstack([train.X, aggregate_perstore(train.perstore)])
        Xte = np.hstack([test.X, aggregate_perstore(test.perstore)])
        b = _xgb_reg(Xtr, np.log(train.y_ms) - np.log(_est_ms(train.X)), seed=seed)
        return _est_ms(test.X) * np.exp(_xgb_pred(b, Xte))
    if method == "tvm-xgbmodel":
        return _tvm_xgbmodel_fit_predict(train, test, seed=seed)
    raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")


def _needs_perstore(methods) -> bool:
    return any(m in ("tvm-xgbmodel", "tvm-perstore-xgb-reg", "costpass+perstore") for m in methods)


def cross_validate(ds: Dataset, methods=METHODS, folds: int = 5, seed: int = 0, progress: bool = True,
                   test_ds: Dataset | None = None) -> dict:
    """Leave-workload-out CV: out-of-fold predictions of every method, then :func:`metrics`.

    With ``test_ds`` (another GPU's dataset of the same candidates) the models are trained on ``ds``'s
    training folds and scored on ``test_ds``'s held-out workloads (cross-GPU transfer); folds are made
    over the workloads the two datasets share, on the candidates both hold."""
    if test_ds is not None:
        common = sorted(set(ds.ids) & set(test_ds.ids))
        pos_a = {c: i for i, c in enumerate(ds.ids)}
        pos_b = {c: i for i, c in enumerate(test_ds.ids)}
        a = ds.subset([pos_a[c] for c in common])
        b = test_ds.subset([pos_b[c] for c in common])
    else:
        a = b = ds
    splits = group_kfold(a.workloads, folds)
    preds = {m: np.full(len(b), np.nan) for m in methods}
    times = {m: 0.0 for m in methods}
    it = [(m, f) for m in methods for f in range(len(splits))]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"CV {a.gpu}->{b.gpu}", leave=False)
    for m, f in it:
        tr, te = splits[f]
        t0 = time.perf_counter()
        preds[m][te] = fit_predict(m, a.subset(tr), b.subset(te), seed=seed)
        times[m] += time.perf_counter() - t0
    return _scored(preds, times, b, a.gpu, len(splits))


def _scored(preds: dict, times: dict, test: Dataset, train_gpu: str, folds: int) -> dict:
    """:func:`metrics` of every method's out-of-fold predictions on ``test``, with its fit+predict time."""
    out = {}
    for m, p in preds.items():
        r = metrics(test.y_ms, p, test.workloads, calibrated=CALIBRATED[m])
        r["fit_predict_s"] = round(times[m], 3)
        out[m] = r
    return {"train_gpu": train_gpu, "test_gpu": test.gpu, "folds": folds, "n": len(test),
            "n_workloads": len(set(test.workloads)), "methods": out}


def concat(dsets, gpu: str | None = None) -> Dataset:
    """Rows of several GPUs' datasets in one (features stay each GPU's own: they are spec-normalised).
    The name is ``"h100+h200"`` by default; candidate ids are kept (PerStoreFeature rows are the same
    candidate's on every GPU)."""
    dsets = list(dsets)
    with_ps = all(d.perstore for d in dsets)
    X = np.vstack([d.X for d in dsets]) if dsets else np.zeros((0, len(F.FEATURE_SCHEMA)))
    return Dataset(gpu or "+".join(d.gpu for d in dsets), [c for d in dsets for c in d.ids],
                   [w for d in dsets for w in d.workloads], np.concatenate([d.y_ms for d in dsets]), X,
                   [p for d in dsets for p in d.perstore] if with_ps else [],
                   {"parts": {d.gpu: len(d) for d in dsets}})


def cross_validate_joint(train_dsets, test_ds: Dataset, methods=METHODS, folds: int = 5, seed: int = 0,
                         progress: bool = True) -> dict:
    """Leave-workload-out CV of a model trained across GPUs: folds over ``test_ds``'s workloads (the same
    folds as ``cross_validate(test_ds)``); each fold trains on the rows of *every* dataset in
    ``train_dsets`` whose workload is not held out (so no held-out workload is seen on any GPU) and scores
    ``test_ds``'s held-out candidates."""
    train_dsets = list(train_dsets)
    splits = group_kfold(test_ds.workloads, folds)
    preds = {m: np.full(len(test_ds), np.nan) for m in methods}
    times = {m: 0.0 for m in methods}
    name = "+".join(d.gpu for d in train_dsets)
    it = [(m, f) for m in methods for f in range(len(splits))]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"CV {name}->{test_ds.gpu}", leave=False)
    for m, f in it:
        _, te = splits[f]
        held = {test_ds.workloads[i] for i in te}
        train = concat([d.subset([i for i, w in enumerate(d.workloads) if w not in held]) for d in train_dsets],
                       gpu=name)
        t0 = time.perf_counter()
        preds[m][te] = fit_predict(m, train, test_ds.subset(te), seed=seed)
        times[m] += time.perf_counter() - t0
    return _scored(preds, times, test_ds, name, len(splits))


def transfer(train: Dataset, test: Dataset, methods=METHODS, seed: int = 0) -> dict:
    """Train on all of ``train`` (one GPU), score all of ``test`` (another GPU) on the candidates both hold:
    GPU transfer with the workloads seen (on the other GPU)."""
    common = sorted(set(train.ids) & set(test.ids))
    pa = {c: i for i, c in enumerate(train.ids)}
    pb = {c: i for i, c in enumerate(test.ids)}
    a, b = train.subset([pa[c] for c in common]), test.subset([pb[c] for c in common])
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        p = fit_predict(m, a, b, seed=seed)
        r = metrics(b.y_ms, p, b.workloads, calibrated=CALIBRATED[m])
        r["fit_predict_s"] = round(time.perf_counter() - t0, 3)
        out[m] = r
    return {"train_gpu": a.gpu, "test_gpu": b.gpu, "n": len(b), "n_workloads": len(set(b.workloads)),
            "methods": out}


# ---------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------

def _f(x, fmt=".3f"):
    return "n/a" if x is None else format(x, fmt)


def markdown_table(res: dict) -> str:
    lines = ["| method | MAPE | median APE | Kendall tau | pairwise acc. | top-1 | top-5 | worst top-1 | fit+predict s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, r in res["methods"].items():
        lines.append(f"| {m} | {_f(r['mape'])} | {_f(r['median_ape'])} | {_f(r['kendall_tau'])} | "
                     f"{_f(r['pairwise_acc'])} | {_f(r['top1'])} | {_f(r['top5'])} | {_f(r['top1_min'])} | "
                     + (f"{r['fit_predict_s']:.1f} |" if "fit_predict_s" in r else "- |"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Search-time adaptation (the online residual model of costpass.CostModel), offline
# ---------------------------------------------------------------------------------------------------

ONLINE_METHODS = ("analytical+online", "costpass-reg-resid+online", "tvm-xgbmodel+k")


def online_adaptation(ds: Dataset, folds: int = 5, ks=(0, 8), seed: int = 0, methods=ONLINE_METHODS,
                      progress: bool = True) -> dict:
    """What a search gains from its own first measurements, on workloads the base model never saw.

    For each fold, every held-out workload with more than max(ks) + 2 candidates gets ``k`` of its
    candidates revealed (a seeded random choice, the same for every method), as if a tuning session over
    all held-out workloads had measured them; the methods are scored on the *other* candidates only, so
    k=0 and k>0 are compared on the same candidates.

    * ``analytical+online``: the analytical estimate corrected by :class:`costpass.model.OnlineResidual`
      fitted on the revealed candidates (what ``costpass.CostModel`` does with no shipped model).
    * ``costpass-reg-resid+online``: the residual model trained on the training folds, corrected the same
      way (``costpass.CostModel`` with a shipped model).
    * ``tvm-xgbmodel+k``: TVM's XGBModel trained on the training folds plus the revealed candidates.
    """
    from .model import OnlineResidual

    kmax = max(ks)
    splits = group_kfold(ds.workloads, folds)
    rng = np.random.default_rng(seed)
    wl_arr = np.asarray(ds.workloads)
    reveal_order = {}
    for w in sorted(set(ds.workloads)):
        idx = np.where(wl_arr == w)[0]
        if len(idx) >= kmax + 2 + 1:
            reveal_order[w] = rng.permutation(idx)
    scored = np.array([w in reveal_order for w in ds.workloads])
    rest = np.zeros(len(ds), dtype=bool)      # candidates never revealed for any k: where we score
    for w, order in reveal_order.items():
        rest[order[kmax:]] = True
    preds = {(m, k): np.full(len(ds), np.nan) for m in methods for k in ks}
    it = [(f, k) for f in range(len(splits)) for k in ks]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"online {ds.gpu}", leave=False)
    base_cache: dict = {}
    for f, k in it:
        tr, te = splits[f]
        te = np.asarray([i for i in te if scored[i]])
        if len(te) == 0:
            continue
        revealed = np.asarray([i for w in sorted({ds.workloads[i] for i in te})
                               for i in reveal_order[w][:k]], dtype=int)
        target = np.asarray([i for i in te if rest[i]])
        train = ds.subset(tr)
        if f not in base_cache:
            base_cache[f] = CostpassModel(objective="reg", target="residual", seed=seed).fit(train.X, train.y_ms)
        for m in methods:
            if m == "tvm-xgbmodel+k":
                tr_plus = ds.subset(list(tr) + list(revealed))
                preds[(m, k)][target] = _tvm_xgbmodel_fit_predict(tr_plus, ds.subset(target), seed=seed)
                continue
            base_fn = (lambda X: _est_ms(X)) if m == "analytical+online" else base_cache[f].predict
            on = OnlineResidual(min_n=1, seed=seed)
            if len(revealed):
                on.add(ds.X[revealed], ds.y_ms[revealed], base_fn(ds.X[revealed]))
                on.fit()
            preds[(m, k)][target] = on.correct(ds.X[target], base_fn(ds.X[target]))
    out = {}
    for (m, k), p in preds.items():
        keep = ~np.isnan(p)
        cal = m != "tvm-xgbmodel+k"
        out[f"{m} k={k}"] = metrics(ds.y_ms[keep], p[keep], [ds.workloads[i] for i in np.where(keep)[0]],
                                    calibrated=cal)
    return {"train_gpu": ds.gpu, "test_gpu": ds.gpu, "folds": len(splits), "ks": list(ks),
            "n": int(rest.sum()), "n_workloads": len(reveal_order), "methods": out}
