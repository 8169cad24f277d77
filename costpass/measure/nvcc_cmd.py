"""How the measuring code compiles a kernel's CUDA source into a cubin: one command for every place that does
it (bundles here, ``gpu_run.py`` and ``compile_missing.sh`` on the GPU machine, the tuning runner's cubin cache,
the RPC runner's host).

TVM's own build-time compile differs (NVRTC with ``--use_fast_math`` and ``--register-usage-level=10``,
``tvm/support/nvcc.py``), and one kernel's time can differ by 1.5x between the two builds
(``datasets/tuning/h100_r1/compile_path/README.md``): compare measurements of one build only. No TVM import
here: ``gpu_run.py`` uses this module beside runtime-only TVM, also as a plain sibling file.

    python3 -m costpass.measure.nvcc_cmd     # prints FLAGS, for shell scripts
"""
from __future__ import annotations

import os
import shutil

FLAGS = ("-O3", "-cubin")


def build_of(folder: str | None) -> dict:
    """How the cubins of ``folder`` (a bundle, a cubin cache) were made: its ``BUILD.json`` (written by
    ``tvm_build.py``: TVM's own compile) when it has one, else this module's nvcc command."""
    p = os.path.join(folder, "BUILD.json") if folder else None
    if p and os.path.exists(p):
        import json

        with open(p) as f:
            return json.load(f)
    return {"compiler": "nvcc", "flags": list(FLAGS)}


def find() -> str:
    """``$NVCC``, else nvcc on PATH, else ``/usr/local/cuda/bin/nvcc`` when it exists, else ``"nvcc"``."""
    if os.environ.get("NVCC"):
        return os.environ["NVCC"]
    found = shutil.which("nvcc")
    if found:
        return found
    return "/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else "nvcc"


def command(src, out, arch: str, nvcc: str | None = None, extra=()) -> list:
    """The nvcc command line that compiles ``src`` (a .cu file) into the cubin ``out`` for ``arch``; ``extra``:
    flags beyond the measuring code's (experiments such as ``benchmarks/build_flags_probe.py`` only)."""
    return [nvcc or find(), *FLAGS, *extra, f"-arch={arch}", "-o", str(out), str(src)]


if __name__ == "__main__":
    print(" ".join(FLAGS))
