"""Measuring candidates with TVM MetaSchedule's own runners (the standard path for users with GPUs).

    from costpass.measure import tvm_runner as TR
    cfg = TR.RunnerConfig(kind="local", repeats=20)
    info = TR.check_device(cfg)                         # MeasureError if there is no GPU to measure on
    cands = TR.sample(["gemm_fp16_1024"], target, n_random=16, n_evolved=0, seed=0)
    TR.measure(cands, "runs/h100.jsonl", target=target, builder=ms_builder(), runner=TR.make_runner(cfg),
               device=info, cfg=cfg)

Pipeline: candidates from ``costpass.measure.candidates`` (MetaSchedule's default CUDA design space);
built with ``costpass.measure.build.ms_builder()`` (a ``LocalBuilder`` with the TVM 0.27 tensor-core
workaround); run with MetaSchedule's ``LocalRunner`` (the GPU of this machine) or ``RPCRunner`` (GPU hosts
registered with a TVM RPC tracker); one record per candidate in the project's record schema
(``costpass.measure.records.Record``), appended and fsynced one at a time; ids already in the output are
skipped (a rerun of the same command resumes).

What a run time is here: TVM's ``time_evaluator`` (what both runners call): one discarded warm-up call,
then ``repeat`` values, each the mean of ``number`` back-to-back calls between two CUDA events; when a
repeat lasts less than ``min_repeat_ms``, ``number`` grows (to at least min_repeat_ms / per-call time + 1,
and at least 1.618 x) and that repeat is redone. Inputs are random-filled by the runner
(``tvm.contrib.random.random_fill_for_measure``); L2 stays warm; outputs are not checked.

Nothing here needs a GPU until the runner runs; tests inject a stand-in runner (see
tests/test_cli_measure.py).
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from . import records as R

UNKNOWN = "unknown"
METHOD = "tvm_time_evaluator"


class MeasureError(Exception):
    """A problem the user must fix before measuring (no GPU, no tracker, wrong GPU, ...): one line."""


@dataclass
class RunnerConfig:
    kind: str = "local"                 # "local" | "rpc"
    repeats: int = 20                   # EvaluatorConfig.repeat: run times recorded per candidate
    number: int = 1                     # EvaluatorConfig.number: calls per repeat (grows, see min_repeat_ms)
    min_repeat_ms: int = 10             # EvaluatorConfig.min_repeat_ms
    timeout_s: float = 60.0             # per candidate (LocalRunner timeout / RPC session timeout)
    tracker_host: str | None = None
    tracker_port: int | None = None
    key: str | None = None
    workers: int | None = None          # RPC: parallel sessions (default: servers with the key)

    def evaluator(self):
        from tvm.s_tir.meta_schedule.runner import EvaluatorConfig
        return EvaluatorConfig(number=self.number, repeat=self.repeats, min_repeat_ms=self.min_repeat_ms,
                               enable_cpu_cache_flush=False)

    def rpc_config(self):
        from tvm.s_tir.meta_schedule.runner import RPCConfig
        return RPCConfig(tracker_host=self.tracker_host, tracker_port=self.tracker_port, tracker_key=self.key,
                         session_priority=1, session_timeout_sec=int(max(1, round(self.timeout_s))))


def parse_tracker(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port)."""
    m = re.fullmatch(r"\s*(\[[^\]]+\]|[^:\s]+):(\d{1,5})\s*", text or "")
    if not m or not 0 < int(m.group(2)) < 65536:
        raise MeasureError(f"--tracker must be HOST:PORT (e.g. 10.0.0.5:9190), not {text!r}")
    return m.group(1).strip("[]"), int(m.group(2))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# the device: what it is, and whether there is one
# ----------------------------------------------------------------------------------------------

def _attr(dev, name):
    try:
        v = getattr(dev, name)
        return v if v not in (None, "", -1) else None
    except Exception:  # noqa: BLE001 - an attribute the device API does not report
        return None


def _libcuda_missing() -> bool:
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
        return False
    except OSError:
        return True


