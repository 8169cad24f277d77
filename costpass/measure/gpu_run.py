#!/usr/bin/env python3
"""Measure a bundle of built TVM candidates on the GPU machine (runtime-only TVM + torch).

    python3 gpu_run.py --bundle DIR|FILE.tar.xz --out OUT.jsonl [--ids FILE] [--limit N]
                       [--budget-s S] [--tag NAME] [--check-all] [--flush-l2]

Needs only the standard library, torch and a runtime-only ``tvm`` on the GPU machine (see
``remote.py`` for the launcher that sets PYTHONPATH); ``records.py`` beside this file is imported as
a sibling module. ``ncu.py`` imports the loading code from here.

Process layout. The parent process never touches CUDA. It runs one child process (this script with
``--child``) over the planned candidate ids, in workload groups, and reads a line protocol on the
child's stdout (``GROUP wl`` / ``START id`` / ``DONE id`` / ``POISONED id``). The child writes one
record per candidate (append + fsync). If a candidate poisons the CUDA context (illegal address:
every later CUDA call in that process fails), the child records ``run_error`` and exits; if the
child dies or hangs, the parent records ``run_error`` / ``timeout`` for the candidate in flight.
Either way the parent starts a new child on the candidates left. ``--budget-s`` stops cleanly:
no new candidate starts after the deadline. A rerun with the same ``--out`` skips recorded ids.

Timing: the entry function is called once to warm up (module load, cubin lookup), once as a probe
timed with CUDA events, then N times back to back with one event pair around each call, queued
behind a GPU spin (``torch.cuda._sleep``) so that host launch overhead does not show up as device
time. What an event pair reads around a 1-element kernel is recorded as ``timing.null_launch_ms``
(once per workload group): event-timed single launches include a few microseconds that ncu's
``gpu__time_duration`` does not. N aims at ~30 ms of timed work, within [3, 100]; a probe over 200 ms is recorded as it is,
with at most 2 more runs. Caches stay warm between runs unless ``--flush-l2``.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import hashlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

try:  # imported as costpass.measure.gpu_run
    from . import nvcc_cmd as N
    from . import records as R
except ImportError:  # run as a script / imported as a sibling module on the GPU machine
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import nvcc_cmd as N  # type: ignore
    import records as R  # type: ignore

# ----------------------------------------------------------------------------------------------
# bundle
# ----------------------------------------------------------------------------------------------

SHA_KEYS = ("cuda_sha256", "cuda_sources_sha256", "cuda_source_sha256", "source_sha256",
            "cubin_sha256", "sha256")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def open_bundle(path: str) -> str:
    """A bundle directory; a .tar.xz/.tar.gz/.tar is extracted once under /tmp and reused."""
    if os.path.isdir(path):
        return os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bundle not found: {path}")
    st = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime}".encode()).hexdigest()[:12]
    dest = os.path.join(tempfile.gettempdir(), f"costpass_bundle_{key}")
    done = os.path.join(dest, ".extracted")
    if not os.path.exists(done):
        os.makedirs(dest, exist_ok=True)
        with tarfile.open(path) as tf:
            try:
                tf.extractall(dest, filter="data")
            except TypeError:  # python < 3.12
                tf.extractall(dest)
        open(done, "w").close()
    # the archive may hold the bundle folder itself or its contents
    if os.path.exists(os.path.join(dest, "manifest.jsonl")):
        return dest
    subs = [os.path.join(dest, d) for d in sorted(os.listdir(dest))
            if os.path.exists(os.path.join(dest, d, "manifest.jsonl"))]
    if len(subs) != 1:
        raise FileNotFoundError(f"no single manifest.jsonl inside {path}")
    return subs[0]


def read_manifest(bundle: str) -> list[dict]:
    """Manifest entries in file order (unreadable lines are reported with file:line and skipped)."""
    path = os.path.join(bundle, "manifest.jsonl")
    out, seen = [], set()
    for lineno, e in R.iter_json_lines(path):
        if "id" not in e or "workload" not in e or "arg_specs" not in e:
            print(f"{path}:{lineno}: manifest entry lacks id/workload/arg_specs, skipped", file=sys.stderr)
            continue
        e["id"] = str(e["id"])
        if e["id"] in seen:
            print(f"{path}:{lineno}: duplicate id {e['id']}, skipped", file=sys.stderr)
            continue
        seen.add(e["id"])
        out.append(e)
    return out


def entry_lib(bundle: str, e: dict) -> str:
    return os.path.join(bundle, e.get("lib") or os.path.join("libs", f"{e['id']}.so"))


def ref_lib(bundle: str, workload: str) -> str:
    return os.path.join(bundle, "libs", f"ref_{workload}.so")


def output_indices(e: dict) -> list[int]:
    n = len(e["arg_specs"])
    outs = e.get("outputs", e.get("output_idx"))
    if outs is None:
        return [n - 1]
    if isinstance(outs, int):
        outs = [outs]
    return [o % n for o in outs]


def group_by_workload(entries: list[dict]) -> list[tuple[str, list[dict]]]:
    """Workloads in order of first appearance; candidates in manifest order."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["workload"], []).append(e)
    return list(groups.items())


