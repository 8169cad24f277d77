"""What does MetaSchedule's builder hand the runner, compared with a bundle's library of the same schedule?

Stop 12 found a tuning run's artifact of the SiLU schedule running at 17.7 us beside the re-timing bundle's
library of it at 25.1 us (same process, same runner). Stop 13's flag probe (``build_flags_probe.py``) then found
that compiling the bundle's CUDA source with TVM's own flags, through NVRTC or nvcc, does not change its time.
This probe, on the GPU machine with the full TVM wheel, rebuilds each schedule of a bundle (``trace_json``) with
the tuning runs' build function (``ms_gpu.build_and_compile``) while TVM's own ``tvm_callback_cuda_compile`` is
wrapped so that every source it compiles and every cubin it returns is kept, then times the artifact and the
bundle's library side by side (gpu_run's CUDA-event method, 3 medians each).

    python3 benchmarks/artifact_probe.py --bundle DIR [--ids a,b] --out DIR   # DIR/rows.jsonl, sources, cubins
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--ids", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    import torch
    import tvm
    import tvm_ffi
    from tvm.support import nvcc as tvm_nvcc

    from costpass.measure import bundle as B
    from costpass.measure import gpu_run as G
    from costpass.measure import ms_gpu
    from costpass.measure.build import cuda_target
    from costpass.measure.candidates import apply_trace
    from schedules import workloads as W

    torch.cuda.init()
    G._TVM = tvm   # gpu_run's loader, without its compile callback (TVM's own, wrapped below, stays)
    out = Path(a.out)
    (out / "src").mkdir(parents=True, exist_ok=True)
    (out / "cubin").mkdir(parents=True, exist_ok=True)
    seen = []

    @tvm_ffi.register_global_func("tvm_callback_cuda_compile", override=True)
    def _wrapped(code, *_rest):   # TVM's own callback, recorded
        code = str(code)
        cur = tvm.target.Target.current(allow_none=True)
        cub = bytes(tvm_nvcc.tvm_callback_cuda_compile(code))
        (out / "src" / f"{sha(code.encode())}.cu").write_text(code)
        (out / "cubin" / f"{sha(code.encode())}.cubin").write_bytes(cub)
        seen.append({"src": sha(code.encode()), "cubin": sha(cub), "target": str(cur) if cur else None})
        return cub

    keep = set(filter(None, a.ids.split(",")))
    entries = [e for e in B.read_manifest(a.bundle) if not keep or e["id"] in keep]
    clocks = G.read_clocks()
    with open(out / "rows.jsonl", "w") as f:
        for e in entries:
            row = {"id": e["id"], "workload": e["workload"], "bundle_src": e.get("cuda_sha256"), "clocks": clocks,
                   "tuning_ms": (e.get("extra") or {}).get("tuning_ms")}
            try:
                n0 = len(seen)
                rt = ms_gpu.build_and_compile(apply_trace(W.get(e["workload"]), e["trace_json"]).mod, cuda_target())
                row["artifact_compiles"] = seen[n0:]
                art = out / f"{e['id']}.so"
                rt.export_library(str(art))
                libs = {"artifact": str(art), "bundle": G.entry_lib(a.bundle, e)}
                args = G.Workload(e["workload"], e, seed=0).args
                for name, path in libs.items():
                    n1 = len(seen)
                    mod, fn = G.load_entry(path, e.get("entry", "main"))
                    row[f"{name}_load_compiles"] = seen[n1:]
                    fn(*args)
                    row[f"{name}_ms_x3"] = [statistics.median(G.time_fn(fn, args)["times"]) for _ in range(3)]
                    del mod, fn
                art.unlink()
            except Exception as ex:  # noqa: BLE001 - one schedule failing must not stop the others
                row["error"] = f"{type(ex).__name__}: {ex}"[:800]
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(e["id"], e["workload"], {k: [round(x * 1e3, 1) for x in v] for k, v in row.items()
                                           if k.endswith("_ms_x3")}, row.get("error", "")[:200], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
