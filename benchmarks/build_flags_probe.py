"""Which compiler flag makes TVM's build of a kernel faster or slower than the measuring code's? (datasets/
tuning/h100_r1/compile_path/README.md: MetaSchedule's builder compiles with NVRTC, ``--use_fast_math`` and
``--register-usage-level=10``; the measuring code with ``nvcc -O3``; SiLU runs 17 vs 25 us.)

For each kernel of a bundle (``--ids``) and each named flag set (``--flags``), the library is loaded again
with a compile callback that runs ``nvcc -O3 -cubin -arch=<gpu> <flags>`` on its CUDA source (so no
``sources/`` folder is needed), and timed by gpu_run.py's CUDA-event method (median, 3 times); the cubin's
registers per thread come from ``cuobjdump -res-usage``. With the full TVM wheel, the set ``tvm`` compiles
with TVM's own ``tvm.support.nvcc.compile_cuda`` (its NVRTC default). One JSON line per (kernel, flag set).

    python3 benchmarks/build_flags_probe.py --bundle DIR --ids a,b --out rows.jsonl
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costpass.measure import gpu_run as G  # noqa: E402
from costpass.measure import nvcc_cmd as N  # noqa: E402

FLAG_SETS = "default=;fast_math=--use_fast_math;reg_level=--ptxas-options=--register-usage-level=10;" \
            "tvm_nvcc=--use_fast_math --ptxas-options=--register-usage-level=10;tvm="


def registers(cubin: bytes) -> int | None:
    """Registers per thread of the cubin's first kernel (cuobjdump -res-usage), None if unknown."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        tool = shutil.which("cuobjdump") or "/usr/local/cuda/bin/cuobjdump"
        try:
            out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
        except OSError:
            return None
    m = re.search(r"REG:(\d+)", out)
    return int(m.group(1)) if m else None


class FlagCompile:
    """``tvm_callback_cuda_compile`` with switchable flags; remembers the last cubin it made."""

    def __init__(self, arch: str, workdir: str):
        self.arch, self.workdir, self.name, self.flags, self.last = arch, workdir, "default", [], None
        self.prebuilt = None

    def __call__(self, code, *_rest):
        code = str(code)
        if self.prebuilt:                              # cubins built elsewhere, named by the source's sha256
            self.last = (Path(self.prebuilt) / f"{hashlib.sha256(code.encode()).hexdigest()}.cubin").read_bytes()
            return self.last
        if self.name == "tvm":
            from tvm.support import nvcc as tvm_nvcc   # full wheel only
            self.last = bytes(tvm_nvcc.compile_cuda(code, "cubin", arch=self.arch))
            return self.last
        h = hashlib.sha256((code + "\0" + " ".join(self.flags)).encode()).hexdigest()[:24]
        src, out = os.path.join(self.workdir, f"{h}.cu"), os.path.join(self.workdir, f"{h}.cubin")
        if not os.path.exists(out):
            Path(src).write_text(code)
            r = subprocess.run(N.command(src, out, self.arch, extra=self.flags), capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc {' '.join(self.flags)} failed: {r.stderr[-800:]}")
        self.last = Path(out).read_bytes()
        return self.last


def parse_flag_sets(text: str) -> list:
    """"name=flags;name=flags" -> [(name, [flag, ...])]; ``name=@DIR``: prebuilt cubins ``DIR/<sha256>.cubin``;
    ``name=%DIR``: the kernel's library ``DIR/<id>.so`` instead of the bundle's (e.g. a builder's artifacts)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, flags = part.partition("=")
        out.append((name.strip(), shlex.split(flags)))
    return out


def prebuild(sources: str, out: str, compiler: str, arch: str = "sm_90a") -> int:
    """Compile every ``sources/<sha256>.cu`` with TVM's own ``compile_cuda`` (``compiler``: ``nvrtc``, TVM's
    default, or ``nvcc``, its nvcc command line) into ``out/<sha256>.cubin``; needs the full TVM wheel (and
    cuda-bindings for NVRTC). Returns how many were compiled."""
    import tvm
    from tvm.support import nvcc as tvm_nvcc

    Path(out).mkdir(parents=True, exist_ok=True)
    n = 0
    with tvm.target.Target({"kind": "cuda", "arch": arch}):
        for src in sorted(Path(sources).glob("*.cu")):
            dst = Path(out) / f"{src.stem}.cubin"
            if not dst.exists():
                dst.write_bytes(bytes(tvm_nvcc.compile_cuda(src.read_text(), "cubin", arch=arch, compiler=compiler)))
                n += 1
    return n


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "prebuild":
        ap = argparse.ArgumentParser(description=prebuild.__doc__.split("\n")[0])
        ap.add_argument("--sources", required=True)
        ap.add_argument("--out", required=True)
        ap.add_argument("--compiler", choices=("nvrtc", "nvcc"), default="nvrtc")
        a = ap.parse_args(sys.argv[2:])
        print(prebuild(a.sources, a.out, a.compiler), "compiled")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--flags", default=FLAG_SETS, help=f"name=flags;... (default {FLAG_SETS!r})")
    ap.add_argument("--once", action="store_true", help="launch each kernel once, untimed (under Nsight Compute)")
    a = ap.parse_args(argv)

    import torch

    torch.cuda.init()   # the CUDA context before TVM loads kernels

    keep = a.ids.split(",")
    entries = [e for e in G.read_manifest(a.bundle) if e["id"] in keep]
    with tempfile.TemporaryDirectory() as tmp:
        cc = FlagCompile(G.device_arch(), tmp)
        G.setup_tvm(cc)
        clocks = G.read_clocks()
        with open(a.out, "w") as out:
            for e in entries:
                for name, flags in parse_flag_sets(a.flags):
                    cc.name, cc.flags = name, flags
                    cc.prebuilt = flags[0][1:] if len(flags) == 1 and flags[0].startswith("@") else None
                    row = {"id": e["id"], "workload": e["workload"], "flag_set": name, "flags": flags, "clocks": clocks}
                    lib = G.entry_lib(a.bundle, e)
                    if len(flags) == 1 and flags[0].startswith("%"):
                        lib = os.path.join(flags[0][1:], f"{e['id']}.so")
                    # a fresh path per set: loading one .so path twice in a process reuses the first load's kernel
                    # handle (cached in the library's statics), whatever the callback compiles the second time
                    fresh = os.path.join(tmp, f"{name}_{e['id']}.so")
                    shutil.copy(lib, fresh)
                    lib = fresh
                    try:
                        mod, fn = G.load_entry(lib, e.get("entry", "main"))
                        args = G.Workload(e["workload"], e, seed=0).args
                        fn(*args)
                        if a.once:
                            torch.cuda.synchronize()
                            row["launched_once"] = True
                            out.write(json.dumps(row) + "\n")
                            continue
                        row["median_ms_x3"] = [statistics.median(G.time_fn(fn, args)["times"]) for _ in range(3)]
                        row["registers"] = registers(cc.last) if cc.last else None
                        del mod, fn
                    except Exception as ex:  # noqa: BLE001 - one flag set failing must not stop the others
                        row["error"] = f"{type(ex).__name__}: {ex}"[:500]
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{e['id']} {e['workload']:24s} {name:10s} "
                          + (" ".join(f"{x * 1e3:7.1f}" for x in row["median_ms_x3"]) + f" us  regs {row['registers']}"
                             if "median_ms_x3" in row else row["error"][:120]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