# ----------------------------------------------------------------------------------------------
# runtime-only TVM and the cubin cache
# ----------------------------------------------------------------------------------------------

KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')


def kernel_names(code: str) -> list[str]:
    """__global__ function names of a CUDA source, in order of first appearance."""
    names = []
    for m in KERNEL_RE.finditer(code):
        if m.group(1) not in names:
            names.append(m.group(1))
    return names


class CubinCache:
    """The ``tvm_callback_cuda_compile`` hook: cubin by sha256 of the exact source string, else nvcc.

    ``events`` collects what happened since the last ``reset()`` (one entry per source compiled).
    """

    def __init__(self, cubin_dir: str | None, arch: str, nvcc_dir: str | None = None,
                 use_cache: bool = True):
        self.cubin_dir = cubin_dir
        self.arch = arch
        self.use_cache = use_cache
        self.nvcc_dir = nvcc_dir or os.path.join(tempfile.gettempdir(), "costpass_nvcc_cubins")
        os.makedirs(self.nvcc_dir, exist_ok=True)
        self.events: list[dict] = []
        self.build_failed: str | None = None

    def reset(self):
        self.events = []
        self.build_failed = None

    def __call__(self, code, *rest):
        if not isinstance(code, str):
            code = str(code)
        h = hashlib.sha256(code.encode("utf-8")).hexdigest()
        ev = {"sha256": h, "kernels": kernel_names(code)}
        if self.use_cache and self.cubin_dir:
            p = os.path.join(self.cubin_dir, f"{h}.cubin")
            if os.path.exists(p):
                ev["source"] = "cache"
                self.events.append(ev)
                with open(p, "rb") as f:
                    return f.read()
        p = os.path.join(self.nvcc_dir, f"{h}.{self.arch}.cubin")
        if os.path.exists(p):
            ev["source"] = "nvcc_cache"
            self.events.append(ev)
            with open(p, "rb") as f:
                return f.read()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as td:
            cu = os.path.join(td, "k.cu")
            with open(cu, "w") as f:
                f.write(code)
            cmd = N.command(cu, os.path.join(td, "k.cubin"), self.arch)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                self.build_failed = (r.stderr or r.stdout)[-2000:]
                ev["source"] = "nvcc_failed"
                self.events.append(ev)
                raise RuntimeError(f"nvcc failed: {self.build_failed}")
            with open(os.path.join(td, "k.cubin"), "rb") as f:
                data = f.read()
        tmp = p + f".tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
        ev["source"] = "nvcc"
        ev["nvcc_s"] = round(time.perf_counter() - t0, 3)
        self.events.append(ev)
        print(f"[gpu_run] cubin {h[:12]} not in bundle: compiled with nvcc in {ev['nvcc_s']} s",
              file=sys.stderr, flush=True)
        return data

    def summary(self) -> dict:
        out: dict = {}
        for ev in self.events:
            out[ev["source"]] = out.get(ev["source"], 0) + 1
        nv = sum(ev.get("nvcc_s", 0) for ev in self.events)
        if nv:
            out["nvcc_s"] = round(nv, 3)
        return out


def record_build(build: dict, compiled: dict) -> dict:
    """A record's ``build``: the bundle's, unless a cubin was missing and compiled here with nvcc."""
    if build.get("compiler") != "nvcc" and (compiled.get("nvcc") or compiled.get("nvcc_cache")):
        return {"compiler": "nvcc", "flags": list(N.FLAGS), "fallback_from": build.get("compiler")}
    return build


_TVM = None


def setup_tvm(cache: CubinCache):
    """Import runtime-only TVM, load its CUDA runtime globally, register the compile callback."""
    global _TVM
    import tvm  # noqa: F401  (runtime-only: lib/libtvm_compiler.so absent)
    import tvm_ffi

    libdir = os.path.join(os.path.dirname(tvm.__file__), "lib")
    cuda_rt = os.path.join(libdir, "libtvm_runtime_cuda.so")
    if os.path.exists(cuda_rt):
        ctypes.CDLL(cuda_rt, mode=ctypes.RTLD_GLOBAL)
    tvm_ffi.register_global_func("tvm_callback_cuda_compile", cache, override=True)
    _TVM = tvm
    return tvm


def load_entry(path: str, entry: str = "main"):
    """(module, function); the module must stay alive while the function is used."""
    mod = _TVM.runtime.load_module(path)
    return mod, mod[entry]


def device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}a" if major >= 9 else f"sm_{major}{minor}"


# ----------------------------------------------------------------------------------------------
# device facts
# ----------------------------------------------------------------------------------------------