def check_local_cuda() -> None:
    """Raise MeasureError (one line) when this machine has no CUDA device TVM can run on.

    TVM reports a missing device in two ways: ``tvm.runtime.enabled("cuda")`` is False when its CUDA
    runtime library did not load (no NVIDIA driver: ``libcuda.so.1`` not found), and
    ``tvm.cuda(0).exist`` is False when the runtime loaded but sees no device.
    """
    import tvm
    if not tvm.runtime.enabled("cuda"):
        why = ("the NVIDIA driver library libcuda.so.1 was not found" if _libcuda_missing()
               else "this TVM build has no CUDA runtime")
        raise MeasureError("--runner local needs a CUDA GPU on this machine, but TVM's CUDA runtime is not "
                           f"available ({why}); measure through an RPC tracker (--runner rpc) or a bundle "
                           "(--bundle) instead")
    if not tvm.cuda(0).exist:
        vis = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={vis!r})" if vis is not None else ""
        raise MeasureError(f"--runner local: TVM sees no CUDA device (tvm.cuda(0).exist is False){hint}")


def local_device_info() -> dict:
    """Name, driver, compute capability, SMs, L2 and clocks of device 0 (nvidia-smi where reachable)."""
    import tvm
    from . import gpu_run as G
    dev = tvm.cuda(0)
    vals = G._smi(["name", "driver_version"])
    info = {
        "gpu": (vals[0] if vals else None) or _attr(dev, "device_name") or UNKNOWN,
        "driver": (vals[1] if vals else None) or UNKNOWN,
        "compute_capability": _attr(dev, "compute_version") or "",
        "sm_count": _attr(dev, "multi_processor_count"),
        "l2_bytes": _attr(dev, "l2_cache_size_bytes"),
        "source": "nvidia-smi" if vals else "tvm device attributes",
    }
    return info


def read_clocks_local() -> dict:
    from . import gpu_run as G
    return G.read_clocks()


def rpc_clocks() -> dict:
    return {"read_at": now_iso(), "error": "not readable over RPC"}


def _within(seconds: float, fn):
    """fn() in a thread; (done, result or exception)."""
    box: dict = {}

    def go():
        try:
            box["r"] = fn()
        except Exception as e:  # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        return False, None
    return True, box.get("e", box.get("r"))


def check_rpc(cfg: RunnerConfig, connect_timeout: float = 5.0) -> dict:
    """Check the tracker and its servers for ``cfg.key``; ask one server about its GPU.

    Raises MeasureError when the tracker cannot be reached or lists no server with the key, or when the
    server reached has no CUDA device. The GPU fields say 'unknown' where the server did not answer (all
    servers busy, or an attribute its device API does not report)."""
    host, port = cfg.tracker_host, cfg.tracker_port
    try:
        with socket.create_connection((host, port), timeout=connect_timeout):
            pass
    except OSError as e:
        raise MeasureError(f"cannot reach the RPC tracker at {host}:{port}: {e.strerror or e} "
                           "(start one with: python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port "
                           f"{port})") from None
    from tvm import rpc
    ok, tracker = _within(connect_timeout + 5, lambda: rpc.connect_tracker(host, port))
    if not ok or isinstance(tracker, Exception):
        raise MeasureError(f"the RPC tracker at {host}:{port} does not answer as a TVM tracker")
    ok, summary = _within(connect_timeout + 5, tracker.summary)
    if not ok or isinstance(summary, Exception):
        raise MeasureError(f"the RPC tracker at {host}:{port} did not return its summary")
    keys = [str(s.get("key", "")).split(":", 1)[-1] for s in summary.get("server_info", [])]
    n = sum(1 for k in keys if k == cfg.key)
    if n == 0:
        known = ", ".join(sorted(set(keys))) or "none"
        raise MeasureError(f"the RPC tracker at {host}:{port} has no server with key {cfg.key!r} (keys there: "
                           f"{known}); start one on each GPU host with: python -m tvm.exec.rpc_server "
                           f"--tracker {host}:{port} --key {cfg.key}")
    info = {"gpu": UNKNOWN, "driver": UNKNOWN, "compute_capability": "", "sm_count": None, "l2_bytes": None,
            "source": "rpc", "servers": n}

    def ask():
        sess = tracker.request(cfg.key, priority=1, session_timeout=max(10, int(cfg.timeout_s)))
        dev = sess.cuda(0)
        if not dev.exist:
            return "no-device"
        return {"gpu": _attr(dev, "device_name") or UNKNOWN,
                "compute_capability": _attr(dev, "compute_version") or "",
                "sm_count": _attr(dev, "multi_processor_count"), "l2_bytes": _attr(dev, "l2_cache_size_bytes")}

    ok, got = _within(max(15.0, cfg.timeout_s / 2), ask)
    if ok and got == "no-device":
        raise MeasureError(f"the RPC server for key {cfg.key!r} has no CUDA device (tvm.cuda(0).exist is False "
                           "there)")
    if ok and isinstance(got, dict):
        info.update({k: v for k, v in got.items() if v is not None})
        info["source"] = "rpc device attributes"
    elif ok and isinstance(got, Exception):
        msg = str(got).strip().splitlines()
        if any("Device API cuda is not enabled" in m for m in msg):
            raise MeasureError(f"the RPC server for key {cfg.key!r} has no CUDA runtime (its TVM reports "
                               "'Device API cuda is not enabled')")
    return info


