"""costpass as a MetaSchedule cost model.

    import costpass
    from tvm.s_tir import meta_schedule as ms
    ms.tune_tir(mod, target, work_dir, max_trials_global=256, cost_model=costpass.CostModel(gpu="h100"))

    costpass.predict(mod, "h100")     # predicted latency (ms) of one scheduled module

How it predicts: each candidate is lowered with TVM's S-TIR pipeline and walked by the demand pass
(``costpass.demand``), featurised on the target GPU's spec (``costpass.features``) and passed to the
shipped learned model for that GPU (``costpass/models/<gpu>.json[.gz]``) when there is one, else to the
model trained across GPUs (``costpass/models/h100+h200.json.gz``: features are normalised by each GPU's
spec, so it can be tried on a GPU it never saw, e.g. ``a100``), else the analytical estimate
(``costpass.bounds``) alone is the prediction; a log line (logger ``costpass.metaschedule``) says which model
serves which GPU. Demands are cached per module
(structural hash), because the evolutionary search scores the same module many times.

Online update: results measured by the running search are kept (features, measured ms, base prediction)
and a small second XGBoost model is fitted on the residual ln(measured) - ln(base prediction), refitted
when the data grew by 20% (as TVM's XGBModel does). Predictions are then base x exp(residual).

MetaSchedule's convention is *higher is better*: TVM's XGBModel predicts a normalised throughput
(min cost of the task / cost). Here the score is ``reference_ms / predicted_ms`` with one reference per task,
fixed the first time the task is scored (the lowest prediction in that first batch), so scores are
comparable across calls within a task and around 1 for the best candidates seen first.

A failure inside ``predict`` / ``update`` is logged and never stops the search: a model failure falls back
to the analytical estimate, a candidate whose lowering fails scores 0 (the lowest), an update failure
leaves the model as it was.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time

import numpy as np

from . import bounds as B
from . import features as F
from . import spec as S
from .model import CostpassModel, ModelSchemaError, OnlineResidual

logger = logging.getLogger("costpass.metaschedule")

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
ONLINE_FORMAT = "costpass-online-cost-model"


def _shipped_file(name: str) -> str | None:
    for ext in (".json.gz", ".json"):
        p = os.path.join(MODELS_DIR, f"{name.lower()}{ext}")
        if os.path.exists(p):
            return p
    return None


def shipped_models() -> dict:
    """Shipped model name -> path: ``costpass/models/<name>.json[.gz]`` (``h100``, ``h200``, ``h100+h200``)."""
    out = {}
    for f in sorted(os.listdir(MODELS_DIR)) if os.path.isdir(MODELS_DIR) else []:
        for ext in (".json.gz", ".json"):
            if f.endswith(ext) and ".tmp" not in f:
                out.setdefault(f[: -len(ext)], os.path.join(MODELS_DIR, f))
    return out


def cross_gpu_model_path() -> str | None:
    """The shipped model trained across several GPUs (name ``<gpu>+<gpu>...``), the one naming the most GPUs
    when there are several; None when none is shipped."""
    multi = [(n.count("+"), n, p) for n, p in shipped_models().items() if "+" in n]
    return max(multi, key=lambda t: (t[0], t[1]))[2] if multi else None


def shipped_model_path(gpu: str, fallback: bool = True) -> str | None:
    """Path of the shipped model for ``gpu``: its own model (``costpass/models/<gpu>.json[.gz]``) when there is
    one, else (``fallback``) the cross-GPU model (:func:`cross_gpu_model_path`), else None. ``gpu`` may also
    name a shipped model directly (``"h100+h200"``)."""
    own = _shipped_file(gpu)
    if own is not None or not fallback:
        return own
    return cross_gpu_model_path()


def split_gpu(gpu: str):
    """``"h100"`` -> ("h100", None); ``"h100+h200"`` -> ("h100", "h100+h200"): the GPU whose spec features the
    candidates (the first named) and the shipped model explicitly chosen."""
    g = gpu.strip().lower()
    if "+" in g:
        return g.split("+")[0].strip(), g
    return g, None


def resolve_model(gpu: str, model_path: str | None = None, model_name: str | None = None):
    """Which model file serves ``gpu``, and why: (path or None, reason).

    ``model_path``: ``"none"`` (the analytical estimate alone), a file, or the name of a shipped model
    (``"h100+h200"``); ``model_name``: a shipped model chosen through ``gpu="h100+h200"``. With neither, the
    GPU's own shipped model, else the cross-GPU model, else None (the analytical estimate)."""
    if model_path == "none":
        return None, "model_path='none': the analytical estimate alone"
    if model_path:
        if not os.path.exists(model_path) and os.sep not in model_path and _shipped_file(model_path):
            return _shipped_file(model_path), f"shipped model {model_path!r} chosen by model_path"
        return model_path, "model_path"
    if model_name:
        p = _shipped_file(model_name)
        if p is None:
            raise FileNotFoundError(f"no shipped costpass model named {model_name!r} (shipped: "
                                    f"{', '.join(shipped_models()) or 'none'})")
        return p, f"shipped model {model_name!r} chosen explicitly"
    own = _shipped_file(gpu)
    if own is not None:
        return own, f"the model trained on {gpu}"
    cross = cross_gpu_model_path()
    if cross is not None:
        gp = ", ".join(_model_gpus(cross)) or "several GPUs"
        return cross, f"no model trained on {gpu}: the cross-GPU model trained on {gp}"
    return None, f"no shipped model for {gpu}: the analytical estimate alone"


