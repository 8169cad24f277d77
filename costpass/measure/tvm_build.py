"""Compile a bundle's CUDA sources as TVM itself does, so that what is measured is what TVM deploys.

TVM's build calls the global ``tvm_callback_cuda_compile`` (``tvm/support/nvcc.py``: NVRTC by default, with
``--use_fast_math`` and ``--ptxas-options=--register-usage-level=10``). The measuring code's own command
(``nvcc_cmd``: ``nvcc -O3``) makes different code: on the H100 the same CUDA source ran up to 1.5x slower that
way (benchmarks/results/build_path.md). Run where TVM's compile works: the GPU machine with the full TVM wheel,
or this CPU machine with ``cuda-bindings`` and ``nvidia-cuda-nvrtc==13.0.88`` (``CUDA_PATH`` naming the CUDA 13.0
toolkit; its cubins are byte for byte the GPU machine's). Every CUDA source of the bundle (``sources/*.cu`` and the sources embedded in
``libs/*.so``) is compiled by TVM's own callback, in parallel, into ``cubins/<sha256>.cubin`` (the caller empties
``cubins/`` first: ``tvm_round.sh``), and ``BUILD.json`` records how, once every source is done; ``gpu_run.py`` copies it into every record's ``build``.

    python3 -m costpass.measure.tvm_build BUNDLE_DIR [--jobs 16]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def bundle_sources(bundle: str) -> dict:
    """sha256 -> CUDA source of every kernel of the bundle (``sources/`` and the libraries' payloads)."""
    from .bundle import library_cuda_sources

    out = {}
    for p in sorted(Path(bundle, "sources").glob("*.cu")) if Path(bundle, "sources").is_dir() else []:
        out[p.stem] = p.read_text()
    for lib in sorted(Path(bundle, "libs").glob("*.so")):
        try:
            codes = library_cuda_sources(lib)
        except ValueError:      # its CUDA module holds a compiled binary already: nothing to compile
            continue
        for code in codes:
            out.setdefault(hashlib.sha256(code.encode("utf-8")).hexdigest(), code)
    return out


def _compile_one(job) -> tuple:
    """(sha, None) or (sha, error): TVM's ``tvm_callback_cuda_compile`` on one source, written atomically."""
    sha, code, dst, arch = job
    try:
        import tvm
        from tvm.support import nvcc as tvm_nvcc

        with tvm.target.Target({"kind": "cuda", "arch": arch}):   # the bundle's arch, as its build had it
            data = bytes(tvm_nvcc.tvm_callback_cuda_compile(code))
        tmp = f"{dst}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
        return sha, None
    except Exception as e:  # noqa: BLE001 - one failing source is recorded, the others go on
        return sha, f"{type(e).__name__}: {str(e)[-600:]}"


def describe() -> dict:
    """What ``BUILD.json`` says: TVM's compile mode, its version and the compiler's version."""
    import tvm
    from tvm.support import nvcc as tvm_nvcc

    mode = os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").lower()
    d = {"compiler": "tvm", "callback": "tvm.support.nvcc.tvm_callback_cuda_compile", "mode": mode,
         "tvm_version": tvm.__version__, "ptxas_options": tvm_nvcc._ptxas_option_flags(),
         "fast_math": mode == "nvrtc" or not os.environ.get("TVM_CUDA_NVCC_NO_FAST_MATH")}
    try:
        from cuda.bindings import nvrtc

        _, major, minor = nvrtc.nvrtcVersion()
        d["nvrtc_version"] = f"{major}.{minor}"
    except Exception:  # noqa: BLE001 - nvcc mode needs no NVRTC
        pass
    d["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return d


def build(bundle: str, jobs: int = 16, arch: str = "sm_90a", compile_one=_compile_one, info: dict | None = None) -> dict:
    """Compile every source of ``bundle`` with TVM's callback into ``cubins/``; write ``BUILD.json``.
    ``compile_one`` / ``info``: a stand-in compiler (a top-level function, run in worker processes) and its
    description, for tests."""
    done_marker = Path(bundle, "BUILD.json")
    if done_marker.exists():
        return json.loads(done_marker.read_text())
    cub = Path(bundle, "cubins")
    cub.mkdir(exist_ok=True)
    info = dict(info) if info is not None else describe()
    srcs = bundle_sources(bundle)
    t0 = time.time()
    # a cubin already there is TVM's from an interrupted run: the caller empties cubins/ before the first one
    jobs_list = [(sha, code, str(cub / f"{sha}.cubin"), arch) for sha, code in srcs.items()
                 if not (cub / f"{sha}.cubin").exists()]
    failed = {}
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        for sha, err in pool.map(compile_one, jobs_list, chunksize=4):
            if err:                      # nothing was written for it: gpu_run finds no cubin, never another one
                failed[sha] = err
    info.update(arch=arch, sources=len(srcs), failed=len(failed), compile_s=round(time.time() - t0, 1))
    Path(bundle, "BUILD_failures.json").write_text(json.dumps(failed, indent=1))
    done_marker.write_text(json.dumps(info, indent=1))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--arch", default="sm_90a", help="the bundle's target arch (default sm_90a)")
    a = ap.parse_args(argv)
    if not Path(a.bundle, "libs").is_dir() and not Path(a.bundle, "sources").is_dir():
        print(f"tvm_build: error: {a.bundle} is not a bundle (no libs/ or sources/)", file=sys.stderr)
        return 2
    try:
        info = build(a.bundle, a.jobs, a.arch)
    except ImportError as e:
        print(f"tvm_build: error: TVM's compile is not available here ({e}); it needs the full TVM wheel",
              file=sys.stderr)
        return 2
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
