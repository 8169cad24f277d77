"""The learned cost model: XGBoost on the costpass features (``costpass.features``).

    m = CostpassModel(objective="reg", target="residual", seed=0).fit(X, y_ms, groups=workloads)
    m.predict(X)            # milliseconds
    m.save("costpass/models/h100.json"); CostpassModel.load("costpass/models/h100.json")

Objectives / targets:

* ``objective="reg"``, ``target="log"``: regression of ln(latency ms) (squared error).
* ``objective="reg"``, ``target="residual"``: regression of ln(measured) - ln(analytical estimate); the
  prediction is estimate x exp(model). The analytical estimate is read from the ``log_estimate_us``
  column, so nothing else has to be passed around.
* ``objective="rank"``: XGBoost ``rank:pairwise`` with one query group per workload (``groups`` needed
  to fit), trained to order candidates by -ln(latency). Its scores are not latencies: ``predict`` returns
  exp(-score), monotone in the predicted rank but *not calibrated* (``calibrated`` is False); use it for
  ranking only.

File format (never pickle): one JSON object (optionally gzip-compressed when the name ends in ``.gz``)::

    {"format": "costpass-model", "header": {costpass version, gpus, feature schema + hash, training
     data hash, date, objective, target, params, seed, n_train}, "booster": <XGBoost's own JSON model>}

Loading a file whose feature-schema hash differs from this code's raises :class:`ModelSchemaError`.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os

import numpy as np

from . import __version__
from .features import FEATURE_SCHEMA, schema_hash, estimate_us_of

FORMAT = "costpass-model"
DEFAULT_PARAMS = {
    "max_depth": 6,
    "eta": 0.1,
    "subsample": 0.85,
    "colsample_bytree": 0.85,
    "min_child_weight": 2.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_bin": 64,        # 256 bins cost ~3x the time per round on ~100 features for no gain on these data
    "nthread": 1,         # 2 threads on a shared 2-core machine spin-wait: 5x slower than 1 (measured)
}
DEFAULT_ROUNDS = 300


class ModelSchemaError(ValueError):
    """The model file was trained on a different feature schema than this code computes."""


class StaleModelWarning(UserWarning):
    """Same feature schema, but the code behind the features (demand pass, analytical model, GPU specs)
    changed since the model was trained: its inputs may have shifted; retraining is advised."""


_PKG = os.path.dirname(os.path.abspath(__file__))
_CODE_FILES = ("demand.py", "bounds.py", "records.py", "features.py")


def code_hashes() -> dict:
    """sha256 prefixes of the source files the features depend on, and of each GPU spec file."""
    out = {}
    for name in _CODE_FILES:
        with open(os.path.join(_PKG, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()[:12]
    gdir = os.path.join(_PKG, "gpus")
    for name in sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []:
        if name.endswith(".toml"):
            with open(os.path.join(gdir, name), "rb") as f:
                out[f"gpus/{name}"] = hashlib.sha256(f.read()).hexdigest()[:12]
    return out


def data_hash(X: np.ndarray, y: np.ndarray, groups=None) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.asarray(X, dtype=np.float32)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y, dtype=np.float64)).tobytes())
    if groups is not None:
        h.update("\n".join(map(str, groups)).encode())
    return h.hexdigest()[:16]


def _group_sizes(groups):
    """Sort order that makes each group contiguous, and the group sizes in that order."""
    groups = np.asarray([str(g) for g in groups])
    order = np.argsort(groups, kind="stable")
    _, counts = np.unique(groups[order], return_counts=True)
    return order, counts


class CostpassModel:
    """scikit-learn-like XGBoost cost model (fit / predict / save / load)."""

    def __init__(self, params: dict | None = None, objective: str = "reg", seed: int = 0,
                 target: str = "residual", num_rounds: int = DEFAULT_ROUNDS, gpus=()):
        if objective not in ("reg", "rank"):
            raise ValueError(f"objective must be 'reg' or 'rank', not {objective!r}")
        if target not in ("log", "residual"):
            raise ValueError(f"target must be 'log' or 'residual', not {target!r}")
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.objective = objective
        self.target = target if objective == "reg" else "log"
        self.seed = int(seed)
        self.num_rounds = int(num_rounds)
        self.gpus = list(gpus)
        self.booster = None
        self.header: dict = {}
        self.n_features = len(FEATURE_SCHEMA)

    @property
    def calibrated(self) -> bool:
        """True when ``predict`` returns latencies (regression); False for the rank objective."""
        return self.objective == "reg"

    # -------------------------------------------------------------------------------------------
    def _xgb_params(self) -> dict:
        p = dict(self.params)
        p["seed"] = self.seed
        if self.objective == "reg":
            p.setdefault("objective", "reg:squarederror")
        else:
            p["objective"] = "rank:pairwise"
            p.setdefault("lambdarank_pair_method", "mean")
            p.setdefault("lambdarank_num_pair_per_sample", 8)
            p.setdefault("eval_metric", "auc")
        return p

    def _check_X(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != self.n_features:
            raise ModelSchemaError(f"feature rows have {X.shape[1]} columns; the model expects "
                                   f"{self.n_features} ({FEATURE_SCHEMA.version})")
        return X

    def _base(self, X) -> np.ndarray:
        """ln(analytical estimate in ms) per row: the offset of the residual target."""
        return np.log(estimate_us_of(X) / 1e3)

    def fit(self, X, y_ms, groups=None, data_id: str | None = None, sample_weight=None) -> "CostpassModel":
        import xgboost as xgb

        X = self._check_X(X)
        y = np.asarray(y_ms, dtype=np.float64)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"{X.shape[0]} rows but {y.shape[0]} latencies")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("latencies must be finite and > 0")
        ly = np.log(y)
        if self.objective == "rank":
            if groups is None:
                raise ValueError("objective='rank' needs groups (one query group per workload)")
            order, counts = _group_sizes(groups)
            dm = xgb.DMatrix(X[order], label=-ly[order])
            dm.set_group(counts)
        else:
            label = ly - self._base(X) if self.target == "residual" else ly
            dm = xgb.DMatrix(X, label=label, weight=sample_weight)
        self.booster = xgb.train(self._xgb_params(), dm, num_boost_round=self.num_rounds)
        self.header = self._make_header(data_id or data_hash(X, y, groups), X.shape[0], groups)
        return self

    def raw_predict(self, X) -> np.ndarray:
        """The booster's own output (residual / ln ms / rank score)."""
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        X = self._check_X(X)
        # inplace_predict: same values as predict(DMatrix(X)), 10-25x less overhead per call (measured)
        return np.asarray(self.booster.inplace_predict(X))

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms (regression); exp(-score) for the rank objective (not calibrated)."""
        X = self._check_X(X)
        r = self.raw_predict(X).astype(np.float64)
        if self.objective == "rank":
            return np.exp(-np.clip(r, -50, 50))
        if self.target == "residual":
            r = r + self._base(X)
        return np.exp(np.clip(r, -50, 50))

    # -------------------------------------------------------------------------------------------
    def _make_header(self, dhash: str, n: int, groups) -> dict:
        return {
            "costpass_version": __version__,
            "gpus": list(self.gpus),
            "feature_schema": {"version": FEATURE_SCHEMA.version, "names": list(FEATURE_SCHEMA.names),
                               "hash": schema_hash()},
            "training_data_hash": dhash,
            "code_hashes": code_hashes(),
            "n_train": int(n),
            "n_groups": int(len(set(map(str, groups)))) if groups is not None else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "objective": self.objective,
            "target": self.target,
            "params": self.params,
            "num_rounds": self.num_rounds,
            "seed": self.seed,
        }

    def to_json(self) -> dict:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        raw = self.booster.save_raw(raw_format="json")
        return {"format": FORMAT, "header": self.header, "booster": json.loads(bytes(raw).decode())}

    @classmethod
    def from_json(cls, obj: dict, source: str = "<object>") -> "CostpassModel":
        import xgboost as xgb

        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{source}: not a costpass model file (format != {FORMAT!r})")
        h = obj["header"]
        fs = h.get("feature_schema", {})
        if fs.get("hash") != schema_hash():
            raise ModelSchemaError(
                f"{source}: model was trained on feature schema {fs.get('version')!r} (hash {fs.get('hash')}), "
                f"this code computes {FEATURE_SCHEMA.version!r} (hash {schema_hash()}); retrain the model "
                f"(benchmarks/evaluate.py --ship) or use the costpass version that wrote it "
                f"({h.get('costpass_version')})")
        saved = h.get("code_hashes") or {}
        now = code_hashes()
        changed = [k for k in saved if k in now and saved[k] != now[k]
                   and (not k.startswith("gpus/") or k[5:-5] in (h.get("gpus") or []))]
        if changed:
            import warnings
            warnings.warn(f"{source}: {', '.join(changed)} changed since this model was trained "
                          f"({h.get('date')}); the features it sees may have shifted: retrain "
                          f"(python3 benchmarks/evaluate.py --ship-only)", StaleModelWarning, stacklevel=3)
        m = cls(params=h.get("params"), objective=h.get("objective", "reg"), seed=h.get("seed", 0),
                target=h.get("target", "log"), num_rounds=h.get("num_rounds", DEFAULT_ROUNDS),
                gpus=h.get("gpus", ()))
        b = xgb.Booster()
        b.load_model(bytearray(json.dumps(obj["booster"]).encode()))
        m.booster = b
        m.header = h
        return m

    def save(self, path: str) -> str:
        obj = self.to_json()
        data = json.dumps(obj, separators=(",", ":")).encode()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        if path.endswith(".gz"):
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
                f.write(data)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str) -> "CostpassModel":
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as f:
            obj = json.loads(f.read().decode())
        return cls.from_json(obj, source=str(path))


def read_header(path: str) -> dict:
    """The header of a model file, without loading the booster or checking the schema."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return json.loads(f.read().decode())["header"]