def _model_gpus(path: str) -> list:
    try:
        from .model import read_header
        return list(read_header(path).get("gpus") or [])
    except Exception:  # noqa: BLE001 - only for the log line
        return []


_LOGGED: set = set()


def _log_choice(gpu: str, path: str | None, why: str) -> None:
    key = (gpu, path, why)
    if key in _LOGGED:
        return
    _LOGGED.add(key)
    rel = os.path.relpath(path, os.path.dirname(MODELS_DIR)) if path and path.startswith(MODELS_DIR) else path
    level = logging.WARNING if why.startswith("no model trained on") else logging.INFO
    logger.log(level, "costpass: GPU %s uses %s (%s)", gpu, rel or "the analytical estimate", why)


_MODEL_CACHE: dict = {}
_LOCK = threading.Lock()


def _load_model(path: str | None):
    if path is None:
        return None
    with _LOCK:
        if path not in _MODEL_CACHE:
            _MODEL_CACHE[path] = CostpassModel.load(path)
        return _MODEL_CACHE[path]


def _target_for(gpu: S.GPUSpec):
    from .demand import default_target
    return default_target(arch=gpu.arch)


def featurize_module(mod, gpu: S.GPUSpec, target=None) -> np.ndarray:
    """Scheduled module (IRModule / PrimFunc / Schedule) -> feature row for ``gpu``."""
    from . import demand as D
    ds = D.extract(mod, target=target or _target_for(gpu))
    return F.featurize(ds, gpu)


def predict(mod, gpu: str = "h100", model_path: str | None = None) -> float:
    """Predicted latency in milliseconds of a scheduled module on ``gpu``: the shipped learned model for that
    GPU when there is one, else the cross-GPU model (``h100+h200``), else the analytical estimate.
    ``model_path``: a model file, a shipped model's name, or ``"none"`` (the analytical estimate alone);
    ``gpu="h100+h200"``: the GPU h100 with the shipped model h100+h200 (see :func:`resolve_model`)."""
    name, explicit = split_gpu(gpu) if isinstance(gpu, str) else (gpu.name, None)
    g = S.load(name) if isinstance(gpu, str) else gpu
    x = featurize_module(mod, g)
    path, why = resolve_model(g.name, model_path, explicit)
    _log_choice(g.name, path, why)
    m = _load_model(path)
    if m is not None and m.calibrated:
        return float(m.predict(x[None, :])[0])
    return float(F.estimate_us_of(x)[0] / 1e3)


# ---------------------------------------------------------------------------------------------------
# The PyCostModel
# ---------------------------------------------------------------------------------------------------