def gpu_matches(name: str, spec_name: str) -> bool:
    """Whether a driver's GPU name is the GPU of a spec file ('NVIDIA H100 80GB HBM3' ~ 'h100')."""
    if not name or name == UNKNOWN:
        return True  # nothing to compare
    from costpass.data import gpu_key
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return gpu_key(name) == spec_name or spec_name.lower() in flat


def check_device(cfg: RunnerConfig, spec_name: str | None = None) -> dict:
    """Device facts for the records; MeasureError when there is nothing to measure on or it is another GPU."""
    if cfg.kind == "local":
        check_local_cuda()
        info = local_device_info()
    elif cfg.kind == "rpc":
        info = check_rpc(cfg)
    else:
        raise MeasureError(f"unknown runner {cfg.kind!r} (local or rpc)")
    if spec_name and not gpu_matches(info["gpu"], spec_name):
        from costpass.data import gpu_key
        raise MeasureError(f"--gpu {spec_name} but the GPU measured is {info['gpu']!r} ({gpu_key(info['gpu'])}): "
                           f"its records would be filed under the wrong GPU; pass --gpu {gpu_key(info['gpu'])}")
    return info


# ----------------------------------------------------------------------------------------------
# runners and candidates
# ----------------------------------------------------------------------------------------------

def make_runner(cfg: RunnerConfig, n_servers: int | None = None):
    """MetaSchedule's LocalRunner or RPCRunner for ``cfg``."""
    from tvm.s_tir.meta_schedule.runner import LocalRunner, RPCRunner
    if cfg.kind == "local":
        return LocalRunner(timeout_sec=cfg.timeout_s, evaluator_config=cfg.evaluator())
    if cfg.kind == "rpc":
        workers = cfg.workers or n_servers or 1
        return RPCRunner(rpc_config=cfg.rpc_config(), evaluator_config=cfg.evaluator(), max_workers=workers)
    raise MeasureError(f"unknown runner {cfg.kind!r} (local or rpc)")


