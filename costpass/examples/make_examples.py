"""Regenerate the shipped examples (TVMScript of one scheduled candidate per workload + a JSON naming it).

    python -m costpass.examples.make_examples [--n 48] [--seed 7] [--evolve 0] [--gpu h100] [NAME ...]

For each workload: draw ``n`` random candidates from MetaSchedule's default CUDA design space
(``costpass.measure.candidates.random_candidates``, fixed seed), optionally ``evolve`` more with
MetaSchedule's evolutionary search guided by the analytical estimate, lower each, and keep the one
with the lowest analytical estimate (``costpass.bounds``) on ``gpu``. The choice is a model's, not a
measurement: the JSON says so.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

EXAMPLES = {
    # file stem: (workload, description)
    "gemm_llama3_8b_o_proj_fp16": (
        "llama3_8b_o_proj_fp16",
        "Llama-3-8B attention output projection at prefill: Y[512,4096] = X[512,4096] @ W[4096,4096]^T, "
        "fp16 in, fp32 accumulate, tensor cores (wmma)"),
    "softmax_attn_fp32": (
        "softmax_attn_fp32",
        "row softmax of Llama-3-8B attention scores at prefill: 32 heads x 512 queries, 512 keys, fp32"),
}


def _estimate(mod, gpu, target):
    from costpass import bounds, demand
    ds = demand.extract(mod, target=target)
    bs = [bounds.analyze(d, gpu) for d in ds]
    return sum(b.estimate_us for b in bs), ds


class _AnalyticalModel:
    """MetaSchedule cost model scoring candidates by 1 / analytical estimate (higher is better)."""

    def __new__(cls, gpu, target):
        from tvm.ir.utils import derived_object
        from tvm.s_tir import meta_schedule as ms

        @derived_object
        class Model(ms.cost_model.PyCostModel):
            def load(self, path):
                pass

            def save(self, path):
                pass

            def update(self, context, candidates, results):
                pass

            def predict(self, context, candidates):
                import numpy as np
                out = []
                for c in candidates:
                    try:
                        est, _ = _estimate(c.sch.mod, gpu, target)
                        out.append(1.0 / est)
                    except Exception:  # noqa: BLE001 - a candidate that does not lower scores 0
                        out.append(0.0)
                return np.array(out, dtype="float64")

        return Model()


def make(stem, n, seed, evolve, gpu_name, log=print):
    from costpass import cli, demand, spec
    cli.preload_tensor_intrinsics()
    from costpass.measure import candidates as C
    from schedules import workloads as W

    wl_name, desc = EXAMPLES[stem]
    wl = W.get(wl_name)
    gpu = spec.load(gpu_name)
    target = demand.default_target(gpu.arch)
    t0 = time.time()
    cands = C.random_candidates(wl, target, n, seed=seed)
    log(f"{stem}: {len(cands)} random candidates in {time.time() - t0:.0f} s")
    if evolve:
        t1 = time.time()
        ev = C.evolved_candidates(wl, target, evolve, seed=seed, cost_model=_AnalyticalModel(gpu, target),
                                  exclude={c.id for c in cands}, population_size=64, per_round=16)
        log(f"{stem}: {len(ev)} evolved candidates in {time.time() - t1:.0f} s")
        cands += ev
    scored = []
    for c in cands:
        sch = C.apply_trace(wl, c.trace_json)
        try:
            est, ds = _estimate(sch.mod, gpu, target)
        except Exception as err:  # noqa: BLE001
            log(f"  {c.id}: does not lower ({err})")
            continue
        scored.append((est, c, sch, ds))
        log(f"  {c.id} {c.origin:8s} estimate {est:9.1f} us  kernels {len(ds)}")
    scored.sort(key=lambda x: x[0])
    est, c, sch, ds = scored[0]
    ests = sorted(x[0] for x in scored)
    text = sch.mod.script()
    header = (f"# costpass example: {desc}\n"
              f"# workload {wl_name} (schedules/workloads.py); candidate {c.id} ({c.origin}, seed {c.seed}).\n"
              f"# Chosen as the lowest analytical estimate on {gpu_name} ({est:.1f} us) among {len(scored)} "
              f"MetaSchedule candidates\n# (median {ests[len(ests) // 2]:.1f} us). Regenerate: "
              f"python -m costpass.examples.make_examples {stem}\n")
    with open(os.path.join(HERE, f"{stem}.py"), "w") as f:
        f.write(header + text)
    meta = {
        "name": stem, "workload": wl_name, "description": desc, "file": f"{stem}.py",
        "context": {"dtype": wl.dtype, "gemm_like": all(k in wl.params for k in ("M", "N", "K"))},
        "flops": wl.flops, "min_bytes": wl.min_bytes,
        "candidate": {"id": c.id, "origin": c.origin, "seed": c.seed, "space_index": c.space_index,
                      "trace": c.trace_json},
        "selection": {"by": "lowest analytical estimate (costpass.bounds)", "gpu": gpu_name,
                      "candidates": len(scored), "random": n, "random_seed": seed, "evolved": evolve,
                      "estimate_us": est, "median_estimate_us": ests[len(ests) // 2],
                      "worst_estimate_us": ests[-1]},
        "measured": None,
    }
    with open(os.path.join(HERE, f"{stem}.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log(f"{stem}: chose {c.id}, estimate {est:.1f} us (median {ests[len(ests) // 2]:.1f}, worst {ests[-1]:.1f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=list(EXAMPLES))
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--evolve", type=int, default=0)
    ap.add_argument("--gpu", default="h100")
    a = ap.parse_args(argv)
    for stem in a.names:
        make(stem, a.n, a.seed, a.evolve, a.gpu, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