def _make_class():
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.cost_model import PyCostModel

    @derived_object
    class CostModel(PyCostModel):
        """MetaSchedule cost model backed by costpass (see the module docstring).

        Parameters
        ----------
        gpu : str
            GPU spec name (``costpass.spec.available()``): the analytical model and the shipped model (the
            GPU's own, else the cross-GPU model ``h100+h200``, else none). ``"h100+h200"``: the GPU h100
            with the shipped model h100+h200 chosen explicitly.
        model_path : str, optional
            A costpass model file (or a shipped model's name) to start from instead of the shipped one for
            ``gpu``; ``"none"`` starts from the analytical estimate alone.
        online : bool
            Fit the residual model on the search's own measurements (default True).
        min_online : int
            Measurements needed before the first residual fit.
        """

        def __init__(self, gpu: str = "h100", model_path: str | None = None, online: bool = True,
                     min_online: int = 16, seed: int = 0):
            super().__init__()
            name, explicit = split_gpu(gpu) if isinstance(gpu, str) else (gpu.name, None)
            self.gpu = S.load(name) if isinstance(gpu, str) else gpu
            path, why = resolve_model(self.gpu.name, model_path, explicit)
            _log_choice(self.gpu.name, path, why)
            self.model_path = path
            self.model_choice = why
            self.base = None
            if path is not None:
                try:
                    self.base = _load_model(path)
                    if not self.base.calibrated:
                        logger.warning("costpass: %s is a rank model; using it for ordering only", path)
                except ModelSchemaError:
                    raise
                except Exception as e:  # noqa: BLE001 - a broken file: say so, run analytically
                    logger.warning("costpass: could not load %s (%s); using the analytical estimate", path, e)
                    self.base = None
            self.online = online
            self.min_online = int(min_online)
            self.seed = int(seed)
            self._rows: dict = {}           # structural hash -> feature row (None when lowering failed)
            self.online_model = OnlineResidual(min_n=min_online, seed=seed)
            self._ref: dict = {}            # task key -> reference ms for the score
            self.stats = {"predict_calls": 0, "update_calls": 0, "candidates_scored": 0,
                          "candidates_measured": 0, "extract_failures": 0, "fallbacks": 0,
                          "update_failures": 0, "residual_fits": 0, "extract_s": 0.0, "model_s": 0.0}

        # ---- features ----------------------------------------------------------------------------
        def _features(self, context, candidates) -> list:
            import tvm_ffi
            from . import demand as D

            target = context.target if context is not None and context.target is not None \
                else _target_for(self.gpu)
            out = []
            t0 = time.perf_counter()
            for c in candidates:
                mod = c.sch.mod
                key = tvm_ffi.structural_hash(mod)
                if key not in self._rows:
                    try:
                        self._rows[key] = F.featurize(D.extract(mod, target=target), self.gpu)
                    except Exception as e:  # noqa: BLE001 - one bad candidate must not stop the search
                        self.stats["extract_failures"] += 1
                        logger.info("costpass: demand extraction failed (%s: %s); candidate scored 0",
                                    type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
                        self._rows[key] = None
                out.append(self._rows[key])
            self.stats["extract_s"] += time.perf_counter() - t0
            return out

        def _base_ms_of(self, X: np.ndarray) -> np.ndarray:
            est = F.estimate_us_of(X) / 1e3
            if self.base is None:
                return est
            try:
                p = self.base.predict(X)
                if not self.base.calibrated:   # a rank model: scale its order onto the analytical range
                    p = p / np.exp(np.mean(np.log(p))) * np.exp(np.mean(np.log(est)))
                if not np.all(np.isfinite(p)) or np.any(p <= 0):
                    raise FloatingPointError("non-finite or non-positive prediction")
                return p
            except Exception as e:  # noqa: BLE001
                self.stats["fallbacks"] += 1
                logger.warning("costpass: learned model failed (%s); analytical estimate used", e)
                return est

        def predict_ms(self, X: np.ndarray) -> np.ndarray:
            """Latency predictions (ms) for feature rows: base model x online residual."""
            X = np.atleast_2d(X)
            base = self._base_ms_of(X)
            if self.online_model.booster is None:
                return base
            try:
                p = self.online_model.correct(X, base)
                if not np.all(np.isfinite(p)):
                    raise FloatingPointError("non-finite residual prediction")
                return p
            except Exception as e:  # noqa: BLE001
                self.stats["fallbacks"] += 1
                logger.warning("costpass: residual model failed (%s); base prediction used", e)
                return base

        # ---- PyCostModel interface -----------------------------------------------------------------
        def predict(self, context, candidates) -> np.ndarray:
            n = len(candidates)
            self.stats["predict_calls"] += 1
            self.stats["candidates_scored"] += n
            scores = np.zeros(n, dtype="float64")
            try:
                rows = self._features(context, candidates)
                ok = [i for i, r in enumerate(rows) if r is not None]
                if not ok:
                    return scores
                t0 = time.perf_counter()
                X = np.vstack([rows[i] for i in ok])
                ms_pred = self.predict_ms(X)
                self.stats["model_s"] += time.perf_counter() - t0
                key = _task_key(context)
                if key not in self._ref:
                    self._ref[key] = float(np.min(ms_pred))
                scores[ok] = self._ref[key] / np.maximum(ms_pred, 1e-9)
            except Exception as e:  # noqa: BLE001 - never kill the tuning run
                self.stats["fallbacks"] += 1
                logger.warning("costpass: predict failed (%s: %s); candidates scored by the analytical "
                               "estimate where possible", type(e).__name__, e)
                scores = self._analytical_scores(context, candidates)
            return scores

        def _analytical_scores(self, context, candidates) -> np.ndarray:
            out = np.zeros(len(candidates), dtype="float64")
            try:
                rows = self._features(context, candidates)
                key = _task_key(context)
                for i, r in enumerate(rows):
                    if r is not None:
                        est = float(F.estimate_us_of(r)[0] / 1e3)
                        ref = self._ref.setdefault(key, est)
                        out[i] = ref / max(est, 1e-9)
            except Exception as e:  # noqa: BLE001
                logger.warning("costpass: analytical fallback failed too (%s); uniform scores", e)
            return out

        def update(self, context, candidates, results) -> None:
            self.stats["update_calls"] += 1
            if not self.online:
                return
            try:
                rows = self._features(context, candidates)
                key = _task_key(context)
                X, y, b = [], [], []
                for r, res in zip(rows, results):
                    secs = [float(s) for s in (res.run_secs or [])]
                    if r is None or res.error_msg is not None or not secs:
                        continue
                    ms_meas = float(np.median(secs)) * 1e3
                    if not math.isfinite(ms_meas) or ms_meas <= 0:
                        continue
                    X.append(r)
                    y.append(ms_meas)
                if X:
                    X = np.vstack(X)
                    n0 = len(self.online_model)
                    if self.online_model.add(X, y, self._base_ms_of(X), task=key):
                        self.stats["residual_fits"] += 1
                    self.stats["candidates_measured"] += len(self.online_model) - n0
            except Exception as e:  # noqa: BLE001
                self.stats["update_failures"] += 1
                logger.warning("costpass: update failed (%s: %s); model left as it was", type(e).__name__, e)

        @property
        def residual(self):
            """The online residual booster (None before the first fit)."""
            return self.online_model.booster

        def save(self, path: str) -> None:
            obj = {"format": ONLINE_FORMAT, "gpu": self.gpu.name, "model_path": self.model_path,
                   "feature_schema_hash": F.schema_hash(), "online": self.online_model.to_json(),
                   "ref": self._ref}
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(obj, f, separators=(",", ":"))
            os.replace(tmp, path)

        def load(self, path: str) -> None:
            with open(path) as f:
                obj = json.load(f)
            if obj.get("format") != ONLINE_FORMAT:
                raise ValueError(f"{path}: not a costpass online cost-model file")
            if obj.get("feature_schema_hash") != F.schema_hash():
                raise ModelSchemaError(f"{path}: saved with feature schema {obj.get('feature_schema_hash')}, "
                                       f"this code computes {F.schema_hash()}")
            self.online_model = OnlineResidual.from_json(obj["online"])
            self._ref = dict(obj.get("ref", {}))

    return CostModel


def _task_key(context) -> str:
    if context is None or context.mod is None:
        return "?"
    try:
        from tvm.s_tir.meta_schedule.utils import shash2hex
        return shash2hex(context.mod)
    except Exception:  # noqa: BLE001
        return str(getattr(context, "task_name", "?"))


_CLS = None


def CostModel(gpu: str = "h100", model_path: str | None = None, **kw):  # noqa: N802 - a class factory
    """``costpass.CostModel(gpu="h100", model_path=None)``: a MetaSchedule ``PyCostModel`` (built lazily so
    that ``import costpass`` does not import TVM)."""
    global _CLS
    if _CLS is None:
        _CLS = _make_class()
    return _CLS(gpu=gpu, model_path=model_path, **kw)
