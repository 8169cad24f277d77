"""`costpass predict` and `costpass evaluate`: thin shells over costpass.metaschedule and the evaluation.

    costpass predict --gpu h100 --input IN.jsonl --output OUT.jsonl [--model PATH|none]
    costpass evaluate [--gpus h100,h200] [evaluation options...]

predict: each input line is {"id": ..., "tir": "<TVMScript of a scheduled IRModule whose kernel function is
main>"} (more fields are ignored); each output line is {"id", "latency_ms", "ceiling_ms", "bottleneck",
"estimate_ms"} or {"id", "error"}. A line that cannot be predicted does not stop the others; the exit code
is 0 when anything was predicted, 2 when nothing was.
"""
from __future__ import annotations

import json
import os
import sys

from .cli import CLIError, _first_line, load_gpus, parse_tvmscript, progress


def _add_predict(sub):
    p = sub.add_parser("predict", help="latency of scheduled modules (JSONL in, JSONL out)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--gpu", default="h100")
    p.add_argument("--input", required=True, help="JSONL file ({'id', 'tir'} per line), or - for stdin")
    p.add_argument("--output", required=True, help="JSONL file to write, or - for stdout")
    p.add_argument("--model", default=None, help="a costpass model file (default: the shipped one for --gpu; "
                                                 "'none': the analytical estimate alone)")
    return p


def _predict_line(line: str, gpu, model_path):
    from . import bounds, demand
    from .metaschedule import predict as predict_ms
    rec = json.loads(line)
    if not isinstance(rec, dict) or "tir" not in rec:
        raise ValueError("a line needs an object with a 'tir' field")
    mod = parse_tvmscript(rec["tir"], f"id {rec.get('id')}")
    ds = demand.extract(mod)
    bs = [bounds.analyze(d, gpu) for d in ds]
    out = {"id": rec.get("id"), "latency_ms": predict_ms(mod, gpu, model_path)}
    out["estimate_ms"] = sum(b.estimate_us for b in bs) / 1e3
    out["ceiling_ms"] = sum(b.ceiling_us for b in bs) / 1e3
    out["bottleneck"] = max(bs, key=lambda b: b.estimate_us).bottleneck
    return out


def _run_predict(args) -> int:
    gpu = load_gpus(args.gpu)[0]
    try:
        src = sys.stdin if args.input == "-" else open(args.input)
    except OSError as err:
        raise CLIError(f"cannot read {args.input}: {_first_line(err)}") from None
    lines = [line for line in src.read().splitlines() if line.strip()]
    if not lines:
        raise CLIError(f"{args.input}: no input lines")
    done = failed = 0
    out = sys.stdout if args.output == "-" else open(args.output + ".tmp", "w")
    for n, line in enumerate(progress(lines, len(lines), "predict"), 1):
        try:
            rec = _predict_line(line, gpu, args.model)
            done += 1
        except Exception as err:  # noqa: BLE001 - one bad line must not stop the rest
            rid = None
            try:
                rid = json.loads(line).get("id")
            except Exception:  # noqa: BLE001
                pass
            rec = {"id": rid, "error": f"line {n}: {_first_line(err)}"}
            failed += 1
        out.write(json.dumps(rec) + "\n")
        out.flush()
    if out is not sys.stdout:
        out.close()
        os.replace(args.output + ".tmp", args.output)
    print(f"costpass: {done} predicted, {failed} failed", file=sys.stderr)
    return 0 if done else 2


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="leave-workload-out evaluation of the cost models on datasets/",
                       add_help=False)
    p.add_argument("rest", nargs="*")
    return p


def _run_evaluate(args) -> int:
    """Runs benchmarks/evaluate.py of this source checkout with the remaining arguments."""
    import importlib.util
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(repo, "benchmarks", "evaluate.py")
    if not os.path.exists(path):
        raise CLIError("costpass evaluate needs the source checkout (benchmarks/evaluate.py and datasets/)")
    spec = importlib.util.spec_from_file_location("costpass_benchmarks_evaluate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return int(mod.main(args.rest) or 0)


def register_commands(register):
    register("predict", _add_predict, _run_predict)
    register("evaluate", _add_evaluate, _run_evaluate)
