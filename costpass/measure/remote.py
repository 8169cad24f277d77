"""Getting a bundle measured on the GPU machine: what to carry, the launcher, a smoke bundle.

The GPU machine has python3 3.12 + torch but no TVM. We carry (paths relative to the repo root,
all git-ignored):

* ``.whl/``          the cp312 wheel of apache-tvm-ffi==0.1.14.post0 (3.2 MB)
* ``carry/runtime/`` this machine's ``tvm`` package without ``lib/libtvm_compiler.so``, 3rdparty,
                     relax, web, include, src (about 13 MB; TVM then runs runtime-only)
* the bundle         a folder or a .tar.xz (gpu_run.py and ncu.py open both)

``launcher()`` returns the shell prefix that installs the wheel and sets PYTHONPATH there;
``measure_command()`` the whole command for one ``run`` call. ``make_runtime()`` rebuilds
carry/runtime; ``build_smoke_bundle()`` writes a tiny bundle (vector add, fp16 matmul, one wrong and
one crashing candidate) in the bundle format, for testing the measurement path end to end.

    python3 -m costpass.measure.remote launcher
    python3 -m costpass.measure.remote command --bundle carry/bundle_v1.tar.xz --budget-s 400 --ncu-first 1
    python3 -m costpass.measure.remote runtime
    python3 -m costpass.measure.remote smoke-bundle carry/bundle_smoke
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

from . import nvcc_cmd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME_DIR = "carry/runtime"
WHEEL_DIR = ".whl"
CARRY = [WHEEL_DIR, RUNTIME_DIR]
TVM_FFI = "apache-tvm-ffi==0.1.14.post0"
# parts of the tvm package the runtime path never imports
RUNTIME_DROP = ["lib/libtvm_compiler.so", "3rdparty", "relax", "web", "include", "src", "licenses"]

LAUNCHER = r"""python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/carry/runtime PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
python3 -c 'import tvm, tvm_ffi; assert tvm.base._RUNTIME_ONLY; print("tvm", tvm.__version__, "runtime-only; tvm_ffi", tvm_ffi.__version__)' || exit 1
"""


def launcher() -> str:
    """Shell lines for the start of a ``run`` command (repo root is the working directory there)."""
    return LAUNCHER


def measure_command(bundle: str, budget_s: int = 400, tag: str = "", ncu_first: int = 0,
                    extra: str = "", resume_from: str = "", ncu_budget_s: int = 90) -> str:
    """One ``run`` command: setup, gpu_run.py over the bundle (no candidate starts after
    ``budget_s``), then optionally ncu.py on ``ncu_first`` candidates per workload that ran ok, spread
    from fastest to slowest (no batch starts after ``ncu_budget_s``). Everything lands in $OUT; record
    files over 8 MB are xz-compressed there (a file over 16 MiB would not come back).
    ``resume_from``: a carried earlier measure.jsonl to go on from (recorded ids are skipped).
    A ``run`` command may take 600 s: keep budget_s (+ ncu_budget_s + 60) + 60 under that."""
    t = f" --tag {tag}" if tag else ""
    cmd = launcher()
    cmd += ("nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,"
            "pstate --format=csv >$OUT/gpu.txt; cat $OUT/gpu.txt\n")
    if resume_from:
        cmd += f"cp {resume_from} $OUT/measure.jsonl\n"
    cmd += (f"timeout {budget_s + 60} python3 costpass/measure/gpu_run.py --bundle {bundle} "
            f"--out $OUT/measure.jsonl --budget-s {budget_s}{t} {extra} >$OUT/gpu_run.log 2>&1; "
            f"echo gpu_run rc=$?; tail -20 $OUT/gpu_run.log\n")
    if ncu_first:
        cmd += (f"timeout {ncu_budget_s + 60} python3 costpass/measure/ncu.py --bundle {bundle} "
                f"--out $OUT/ncu.jsonl --from-records $OUT/measure.jsonl --first {ncu_first} "
                f"--budget-s {ncu_budget_s} --raw-out $OUT/ncu_raw.txt{t} >$OUT/ncu.log 2>&1; "
                f"echo ncu rc=$?; tail -8 $OUT/ncu.log\n")
    cmd += ("for f in $OUT/*.jsonl $OUT/ncu_raw.txt; do [ -f $f ] && [ $(stat -c%s $f) -gt 8000000 ] "
            "&& xz -T0 -f $f; done; ls -la $OUT\n")
    return cmd


def make_runtime(dest: str | None = None) -> str:
    """Copy the installed tvm package without the compiler into carry/runtime/tvm."""
    import tvm  # the full one on this machine

    src = os.path.dirname(tvm.__file__)
    dest = dest or os.path.join(REPO, RUNTIME_DIR)
    tgt = os.path.join(dest, "tvm")
    if os.path.exists(tgt):
        shutil.rmtree(tgt)
    shutil.copytree(src, tgt, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for rel in RUNTIME_DROP:
        p = os.path.join(tgt, rel)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    return tgt


def fetch_wheel(dest: str | None = None) -> None:
    dest = dest or os.path.join(REPO, WHEEL_DIR)
    plats = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", dest, TVM_FFI]
    for p in plats:
        cmd += ["--platform", p]
    subprocess.run(cmd, check=True)


# ----------------------------------------------------------------------------------------------
# smoke bundle (needs the full TVM and nvcc here)
# ----------------------------------------------------------------------------------------------

TARGET = {"kind": "cuda", "arch": "sm_90a", "max_threads_per_block": 1024,
          "max_shared_memory_per_block": 49152, "thread_warp_size": 32}


def _target():
    import tvm

    return tvm.target.Target(TARGET, host="llvm")


def _build(mod):
    import tvm

    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_storage_rewrite": True}):
        return tvm.tirx.build(mod, target=_target(), pipeline="s_tir")


def _cuda_sources(lib) -> list[str]:
    return [m.inspect_source() for m in lib.imports if m.kind in ("cuda", "cu") or "cuda" in str(m.kind)]


def _nvcc_cubin(code: str, dest_dir: str) -> str:
    h = hashlib.sha256(code.encode("utf-8")).hexdigest()
    out = os.path.join(dest_dir, f"{h}.cubin")
    if not os.path.exists(out):
        cu = out[:-6] + ".cu"
        with open(cu, "w") as f:
            f.write(code)
        subprocess.run(nvcc_cmd.command(cu, out, "sm_90a"), check=True, capture_output=True)
        os.remove(cu)
    return h


def _vadd(n, threads, vec=1, op="add"):
    """C = A + B (op "sub": A - B, a wrong candidate; op "oob": reads 128 GB past A, a crash)."""
    import tvm
    import tvm.s_tir as s_tir
    from tvm import te

    A = te.placeholder((n,), "float32", name="A")
    B = te.placeholder((n,), "float32", name="B")
    if op == "add":
        C = te.compute((n,), lambda i: A[i] + B[i], name="C")
    elif op == "sub":
        C = te.compute((n,), lambda i: A[i] - B[i], name="C")
    else:
        C = te.compute((n,), lambda i: A[i.astype("int64") + (1 << 35)] + B[i], name="C")
    mod = tvm.IRModule({"main": te.create_prim_func([A, B, C])})
    sch = s_tir.Schedule(mod)
    blk = sch.get_sblock("C")
    (i,) = sch.get_loops(blk)
    if vec > 1:
        bx, tx, v = sch.split(i, [None, threads, vec])
        sch.vectorize(v)
    else:
        bx, tx = sch.split(i, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return sch.mod


def _matmul_te(n, m, k, in_dtype="float16", out_dtype="float32"):
    import tvm
    from tvm import te

    A = te.placeholder((n, k), in_dtype, name="A")
    B = te.placeholder((k, m), in_dtype, name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r].astype(out_dtype) * B[r, j].astype(out_dtype), axis=r),
                   name="C")
    return tvm.IRModule({"main": te.create_prim_func([A, B, C])})


def _matmul_ref(n, m, k):
    import tvm.s_tir as s_tir

    sch = s_tir.Schedule(_matmul_te(n, m, k))
    blk = sch.get_sblock("C")
    i, j, r = sch.get_loops(blk)
    bi, ti = sch.split(i, [None, 16])
    bj, tj = sch.split(j, [None, 16])
    sch.reorder(bi, bj, ti, tj, r)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ti, "threadIdx.y")
    sch.bind(tj, "threadIdx.x")
    return sch.mod


def _matmul_random(n, m, k, count, seed):
    """Random MetaSchedule candidates (the HELPERS.md recipe); (mod, trace_json, seed) each."""
    import tvm
    import tvm.s_tir as s_tir
    import tvm.s_tir.meta_schedule as ms

    mod = _matmul_te(n, m, k)
    ctx = ms.TuneContext(mod=mod, target=_target(), space_generator="post-order-apply",
                         search_strategy="evolutionary", task_name="matmul", rand_state=seed, num_threads=1)
    spaces = ctx.space_generator.generate_design_space(mod)
    out, s, tries = [], seed, 0
    while len(out) < count and tries < 400:
        tries += 1
        s += 1
        space = spaces[s % len(spaces)]
        tr = s_tir.Trace(space.trace.simplified(remove_postproc=True).insts, {})
        sch = s_tir.Schedule(mod, seed=s)
        try:
            tr.apply_to_schedule(sch, remove_postproc=True)
            sch.enter_postproc()
            if not all(p.apply(sch) for p in ctx.space_generator.postprocs):
                continue
            lib = _build(sch.mod)
        except Exception:  # noqa: BLE001
            continue
        out.append((lib, str(sch.trace), s))  # the smoke bundle keeps the trace as text
    return out


def build_smoke_bundle(dest: str, n_matmul: int = 12, seed: int = 1) -> str:
    """A small bundle in the bundle_v1 format (see the module doc of gpu_run.py)."""
    import tvm

    libs = os.path.join(dest, "libs")
    cubins = os.path.join(dest, "cubins")
    os.makedirs(libs, exist_ok=True)
    os.makedirs(cubins, exist_ok=True)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    man = []

    def add(cid, workload, lib, arg_specs, flops, min_bytes, origin, params=None, s=None, trace=""):
        path = os.path.join(libs, f"{cid}.so")
        lib.export_library(path)
        shas = [_nvcc_cubin(c, cubins) for c in _cuda_sources(lib)]
        if not cid.startswith("ref_"):
            man.append({"id": cid, "workload": workload, "params": params or {}, "origin": origin,
                        "seed": s, "trace_json": trace, "arg_specs": arg_specs, "flops": flops,
                        "min_bytes": min_bytes, "cuda_sha256": shas, "costpass_commit": commit,
                        "tvm_version": tvm.__version__, "outputs": [len(arg_specs) - 1]})

    n = 1 << 24
    wl = "vadd_f32_16m"
    specs = [[[n], "float32"]] * 3
    add(f"ref_{wl}", wl, _build(_vadd(n, 256)), specs, n, 12 * n, "reference")
    # index 2 computes A - B (checked: must come out "wrong"); index 4 reads far out of bounds
    # (must come out run_error, and the candidates after it must still be measured)
    for t, v, op in [(256, 1, "add"), (128, 1, "add"), (512, 1, "sub"), (1024, 1, "add"), (256, 1, "oob"),
                     (64, 1, "add"), (256, 4, "add")]:
        cid = f"vadd_t{t}_v{v}" + {"add": "", "sub": "_wrong", "oob": "_oob"}[op]
        origin = {"add": "hand", "sub": "test_wrong", "oob": "test_crash"}[op]
        add(cid, wl, _build(_vadd(n, t, v, op)), specs, n, 12 * n, origin, {"threads": t, "vec": v})
    N = 1024
    wl = "matmul_f16f32_1024"
    specs = [[[N, N], "float16"], [[N, N], "float16"], [[N, N], "float32"]]
    add(f"ref_{wl}", wl, _build(_matmul_ref(N, N, N)), specs, 2 * N**3, 4 * N * N * 2, "reference")
    for lib, trace, s in _matmul_random(N, N, N, n_matmul, seed):
        add(f"mm_s{s}", wl, lib, specs, 2 * N**3, 4 * N * N * 2, "ms_random", {}, s, trace)
    with open(os.path.join(dest, "manifest.jsonl"), "w") as f:
        for e in man:
            f.write(json.dumps(e) + "\n")
    return dest


def pack(bundle_dir: str, out: str) -> str:
    with tarfile.open(out, "w:xz") as tf:
        tf.add(bundle_dir, arcname=os.path.basename(bundle_dir.rstrip("/")))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="GPU-machine launcher and carry helpers")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("launcher")
    c = sub.add_parser("command")
    c.add_argument("--bundle", required=True)
    c.add_argument("--budget-s", type=int, default=400)
    c.add_argument("--ncu-budget-s", type=int, default=90)
    c.add_argument("--tag", default="")
    c.add_argument("--ncu-first", type=int, default=0)
    c.add_argument("--extra", default="", help="more gpu_run.py options")
    c.add_argument("--resume-from", default="")
    sub.add_parser("runtime")
    sub.add_parser("wheel")
    s = sub.add_parser("smoke-bundle")
    s.add_argument("dest")
    s.add_argument("--n-matmul", type=int, default=12)
    s.add_argument("--pack", help="also write this .tar.xz")
    a = p.parse_args(argv)
    if a.cmd == "launcher":
        print(launcher(), end="")
    elif a.cmd == "command":
        print(measure_command(a.bundle, budget_s=a.budget_s, tag=a.tag, ncu_first=a.ncu_first,
                              extra=a.extra, resume_from=a.resume_from, ncu_budget_s=a.ncu_budget_s), end="")
        print(f"# carry: {CARRY + [a.bundle]}")
    elif a.cmd == "runtime":
        t = make_runtime()
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(t) for f in fs)
        print(f"{t}: {size / 1e6:.1f} MB")
    elif a.cmd == "wheel":
        fetch_wheel()
    elif a.cmd == "smoke-bundle":
        t0 = time.time()
        build_smoke_bundle(a.dest, a.n_matmul)
        if a.pack:
            pack(a.dest, a.pack)
        print(f"bundle {a.dest} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