class OnlineResidual:
    """A second, small XGBoost model fitted during a search on ln(measured) - ln(base prediction).

    ``add`` appends measured candidates (feature rows, measured ms, the base model's ms) and refits when
    there are at least ``min_n`` of them and they grew by 20% since the last fit (TVM's XGBModel uses the
    same rule). ``correct(X, base_ms)`` returns base_ms x exp(residual prediction) (base_ms before the first
    fit). Used by ``costpass.CostModel`` and evaluated offline by ``costpass.evaluate.online_adaptation``.
    """

    PARAMS = {"max_depth": 3, "eta": 0.15, "subsample": 1.0, "colsample_bytree": 1.0,
              "min_child_weight": 3.0, "lambda": 4.0, "tree_method": "hist", "nthread": 1, "max_bin": 32,
              "objective": "reg:squarederror"}
    ROUNDS = 60

    def __init__(self, min_n: int = 16, seed: int = 0, params: dict | None = None, rounds: int = ROUNDS):
        self.min_n = int(min_n)
        self.seed = int(seed)
        self.params = {**self.PARAMS, **(params or {})}
        self.rounds = int(rounds)
        self.X: list = []
        self.y: list = []
        self.base: list = []
        self.task: list = []
        self.booster = None
        self.last_fit_n = 0
        self.fits = 0

    def __len__(self):
        return len(self.y)

    def add(self, X, y_ms, base_ms, task=None) -> bool:
        """Append measurements; returns True when the model was refitted."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        for x, y, b in zip(X, np.atleast_1d(y_ms), np.atleast_1d(base_ms)):
            if not (np.isfinite(y) and y > 0 and np.isfinite(b) and b > 0):
                continue
            self.X.append(x)
            self.y.append(float(y))
            self.base.append(float(b))
            self.task.append(task)
        n = len(self.y)
        if n >= self.min_n and n - self.last_fit_n >= max(1, self.last_fit_n // 5):
            self.fit()
            return True
        return False

    def fit(self) -> None:
        import xgboost as xgb

        X = np.vstack(self.X)
        r = np.log(np.asarray(self.y)) - np.log(np.asarray(self.base))
        self.booster = xgb.train(dict(self.params, seed=self.seed), xgb.DMatrix(X, label=r),
                                 num_boost_round=self.rounds)
        self.last_fit_n = len(self.y)
        self.fits += 1

    def correct(self, X, base_ms) -> np.ndarray:
        base_ms = np.asarray(base_ms, dtype=np.float64)
        if self.booster is None:
            return base_ms
        r = np.asarray(self.booster.inplace_predict(np.atleast_2d(np.asarray(X, dtype=np.float64))))
        return base_ms * np.exp(np.clip(r, -20, 20))

    def to_json(self) -> dict:
        return {"min_n": self.min_n, "seed": self.seed, "params": self.params, "rounds": self.rounds,
                "X": [list(map(float, x)) for x in self.X], "y": self.y, "base_ms": self.base,
                "task": self.task, "last_fit_n": self.last_fit_n, "fits": self.fits,
                "booster": (json.loads(bytes(self.booster.save_raw(raw_format="json")).decode())
                            if self.booster is not None else None)}

    @classmethod
    def from_json(cls, obj: dict) -> "OnlineResidual":
        import xgboost as xgb

        o = cls(min_n=obj["min_n"], seed=obj["seed"], params=obj["params"], rounds=obj["rounds"])
        o.X = [np.asarray(x, dtype=np.float64) for x in obj["X"]]
        o.y, o.base, o.task = list(obj["y"]), list(obj["base_ms"]), list(obj["task"])
        o.last_fit_n, o.fits = int(obj["last_fit_n"]), int(obj.get("fits", 0))
        if obj.get("booster") is not None:
            b = xgb.Booster()
            b.load_model(bytearray(json.dumps(obj["booster"]).encode()))
            o.booster = b
        return o