SMI = "nvidia-smi"
CLOCK_FIELDS = [("clocks.sm", "sm_mhz"), ("clocks.mem", "mem_mhz"), ("clocks.max.sm", "max_sm_mhz"),
                ("clocks.max.mem", "max_mem_mhz")]
CLOCK_EXTRA = [("temperature.gpu", "temp_c"), ("power.draw", "power_w"), ("pstate", "pstate"),
               ("clocks_event_reasons.active", "clock_event_reasons")]


def _smi(fields: list[str]) -> list[str] | None:
    try:
        r = subprocess.run([SMI, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits",
                            "-i", os.environ.get("COSTPASS_GPU_INDEX", "0")],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0 or not r.stdout.strip():
        return None
    vals = [v.strip() for v in r.stdout.strip().splitlines()[0].split(",")]
    return vals if len(vals) == len(fields) else None


def _num(v: str):
    try:
        x = float(v)
        return int(x) if x.is_integer() else x
    except ValueError:
        return v


_CLOCK_FIELDS_OK: list | None = None


def read_clocks() -> dict:
    """SM / memory clocks as nvidia-smi reads them now, with the max clocks; an error entry if it fails.

    The optional fields (temperature, power, pstate, clock event reasons) are tried one by one once;
    later reads are a single nvidia-smi call.
    """
    global _CLOCK_FIELDS_OK
    out: dict = {"read_at": now_iso(), "source": "nvidia-smi"}
    if _CLOCK_FIELDS_OK is None:
        if _smi([f for f, _ in CLOCK_FIELDS]) is None:
            return {"read_at": out["read_at"], "error": "nvidia-smi query failed"}
        _CLOCK_FIELDS_OK = list(CLOCK_FIELDS) + [(f, k) for f, k in CLOCK_EXTRA if _smi([f]) is not None]
    vals = _smi([f for f, _ in _CLOCK_FIELDS_OK])
    if vals is None:
        return {"read_at": out["read_at"], "error": "nvidia-smi query failed"}
    out.update({k: _num(v) for (_, k), v in zip(_CLOCK_FIELDS_OK, vals)})
    return out


def _mhz(v, default=1980.0) -> float:
    return float(v) if isinstance(v, (int, float)) and v > 0 else default


def gpu_info() -> dict:
    import torch

    p = torch.cuda.get_device_properties(0)
    info = {
        "gpu": torch.cuda.get_device_name(0),
        "compute_capability": f"{p.major}.{p.minor}",
        "sm_count": int(p.multi_processor_count),
        "l2_bytes": int(getattr(p, "L2_cache_size", 0)) or None,
        "memory_bytes": int(p.total_memory),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
    vals = _smi(["driver_version", "name"])
    info["driver"] = vals[0] if vals else ""
    return info


# ----------------------------------------------------------------------------------------------
# inputs, poisoning, correctness
# ----------------------------------------------------------------------------------------------

def torch_dtype(name: str):
    import torch

    table = {
        "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
        "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
        "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32,
        "int64": torch.int64, "bool": torch.bool,
        "float8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
        "float8_e5m2": getattr(torch, "float8_e5m2", None),
        "e4m3_float8": getattr(torch, "float8_e4m3fn", None),
        "e5m2_float8": getattr(torch, "float8_e5m2", None),
    }
    dt = table.get(str(name))
    if dt is None:
        raise ValueError(f"unsupported dtype {name!r}")
    return dt


HALF = ("float16", "bfloat16", "half")
TOL = {"float64": 1e-6, "float32": 1e-3, "float16": 1e-2, "half": 1e-2, "bfloat16": 3e-2,
       "float8_e4m3fn": 1e-1, "float8_e5m2": 2e-1, "e4m3_float8": 1e-1, "e5m2_float8": 2e-1}


def tolerance(arg_specs: list, outputs: list[int]) -> float:
    """Rel. L2 tolerance: that of the least precise float among inputs and outputs; 0 if all ints."""
    tols = [TOL[str(dt)] for _, dt in arg_specs if str(dt) in TOL]
    return max(tols) if tols else 0.0


def fill_input(t, dtype: str, init, gen):
    import torch

    init = init or ("randn" if t.dtype.is_floating_point else "randint:0:8")
    if init == "randn":
        if t.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            t.normal_(generator=gen)
        else:  # fp8: draw in fp32, convert
            t.copy_(torch.randn(t.shape, device=t.device, generator=gen))
        if str(dtype) in HALF:
            t.mul_(0.5)
    elif init == "uniform":
        t.uniform_(-1.0, 1.0, generator=gen)
    elif init.startswith("randint"):
        _, lo, hi = init.split(":")
        t.random_(int(lo), int(hi), generator=gen)
    elif init == "ones":
        t.fill_(1)
    elif init == "zeros":  # only when a manifest asks for it explicitly
        t.zero_()
    else:
        raise ValueError(f"unknown arg init {init!r}")


def poison(t):
    import torch

    if t.dtype.is_floating_point:
        t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.fill_(True)
    else:
        t.fill_(torch.iinfo(t.dtype).min)


def checksum(t) -> float:
    import torch

    return float(t.double().sum().item()) if t.numel() else 0.0


class Workload:
    """Inputs of one workload group (allocated once), output buffers, reference outputs."""

    def __init__(self, name: str, e: dict, seed: int):
        import torch

        self.name = name
        self.arg_specs = e["arg_specs"]
        self.outputs = output_indices(e)
        self.inits = e.get("arg_init") or [None] * len(self.arg_specs)
        self.seed = seed
        self.args = []
        for shape, dtype in self.arg_specs:
            self.args.append(torch.empty(tuple(int(s) for s in shape), dtype=torch_dtype(dtype), device="cuda"))
        self.fill()
        self.ref = None  # list of reference output tensors (or None)
        self.tol = tolerance(self.arg_specs, self.outputs)
        self.nbytes = sum(a.numel() * a.element_size() for a in self.args)

    def fill(self):
        import torch

        gen = torch.Generator(device="cuda")
        gen.manual_seed(self.seed)
        for i, (t, (_, dtype)) in enumerate(zip(self.args, self.arg_specs)):
            if i in self.outputs:
                poison(t)
            else:
                fill_input(t, dtype, self.inits[i], gen)
        torch.cuda.synchronize()
        self.sums = [checksum(t) for i, t in enumerate(self.args) if i not in self.outputs]

    def inputs_intact(self) -> bool:
        return [checksum(t) for i, t in enumerate(self.args) if i not in self.outputs] == self.sums

    def poison_outputs(self):
        for i in self.outputs:
            poison(self.args[i])

    def run_reference(self, fn):
        import torch

        self.poison_outputs()
        fn(*self.args)
        torch.cuda.synchronize()
        self.ref = [self.args[i].clone() for i in self.outputs]
        self.poison_outputs()

    def compare(self) -> dict:
        """Rel. L2 error of the current outputs against the reference; every element written?"""
        import torch

        worst, all_written, finite = 0.0, True, True
        for i, ref in zip(self.outputs, self.ref):
            out = self.args[i]
            if out.dtype.is_floating_point:
                o, r = out.double(), ref.double()
                unwritten = torch.isnan(o) & ~torch.isnan(r)
                if bool(unwritten.any()):
                    all_written = False
                both = torch.isnan(o) & torch.isnan(r)
                o = torch.where(both, torch.zeros_like(o), o)
                r = torch.where(both, torch.zeros_like(r), r)
                if not bool(torch.isfinite(o).all()) or not bool(torch.isfinite(r).all()):
                    finite = bool((o == r).all())  # inf where the reference has the same inf
                    o = torch.where(o == r, torch.zeros_like(o), o)
                    r = torch.where(torch.isfinite(r), r, torch.zeros_like(r))
            else:
                sentinel = torch.iinfo(out.dtype).min if out.dtype != torch.bool else True
                if bool(((out == sentinel) & (ref != sentinel)).any()):
                    all_written = False
                o, r = out.double(), ref.double()
            num = float(torch.linalg.vector_norm(o - r))
            den = float(torch.linalg.vector_norm(r))
            err = num / den if den > 0 else num
            if math.isnan(err):
                err = float("inf")
            worst = max(worst, err)
        ok = all_written and finite and worst <= self.tol
        return {"rel_l2": worst, "tol": self.tol, "all_written": all_written, "ok": bool(ok)}


def workload_seed(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------

def time_fn(fn, args, target_ms=30.0, min_rep=3, max_rep=100, slow_ms=200.0, flush=None,
            sm_mhz=1980.0) -> dict:
    """Run times (ms) of ``fn(*args)`` with CUDA events; the call must already be warmed up."""
    import torch

    Ev = torch.cuda.Event
    s, e = Ev(enable_timing=True), Ev(enable_timing=True)
    if flush is not None:
        flush()
    s.record()
    h0 = time.perf_counter()
    fn(*args)
    host_ms = (time.perf_counter() - h0) * 1e3
    e.record()
    e.synchronize()
    probe = round(s.elapsed_time(e), 6)
    info = {"probe_ms": probe, "host_launch_ms": round(host_ms, 4)}
    if probe > slow_ms:
        times = [probe]
        extra = 2 if probe <= 1000.0 else 0
        for _ in range(extra):
            if flush is not None:
                flush()
            s.record()
            fn(*args)
            e.record()
            e.synchronize()
            times.append(round(s.elapsed_time(e), 6))
        info.update(method="events_each_slow", slow=True)
        return {"times": times, **info}
    n = int(min(max_rep, max(min_rep, math.ceil(target_ms / max(probe, 1e-4)))))
    starts = [Ev(enable_timing=True) for _ in range(n)]
    ends = [Ev(enable_timing=True) for _ in range(n)]
    # keep the GPU busy while the host queues the n launches: no launch gap inside an event pair
    spin_ms = min(50.0, n * (host_ms + 0.03) * 1.5 + 0.2)
    torch.cuda._sleep(int(spin_ms * sm_mhz * 1e3))
    h0 = time.perf_counter()
    for i in range(n):
        if flush is not None:
            flush()
        starts[i].record()
        fn(*args)
        ends[i].record()
    enqueue_ms = (time.perf_counter() - h0) * 1e3
    torch.cuda.synchronize()
    times = [round(a.elapsed_time(b), 6) for a, b in zip(starts, ends)]
    info.update(method="events_each_behind_spin", spin_ms=round(spin_ms, 3),
                enqueue_ms=round(enqueue_ms, 3),
                # if the host took longer to queue than the GPU spun, early pairs may hold launch gaps
                gaps_possible=bool(enqueue_ms > spin_ms))
    return {"times": times, **info}


def null_launch_ms(sm_mhz: float = 1980.0) -> float | None:
    """Median time of a 1-element torch kernel under the same event method: what an event pair
    around one launch reads for (almost) no work. Recorded with every candidate of the group."""
    import torch

    try:
        x = torch.zeros(1, device="cuda")
        fn = lambda: x.add_(1.0)  # noqa: E731
        fn()
        torch.cuda.synchronize()
        res = time_fn(fn, [], target_ms=0.0, min_rep=100, max_rep=100, sm_mhz=sm_mhz)
        return R.median(res["times"])
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------------------------
# child: measures candidates in order, one record each
# ----------------------------------------------------------------------------------------------

def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def context_ok() -> bool:
    """False once the CUDA context is poisoned (a sticky error such as an illegal address)."""
    import torch

    try:
        torch.cuda.synchronize()
        x = torch.ones(4, device="cuda")
        return float((x + 1).sum().item()) == 8.0
    except Exception:  # noqa: BLE001
        return False


def child_main(a) -> int:
    import torch

    bundle = a.bundle
    entries = {e["id"]: e for e in read_manifest(bundle)}
    with open(a.plan) as f:
        plan = json.load(f)
    ids = plan["ids"]
    deadline = plan["deadline"]
    writer = R.JsonlWriter(a.out)
    torch.cuda.init()
    info = gpu_info()
    say("INFO", json.dumps({"gpu": info["gpu"], "driver": info["driver"]}))
    arch = device_arch()
    cache = CubinCache(os.path.join(bundle, "cubins"), arch,
                       use_cache=(arch == "sm_90a"))  # bundle cubins are sm_90a
    setup_tvm(cache)
    build = N.build_of(bundle)
    say("BUILD", json.dumps(build))
    # index of each candidate within its workload in the manifest: the check sample is stable
    pos: dict[str, int] = {}
    for wl, es in group_by_workload(list(entries.values())):
        for i, e in enumerate(es):
            pos[e["id"]] = i
    flush_buf = None
    if a.flush_l2:
        n = max(2 * (info["l2_bytes"] or 50 << 20), 128 << 20)
        flush_buf = torch.empty(n // 4, dtype=torch.int32, device="cuda")
    flush = (lambda: flush_buf.zero_()) if flush_buf is not None else None

    wl_obj: Workload | None = None
    clocks: dict = {}
    clocks_t = 0.0
    best_checked: dict[str, float] = {}

    def base_record(e, status, **kw):
        d = dict(workload=e["workload"], candidate_id=e["id"], status=status,
                 origin=str(e.get("origin", "")), tag=a.tag or "",
                 gpu=info["gpu"], driver=info["driver"], compute_capability=info["compute_capability"],
                 sm_count=info["sm_count"], l2_bytes=info["l2_bytes"], clocks=clocks, date=now_iso(),
                 costpass_commit=str(e.get("costpass_commit", e.get("commit", "")) or ""),
                 tvm_version=str(e.get("tvm_version", "") or ""), seed=e.get("seed"),
                 params=e.get("params") or {}, flops=e.get("flops"), min_bytes=e.get("min_bytes"),
                 build=record_build(build, (kw.get("timing") or {}).get("compile") or {}))
        d.update(kw)
        return R.Record.from_dict(d)

    for cid in ids:
        e = entries[cid]
        if time.time() > deadline:
            say("BUDGET", cid)
            return 0
        if wl_obj is None or wl_obj.name != e["workload"]:
            # new workload group: free the last one, allocate inputs, run the reference
            wl_obj = None
            torch.cuda.empty_cache()
            say("GROUP", e["workload"])
            wl_obj = Workload(e["workload"], e, workload_seed(e["workload"]))
            clocks = read_clocks()  # right before the group (the GPU may still be idle)
            clocks_t = 0.0  # read again after the group's first candidate, with the GPU busy
            rp = ref_lib(bundle, e["workload"])
            ref_err = None
            if os.path.exists(rp):
                try:
                    cache.reset()
                    rmod, rfn = load_entry(rp, e.get("entry", "main"))
                    rfn(*wl_obj.args)  # warm-up (module load)
                    wl_obj.run_reference(rfn)
                    del rfn, rmod
                except Exception as ex:  # noqa: BLE001
                    ref_err = f"reference failed: {ex}"[:2000]
                    wl_obj.ref = None
                    if not context_ok():
                        say("POISONED", "ref_" + e["workload"])
                        print(f"[gpu_run] reference of {e['workload']} poisoned the context: {ex}",
                              file=sys.stderr, flush=True)
                        return 4
            else:
                ref_err = "no reference library"
            wl_obj.ref_error = ref_err
            wl_obj.null_launch_ms = null_launch_ms(_mhz(clocks.get("max_sm_mhz")))
        say("START", cid)
        t_start = time.perf_counter()
        timing: dict = {"l2_flush": bool(a.flush_l2)}
        idx = pos.get(cid, 0)
        want_check = a.check_all or idx < 3 or idx % 10 == 0
        cache.reset()
        mod = fn = None
        try:
            t0 = time.perf_counter()
            mod, fn = load_entry(entry_lib(bundle, e), e.get("entry", "main"))
            timing["load_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        except Exception as ex:  # noqa: BLE001
            status = "build_error" if cache.build_failed else "load_error"
            timing["compile"] = cache.summary()
            writer.append(base_record(e, status, error=str(ex)[-4000:], timing=timing))
            say("DONE", cid)
            if not context_ok():
                say("POISONED", cid)
                return 3
            continue
        try:
            wl_obj.poison_outputs()
            t0 = time.perf_counter()
            fn(*wl_obj.args)  # warm-up: module load into the context happens here
            torch.cuda.synchronize()
            timing["warmup_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
            timing["compile"] = cache.summary()
            correctness = None
            if wl_obj.ref is not None and want_check:
                correctness = wl_obj.compare()
            res = time_fn(fn, wl_obj.args, target_ms=a.target_ms, min_rep=a.min_repeats,
                          max_rep=a.max_repeats, slow_ms=a.slow_ms, flush=flush,
                          sm_mhz=_mhz(clocks.get("max_sm_mhz")))
            times = res.pop("times")
            med = R.median(times)
            # a candidate much faster than the best checked one is checked too: fast-but-wrong
            # candidates are the ones a cost model must not learn from
            if (correctness is None and wl_obj.ref is not None and wl_obj.name in best_checked
                    and med < 0.5 * best_checked[wl_obj.name]):
                wl_obj.poison_outputs()
                fn(*wl_obj.args)
                torch.cuda.synchronize()
                correctness = wl_obj.compare()
                correctness["reason"] = "faster than half the best checked"
            if correctness is not None:
                correctness["sample"] = "all" if a.check_all else "first3_every10"
                if not wl_obj.inputs_intact():
                    correctness["inputs_modified"] = True
                    correctness["ok"] = False
                    wl_obj.fill()
                    # reference outputs stay valid: the inputs are regenerated from the same seed
                if correctness["ok"]:
                    best_checked[wl_obj.name] = min(best_checked.get(wl_obj.name, float("inf")), med)
            elif want_check and wl_obj.ref is None:
                correctness = {"ok": None, "error": getattr(wl_obj, "ref_error", "no reference")}
            timing.update(res)
            timing["null_launch_ms"] = wl_obj.null_launch_ms
            timing["wall_ms"] = round((time.perf_counter() - t_start) * 1e3, 3)
            status = "ok" if (correctness is None or correctness.get("ok") is not False) else "wrong"
            writer.append(base_record(e, status, repeats=len(times), run_times_ms=times,
                                      median_ms=med, correctness=correctness, timing=timing))
            say("DONE", cid)
        except Exception as ex:  # noqa: BLE001
            timing["compile"] = cache.summary()
            timing["wall_ms"] = round((time.perf_counter() - t_start) * 1e3, 3)
            writer.append(base_record(e, "run_error", error=str(ex)[-4000:], timing=timing))
            say("DONE", cid)
            if not context_ok():
                say("POISONED", cid)
                return 3
        finally:
            del fn, mod
        if time.time() - clocks_t > a.clock_every_s:
            clocks = read_clocks()
            clocks_t = time.time()
    say("FINISHED")
    return 0


# ----------------------------------------------------------------------------------------------
# parent: plans, supervises children, writes records for candidates whose child died
# ----------------------------------------------------------------------------------------------

class Supervisor:
    def __init__(self, a, bundle: str, entries: dict, ids: list[str]):
        self.a = a
        self.bundle = bundle
        self.entries = entries
        self.todo = list(ids)
        self.writer = R.JsonlWriter(a.out)
        self.child = None
        self.stopped = False
        self.restarts = 0
        self.groups_setup_crash: dict[str, int] = {}

    def fail_record(self, cid, status, error):
        e = self.entries[cid]
        d = dict(workload=e["workload"], candidate_id=cid, status=status, origin=str(e.get("origin", "")),
                 tag=self.a.tag or "", date=now_iso(), gpu=self.gpu.get("gpu", ""),
                 driver=self.gpu.get("driver", ""),
                 costpass_commit=str(e.get("costpass_commit", e.get("commit", "")) or ""),
                 tvm_version=str(e.get("tvm_version", "") or ""), seed=e.get("seed"),
                 params=e.get("params") or {}, flops=e.get("flops"), min_bytes=e.get("min_bytes"),
                 error=error, timing={"recorded_by": "supervisor"})
        self.writer.append(R.Record.from_dict(d))

    def run(self, deadline: float):
        # replaced by what the child reads through CUDA (INFO line), so that all records of a run
        # name the GPU the same way
        self.gpu = {"gpu": "", "driver": ""}
        while self.todo and not self.stopped and time.time() < deadline:
            self.run_child(deadline)

    def run_child(self, deadline):
        a = self.a
        fd, plan_path = tempfile.mkstemp(prefix="costpass_plan_", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"ids": self.todo, "deadline": deadline}, f)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--plan", plan_path,
               "--bundle", self.bundle, "--out", a.out, "--tag", a.tag or "",
               "--target-ms", str(a.target_ms), "--min-repeats", str(a.min_repeats),
               "--max-repeats", str(a.max_repeats), "--slow-ms", str(a.slow_ms),
               "--clock-every-s", str(a.clock_every_s)]
        if a.check_all:
            cmd.append("--check-all")
        if a.flush_l2:
            cmd.append("--flush-l2")
        self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        fd_out = self.child.stdout.fileno()
        current, group, t_mark = None, None, time.time()
        buf = b""
        pending: list[str] = []
        eof = poisoned = False
        try:
            while True:
                if not pending and not eof:
                    limit = a.setup_timeout_s if current is None else a.cand_timeout_s
                    wait = max(0.1, min(limit - (time.time() - t_mark),
                                        deadline + a.cand_timeout_s - time.time()))
                    r, _, _ = select.select([fd_out], [], [], wait)
                    if not r:
                        if time.time() - t_mark >= limit or time.time() > deadline + a.cand_timeout_s:
                            self.kill_child()
                            if current is not None:
                                self.fail_record(current, "timeout",
                                                 f"no result within {a.cand_timeout_s} s: child killed")
                                self.todo.remove(current)
                                print(f"[gpu_run] {current}: timeout, child killed", flush=True)
                            elif group is not None:
                                self.setup_crash(group, "workload setup timed out")
                            else:
                                print("[gpu_run] child did not start in time; giving up", flush=True)
                                self.stopped = True
                            break
                        continue
                    chunk = os.read(fd_out, 65536)
                    if chunk:
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        pending.extend(ln.decode(errors="replace") for ln in lines)
                    else:
                        eof = True
                        if buf:
                            pending.append(buf.decode(errors="replace"))
                            buf = b""
                    continue
                if not pending:  # the child exited and every line it wrote is handled
                    rc = self.child.wait()
                    if current is not None:
                        if not poisoned:
                            self.fail_record(current, "run_error",
                                             f"child process died (exit status {rc}) while running it")
                            print(f"[gpu_run] {current}: child died (rc={rc})", flush=True)
                        if current in self.todo:
                            self.todo.remove(current)
                    elif rc != 0 and group is not None and not poisoned:
                        self.setup_crash(group, f"child died (exit status {rc}) in workload setup")
                    elif rc == 4 and group is not None:
                        self.setup_crash(group, "reference kernel poisoned the CUDA context")
                    elif rc != 0 and group is None:
                        print(f"[gpu_run] child failed at start (rc={rc}); giving up", flush=True)
                        self.stopped = True
                    break
                line = pending.pop(0)
                if line.startswith("INFO "):
                    try:
                        self.gpu.update(json.loads(line[5:]))
                    except ValueError:
                        pass
                    continue
                words = line.split()
                if not words:
                    continue
                kind = words[0]
                t_mark = time.time()
                if kind == "GROUP":
                    group, current = words[1], None
                elif kind == "START":
                    current = words[1]
                elif kind == "DONE":
                    if words[1] in self.todo:
                        self.todo.remove(words[1])
                    current = None
                elif kind == "POISONED":
                    poisoned = True
                    self.restarts += 1
                    print(f"[gpu_run] {words[1]}: CUDA context poisoned; restarting the child", flush=True)
                elif kind == "BUDGET":
                    self.stopped = True
        finally:
            self.kill_child()
            os.unlink(plan_path)

    def setup_crash(self, group, why):
        n = self.groups_setup_crash.get(group, 0) + 1
        self.groups_setup_crash[group] = n
        print(f"[gpu_run] workload {group}: {why}", flush=True)
        if n >= 2 or "poisoned" in why:
            for cid in [c for c in self.todo if self.entries[c]["workload"] == group]:
                self.fail_record(cid, "run_error", f"workload setup failed: {why}")
                self.todo.remove(cid)

    def kill_child(self):
        c = self.child
        if c is not None and c.poll() is None:
            c.kill()
            c.wait()
        self.child = None


def summarize(out_path: str, ids: set[str], wall_s: float, skipped: int) -> str:
    recs = [r for r in R.read_records(out_path) if r.candidate_id in ids] if os.path.exists(out_path) else []
    latest = {}
    for r in recs:
        latest[r.candidate_id] = r
    by: dict[str, list] = {}
    for r in latest.values():
        by.setdefault(r.workload, []).append(r)
    hdr = f"{'workload':<28} {'n':>4} {'ok':>4} {'wrong':>5} {'err':>4} {'tmo':>4} {'chk':>4} {'best_ms':>10} {'med_ms':>10} {'wall_s':>8}"
    lines = [hdr, "-" * len(hdr)]
    tot = 0
    for wl, rs in by.items():
        ok = [r for r in rs if r.status == "ok"]
        meds = [r.median_ms for r in rs if r.median_ms is not None and r.status in ("ok", "wrong")]
        err = sum(r.status in ("build_error", "load_error", "run_error") for r in rs)
        chk = sum(1 for r in rs if r.correctness and r.correctness.get("ok") is not None)
        wall = sum((r.timing or {}).get("wall_ms", 0) for r in rs) / 1e3
        best = min((r.median_ms for r in ok if r.median_ms is not None), default=None)
        lines.append(f"{wl[:28]:<28} {len(rs):>4} {len(ok):>4} {sum(r.status == 'wrong' for r in rs):>5} "
                     f"{err:>4} {sum(r.status == 'timeout' for r in rs):>4} {chk:>4} "
                     f"{'-' if best is None else f'{best:.4f}':>10} "
                     f"{'-' if not meds else f'{R.median(meds):.4f}':>10} {wall:>8.1f}")
        tot += len(rs)
    lines.append(f"{tot} measured this run, {skipped} skipped (already in the output), "
                 f"{wall_s:.1f} s wall, {wall_s / max(tot, 1):.3f} s per candidate")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ids", help="file with one candidate id per line (default: all)")
    p.add_argument("--limit", type=int, help="at most N candidates (after --ids and skipping)")
    p.add_argument("--budget-s", type=float, default=None, help="start no candidate after S seconds")
    p.add_argument("--tag", default="")
    p.add_argument("--check-all", action="store_true", help="check every candidate against the reference")
    p.add_argument("--flush-l2", action="store_true", help="write over L2 before every timed run")
    p.add_argument("--redo-status", default="", help="comma list of statuses to measure again")
    p.add_argument("--target-ms", type=float, default=30.0)
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--max-repeats", type=int, default=100)
    p.add_argument("--slow-ms", type=float, default=200.0)
    p.add_argument("--cand-timeout-s", type=float, default=120.0)
    p.add_argument("--setup-timeout-s", type=float, default=300.0)
    p.add_argument("--clock-every-s", type=float, default=20.0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def plan_ids(entries: list[dict], out: str, ids_file: str | None, limit: int | None,
             redo_status=()) -> tuple[list[str], int]:
    """Ids to measure, grouped by workload (manifest order), minus those already in ``out``."""
    want = None
    if ids_file:
        with open(ids_file) as f:
            want = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    done = R.recorded_ids(out, redo_status)
    order, skipped = [], 0
    for _, es in group_by_workload(entries):
        for e in es:
            if want is not None and e["id"] not in want:
                continue
            if e["id"] in done:
                skipped += 1
                continue
            order.append(e["id"])
    if limit is not None:
        order = order[:limit]
    return order, skipped


def main(argv=None) -> int:
    import warnings

    warnings.formatwarning = lambda msg, cat, fn, ln, line=None: f"[gpu_run] warning: {msg}\n"
    a = parse_args(argv)
    if a.child:
        return child_main(a)
    t0 = time.time()
    bundle = open_bundle(a.bundle)
    a.bundle = bundle
    entries = read_manifest(bundle)
    redo = [s for s in a.redo_status.split(",") if s]
    ids, skipped = plan_ids(entries, a.out, a.ids, a.limit, redo)
    print(f"[gpu_run] bundle {bundle}: {len(entries)} candidates, {len(ids)} to measure, "
          f"{skipped} already in {a.out}", flush=True)
    deadline = t0 + a.budget_s if a.budget_s else float("inf")
    sup = Supervisor(a, bundle, {e["id"]: e for e in entries}, ids)

    def on_signal(signum, frame):
        sup.stopped = True
        sup.kill_child()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        sup.run(deadline)
    except KeyboardInterrupt:
        print("[gpu_run] interrupted", flush=True)
    left = len(sup.todo)
    print(summarize(a.out, set(ids), time.time() - t0, skipped))
    if left:
        print(f"[gpu_run] {left} candidates not measured (budget or stop); rerun with the same --out to go on")
    if sup.restarts:
        print(f"[gpu_run] child restarted {sup.restarts} time(s) after a poisoned CUDA context")
    return 0


if __name__ == "__main__":
    sys.exit(main())
