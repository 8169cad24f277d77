"""`costpass tune`: a thin shell over costpass.tune (MetaSchedule search with a chosen cost model).

    costpass tune WORKLOAD --work-dir DIR [--cost-model costpass|xgb|random] [--trials 64] [--seed 0]
                  [--gpu h100] [--model PATH] [--runner local|rpc|model] [--json]

--runner local: MetaSchedule's LocalRunner on this machine's GPU (nvcc compiles in the builder, see
costpass/measure/ms_gpu.py); rpc: MetaSchedule's RPCRunner through a TVM RPC tracker (--tracker
HOST:PORT --key KEY); model: zero-shot, no GPU: costpass's predicted time stands in for each measurement
and the best record is the schedule costpass picks with nothing measured. The MetaSchedule database in
--work-dir keeps every trial: a second call with the same --work-dir resumes and only runs what is left.
The local runner compares each candidate's output with the workload's reference kernel before timing it
and records a wrong one as failed (--no-check-outputs turns that off).
"""
from __future__ import annotations

import json
import sys

from .cli import CLIError, _first_line, load_gpus


def _add(sub):
    p = sub.add_parser("tune", help="tune a workload with MetaSchedule and a chosen cost model",
                       description=__doc__.split("\n\n")[1], formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("workload", help="a workload name of schedules/workloads.py")
    p.add_argument("--work-dir", required=True, help="MetaSchedule work dir (database, logs); reused to resume")
    p.add_argument("--cost-model", default="costpass", choices=("costpass", "xgb", "random"))
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--per-iter", type=int, default=32, help="trials measured per search round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", default="h100")
    p.add_argument("--model", default=None, help="costpass model file (default: the shipped one for --gpu)")
    p.add_argument("--runner", default="local", choices=("local", "rpc", "model"))
    p.add_argument("--tracker", default=None, help="HOST:PORT of a TVM RPC tracker (--runner rpc)")
    p.add_argument("--key", default=None, help="device key at the tracker (--runner rpc)")
    p.add_argument("--population", type=int, default=512)
    p.add_argument("--no-check-outputs", action="store_true",
                   help="--runner local: time candidates without comparing their output with the reference kernel")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _builder_runner(args):
    from . import tune as T
    from .measure import ms_gpu

    if args.runner == "model":
        return T.model_builder_runner(args.gpu, args.model)
    if args.runner == "rpc":
        if not args.tracker or not args.key or ":" not in args.tracker:
            raise CLIError("--runner rpc needs --tracker HOST:PORT and --key KEY")
        from tvm.s_tir import meta_schedule as ms

        host, port = args.tracker.rsplit(":", 1)
        rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=args.key,
                                  session_timeout_sec=120)
        return ms_gpu.gpu_builder(), ms.runner.RPCRunner(rpc_config=rpc)
    check = None
    if not args.no_check_outputs:
        try:
            check = ms_gpu.output_check(args.workload, args.work_dir)
        except Exception as err:  # noqa: BLE001  (a reference that does not build, a work dir not writable)
            raise CLIError(f"cannot build the reference kernel of {args.workload} for the output check: "
                           f"{type(err).__name__}: {_first_line(err)} (--no-check-outputs tunes without it)") from None
    return ms_gpu.gpu_builder(), ms_gpu.gpu_runner(check=check)


def _run(args) -> int:
    from schedules import workloads as W

    from . import tune as T

    load_gpus(args.gpu)  # unknown GPU -> one-line error
    try:
        W.get(args.workload)
    except KeyError as err:
        raise CLIError(str(err.args[0]) if err.args else f"unknown workload {args.workload!r}") from None
    if args.trials < 1:
        raise CLIError("--trials must be at least 1")
    builder, runner = _builder_runner(args)
    cfg = T.TuneConfig(workload=args.workload, work_dir=args.work_dir, gpu=args.gpu, cost_model=args.cost_model,
                       trials=args.trials, trials_per_iter=args.per_iter, seed=args.seed, model_path=args.model,
                       population=args.population)
    res = T.tune(cfg, builder, runner)
    if args.json:
        json.dump(res.to_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        kind = "predicted (zero-shot, nothing measured)" if args.runner == "model" else "measured"
        print(f"{res.workload}: {res.trials} trials with {res.cost_model} ({res.failed} failed), "
              f"best {kind}: {res.best_ms if res.best_ms is None else f'{res.best_ms:.4f} ms'}, "
              f"{res.wall_s:.0f} s; database in {args.work_dir}")
    return 0 if res.best_ms is not None else 2


def register_commands(register):
    register("tune", _add, _run)