def sample(workloads: Iterable, target, n_random: int, n_evolved: int = 0, seed: int = 0,
           cost_model_factory: Callable | None = None, log: Callable | None = None) -> list:
    """Candidates per workload, in workload order: ``n_random`` random ones (spatial-only workloads, whose
    MetaSchedule space is one point, are topped up with hand-parameterised ones), then ``n_evolved`` from
    MetaSchedule's EvolutionarySearch (cost model: ``cost_model_factory(workload)``, default RandomModel).
    Deterministic for a given seed, so a rerun finds the same ids (and skips those already measured)."""
    from costpass.cli import preload_tensor_intrinsics
    preload_tensor_intrinsics()
    from . import candidates as C
    out = []
    for wl in workloads:
        wl = C._workload(wl)
        cs = C.random_candidates(wl, target, n_random, seed=seed) if n_random else []
        ids = {c.id for c in cs}
        if n_random and len(cs) < n_random and C.is_spatial_only(wl):
            cs += C.manual_elementwise_candidates(wl, n_random - len(cs), exclude=ids)
            ids |= {c.id for c in cs}
        if n_evolved and not C.is_spatial_only(wl):
            cm = cost_model_factory(wl) if cost_model_factory else None
            cs += C.evolved_candidates(wl, target, n_evolved, seed=seed, cost_model=cm, exclude=ids)
        if log:
            log(f"{wl.name}: {len(cs)} candidates")
        out += cs
    return out


def apply_candidate(c):
    """The scheduled IRModule of a candidate (its trace replayed on the workload)."""
    from . import candidates as C
    return C.apply_trace(c.workload, c.trace_json).mod


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------

def classify_error(msg: str) -> str:
    return "timeout" if "timeout" in (msg or "").lower() else "run_error"


def _git_commit() -> str:
    from .bundle import _git_commit as gc
    return gc()


def _tvm_version() -> str:
    import tvm
    return str(tvm.__version__)


def _cleanup(path: str | None) -> None:
    """Remove a built artifact; also its folder when that holds nothing else (MetaSchedule's LocalBuilder
    exports each candidate into a fresh ``tempfile.mkdtemp()`` folder)."""
    if not path or not os.path.exists(path):
        return
    d = os.path.dirname(path)
    try:
        os.remove(path)
        if os.path.basename(d).startswith("tmp") and not os.listdir(d):
            os.rmdir(d)
    except OSError:
        pass


