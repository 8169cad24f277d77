#!/usr/bin/env python3
"""What a CUDA-event pair around one launch reads beyond the kernel's own GPU time (GPU machine, torch only).

    python3 costpass/measure/event_offset.py --out event_offset.json [--commit SHA]

The learned model is fitted on calls timed one by one with an event pair (``gpu_run.time_fn``); the end-to-end
runs time each kernel with the torch profiler (CUPTI: the kernel's own duration) and the whole call with events
around back-to-back launches. To turn a learned per-call prediction into the kernel's own time, subtract what the
event pair adds. ``null_launch_ms`` (the event pair around a 1-element kernel) is that *plus* the tiny kernel's own
duration, so it overstates it. This script measures, for torch kernels from 1 element to tens of MB:

- ``event_us``: median of ``gpu_run.time_fn`` (the training measurements' method), 100 repeats;
- ``profiler_us``: the torch profiler's device time per call over ``--profile-iters`` calls (run_relax's method);
- ``stream_us``: events around ``--stream-calls`` launches queued back to back, per launch;
- ``event_over_kernel_us`` = ``event_us`` - ``profiler_us``, and its median over the sizes.

Writes one JSON file: the GPU as nvidia-smi reads it, date, commit, repeats and every size's figures.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SIZES = (1, 1024, 65536, 1 << 20, 1 << 23, 1 << 25)


def stream_us(fn, calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of (events around ``calls`` back-to-back launches) / calls."""
    import torch
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    per = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        s.record()
        for _ in range(calls):
            fn()
        e.record()
        e.synchronize()
        per.append(s.elapsed_time(e) * 1e3 / calls)
    return statistics.median(per)


def measure(sizes=SIZES, repeats: int = 100, profile_iters: int = 200, stream_calls: int = 200,
            sm_mhz: float = 1980.0) -> list:
    import torch
    import gpu_run as G
    from run_relax import profiler_us
    rows = []
    for n in sizes:
        x = torch.zeros(n, device="cuda")
        fn = lambda: x.add_(1.0)  # noqa: E731
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        ev = G.time_fn(fn, [], target_ms=0.0, min_rep=repeats, max_rep=repeats, sm_mhz=sm_mhz)
        event = statistics.median(ev["times"]) * 1e3
        prof = sum(profiler_us(fn, profile_iters).values())
        rows.append({"elements": n, "bytes": 8 * n, "event_us": round(event, 4), "event_method": ev.get("method"),
                     "event_repeats": len(ev["times"]), "profiler_us": round(prof, 4),
                     "profile_iters": profile_iters, "stream_us": round(stream_us(fn, stream_calls), 4),
                     "stream_calls": stream_calls, "event_over_kernel_us": round(event - prof, 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--profile-iters", type=int, default=200)
    ap.add_argument("--stream-calls", type=int, default=200)
    a = ap.parse_args(argv)
    import torch
    from run_relax import nvidia_smi
    if not torch.cuda.is_available():
        print("event_offset: no CUDA GPU here", file=sys.stderr)
        return 2
    before = nvidia_smi()
    mhz = float(str(before.get("clocks.max.sm", "1980")).split()[0] or 1980)
    rows = measure(repeats=a.repeats, profile_iters=a.profile_iters, stream_calls=a.stream_calls, sm_mhz=mhz)
    out = {"gpu_info": {"before": before, "after": nvidia_smi(), "torch": torch.__version__,
                        "device": torch.cuda.get_device_name(0)},
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "commit": a.commit,
           "code": "costpass/measure/event_offset.py", "sizes": rows,
           "event_over_kernel_us_median": round(statistics.median(r["event_over_kernel_us"] for r in rows), 4)}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("event_over_kernel_us median", out["event_over_kernel_us_median"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