def measure(cands: list, out: str, *, target, builder, runner, device: dict, cfg: RunnerConfig,
            tag: str = "", commit: str | None = None, batch: int = 64, parallel: int = 1,
            read_clocks: Callable[[], dict] | None = None, module_of: Callable | None = None,
            on_event: Callable[[str, object], None] | None = None) -> dict:
    """Build and run ``cands``; append one record per candidate to ``out``; skip ids already there.

    ``builder`` / ``runner``: MetaSchedule Builder / Runner objects (``build(list[BuilderInput]) ->
    list[BuilderResult]``, ``run(list[RunnerInput]) -> list[RunnerFuture]``). ``parallel`` candidates are
    handed to the runner at once (1 for a LocalRunner; the number of RPC servers for an RPCRunner).
    ``on_event(kind, payload)`` reports progress: ("plan", (todo, skipped)), ("build", n),
    ("record", Record). Returns counts by status, plus "skipped"."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from schedules import workloads as W

    emit = on_event or (lambda kind, payload: None)
    module_of = module_of or apply_candidate
    done = R.recorded_ids(out)
    todo, seen = [], set(done)
    for c in cands:
        if c.id not in seen:
            seen.add(c.id)
            todo.append(c)
    counts = {"skipped": len([c for c in cands if c.id in done])}
    emit("plan", (len(todo), counts["skipped"]))
    if not todo:
        return counts
    commit = commit if commit is not None else _git_commit()
    tvm_version = _tvm_version()
    device_type = "cuda" if target.kind.name == "cuda" else "cpu"   # cpu: only for testing the plumbing
    read_clocks = read_clocks or (read_clocks_local if cfg.kind == "local" else rpc_clocks)
    timing_base = {"method": METHOD, "runner": cfg.kind, "number": cfg.number, "repeat": cfg.repeats,
                   "min_repeat_ms": cfg.min_repeat_ms, "l2_flush": False, "warmup_calls": 1,
                   "timeout_s": cfg.timeout_s}
    if cfg.kind == "rpc":
        timing_base["rpc"] = {"tracker": f"{cfg.tracker_host}:{cfg.tracker_port}", "key": cfg.key}
    # MetaSchedule's builder and runner compile with TVM's own tvm_callback_cuda_compile (nothing here replaces it):
    # the build TVM deploys (costpass.data.build_kind "tvm"); an RPC server compiles with its own TVM's settings
    build = {"compiler": "tvm", "callback": "tvm.support.nvcc.tvm_callback_cuda_compile", "via": f"MetaSchedule {cfg.kind} runner",
             "mode": os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").lower() if cfg.kind == "local" else UNKNOWN}

    def record(c, wl, status, clocks, **kw):
        d = dict(workload=c.workload, candidate_id=c.id, status=status, origin=c.origin, tag=tag,
                 gpu=device.get("gpu") or UNKNOWN, driver=device.get("driver") or UNKNOWN,
                 compute_capability=str(device.get("compute_capability") or ""),
                 sm_count=device.get("sm_count"), l2_bytes=device.get("l2_bytes"), clocks=clocks,
                 date=now_iso(), costpass_commit=commit, tvm_version=tvm_version, seed=c.seed,
                 params=dict(wl.params), flops=wl.flops, min_bytes=wl.min_bytes, correctness=None,
                 trace_json=c.trace_json, target=str(target), build=build)
        d.update(kw)
        return R.Record.from_dict(d)

    writer = R.JsonlWriter(out)
    try:
        # batches of one workload each: the builder starts its worker processes once per build() call
        groups: list[list] = []
        for c in todo:
            if groups and groups[-1][0].workload == c.workload and len(groups[-1]) < batch:
                groups[-1].append(c)
            else:
                groups.append([c])
        for group in groups:
            wl = W.get(group[0].workload)
            clocks = read_clocks()
            built = []          # (candidate, mod, BuilderInput)
            for c in group:
                try:
                    mod = module_of(c)
                except Exception as e:  # noqa: BLE001 - a trace that no longer replays
                    rec = record(c, wl, "build_error", clocks, error=f"trace does not replay: {e}"[:4000],
                                 timing=dict(timing_base))
                    writer.append(rec)
                    _count(counts, rec)
                    emit("record", rec)
                    continue
                built.append((c, mod, BuilderInput(mod, target)))
            if not built:
                continue
            emit("build", len(built))
            t0 = time.perf_counter()
            results = builder.build([b[2] for b in built])
            build_s = (time.perf_counter() - t0) / len(built)
            ready = []
            for (c, mod, _), br in zip(built, results):
                if br.error_msg or not br.artifact_path:
                    t = dict(timing_base, build_s=round(build_s, 3))
                    rec = record(c, wl, "build_error", clocks, error=str(br.error_msg or "no artifact")[-4000:],
                                 timing=t)
                    writer.append(rec)
                    _count(counts, rec)
                    emit("record", rec)
                    continue
                ready.append((c, mod, str(br.artifact_path)))
            for i in range(0, len(ready), max(1, parallel)):
                chunk = ready[i:i + max(1, parallel)]
                inputs = [RunnerInput(path, device_type, ArgInfo.from_prim_func(mod["main"])) for c, mod, path in chunk]
                t0 = time.perf_counter()
                futures = runner.run(inputs)
                for (c, mod, path), fut in zip(chunk, futures):
                    res = fut.result()
                    wall_ms = round((time.perf_counter() - t0) * 1e3, 3)
                    t = dict(timing_base, build_s=round(build_s, 3), wall_ms=wall_ms)
                    secs = list(res.run_secs) if res.run_secs is not None else None
                    if res.error_msg or not secs:
                        err = str(res.error_msg or "no run time returned")
                        rec = record(c, wl, classify_error(err), clocks, error=err[-4000:], timing=t)
                    else:
                        times = [round(float(getattr(s, "value", s)) * 1e3, 6) for s in secs]
                        rec = record(c, wl, "ok", clocks, repeats=len(times), run_times_ms=times,
                                     median_ms=R.median(times), timing=t)
                    writer.append(rec)
                    _count(counts, rec)
                    emit("record", rec)
                    _cleanup(path)
    finally:
        writer.close()
    return counts


def _count(counts: dict, rec) -> None:
    counts[rec.status] = counts.get(rec.status, 0) + 1
