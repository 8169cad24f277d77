"""`costpass compile`: tune a Relax model with MetaSchedule and costpass, build it, report per kernel.

    costpass compile [MODEL] [--config llama3-8b|tiny] [--shape decode|prefill] [--kv N] [--seq N] [--batch N]
                     [--gpu h100[,h200]] [--runner none|local] [--trials N] [--work-dir DIR] [-o LIB.so]
                     [--json] [--plot FILE.png]

MODEL is ``llama_block`` (default: schedules/llama_block.py), a .py file defining build() -> Relax IRModule,
or a TVMScript file of a Relax IRModule. The first --gpu is tuned for; the others get predictions for the
same schedules. --runner local measures every candidate on this machine's GPU; --runner none (zero-shot)
measures nothing and records costpass's prediction instead. --trials counts all records of the model's
tasks in --work-dir's database, so running the same command again resumes an interrupted run.
See docs/compile.md.
"""
from __future__ import annotations

import argparse
import os
import sys

from .cli import CLIError, _first_line, _info, write_plot


def _add_compile(sub):
    p = sub.add_parser("compile", help="tune a Relax model for a GPU, build it, per-kernel diagnostics",
                       description=__doc__.split("\n\n", 2)[2].strip().replace("See docs/compile.md.", "")
                       + " See docs/compile.md.")
    p.add_argument("model", nargs="?", default="llama_block", metavar="MODEL",
                   help="llama_block (default), a .py file defining build(), or a Relax TVMScript file")
    g = p.add_argument_group("llama_block")
    g.add_argument("--config", default="llama3-8b", help="llama3-8b (default) or tiny")
    g.add_argument("--shape", default="decode", choices=("decode", "prefill"), help="default decode")
    g.add_argument("--kv", type=int, default=None, help="keys attended to, new token included (decode: 512)")
    g.add_argument("--seq", type=int, default=None, help="new tokens (decode: 1, prefill: 512)")
    g.add_argument("--batch", type=int, default=1)
    p.add_argument("--gpu", default="h100", help="GPUs, comma-separated; the first is tuned for (default h100)")
    p.add_argument("--runner", default="none", choices=("none", "local"),
                   help="none: zero-shot, costpass predictions stand in for measurements (default); "
                        "local: MetaSchedule's LocalRunner on this machine's GPU")
    p.add_argument("--trials", type=int, default=64, help="tuning records for the whole model (default 64; "
                                                          "0: no tuning, DLight's default schedules)")
    p.add_argument("--work-dir", default=None, help="MetaSchedule database and logs (required with --trials > 0)")
    p.add_argument("-o", "--output", default=None, help="write the library here (and the report to OUTPUT.json)")
    p.add_argument("--population", type=int, default=512, help="evolutionary search population (default 512)")
    p.add_argument("--genetic-iters", type=int, default=4, help="evolutionary search generations per round "
                                                              "(default 4)")
    p.add_argument("--trials-per-iter", type=int, default=64, help="candidates measured per task per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--builder-workers", type=int, default=None, help="--runner local: parallel builds + nvcc")
    p.add_argument("--model-file", dest="model_path", default=None,
                   help="costpass model file for the predictions (default: the shipped one per GPU; "
                        "'none': the analytical estimate)")
    p.add_argument("--keep-tuned", action="store_true",
                   help="use the tuned schedule even where DLight's is predicted faster")
    p.add_argument("--check-outputs", action=argparse.BooleanOptionalAction, default=None,
                   help="run each tuned kernel and DLight's schedule of it on this machine's GPU on the same "
                        "inputs; where the outputs differ, use DLight's (default: on with --runner local)")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    p.add_argument("--plot", default=None, help="bar chart of the per-kernel predictions (PNG)")
    p.add_argument("-v", "--verbose", action="store_true", help="MetaSchedule's progress on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    return p


def _run_compile(args) -> int:
    from . import compile as C

    try:
        gpus = C.load_gpus(args.gpu)
        model = C.load_model(args.model, config=args.config, shape=args.shape, batch=args.batch, seq=args.seq,
                             kv=args.kv)
    except C.CompileError as err:
        raise CLIError(_first_line(err)) from None
    if args.trials < 0:
        raise CLIError(f"--trials must be >= 0, not {args.trials}")
    if args.trials > 0 and not args.work_dir:
        raise CLIError("--trials > 0 needs --work-dir (where the MetaSchedule database lives)")
    for flag, v in (("--population", args.population), ("--trials-per-iter", args.trials_per_iter),
                    ("--genetic-iters", args.genetic_iters)):
        if v < 1:
            raise CLIError(f"{flag} must be >= 1, not {v}")
    for flag, path in (("--plot", args.plot), ("--output", args.output)):
        if path:
            d = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(d):
                raise CLIError(f"cannot write {flag} {path}: no such directory {d}")
    log = (lambda msg: None) if args.quiet else (lambda msg: _info(msg))
    try:
        opt = C.TuneOptions(population=args.population, genetic_iters=args.genetic_iters,
                            trials_per_iter=args.trials_per_iter, seed=args.seed,
                            builder_workers=args.builder_workers, verbose=args.verbose)
        report = C.compile_model(model, gpus, runner=args.runner, trials=args.trials, work_dir=args.work_dir,
                                 output=args.output, options=opt, model_path=args.model_path,
                                 keep_faster_default=not args.keep_tuned, check_outputs=args.check_outputs,
                                 log=log)
    except C.CompileError as err:
        raise CLIError(_first_line(err)) from None
    if args.json:
        sys.stdout.write(C.render_json(report) + "\n")
    else:
        sys.stdout.write(C.render_text(report))
    if args.output:
        _info(f"wrote {args.output} and {args.output}.json", args.quiet)
    if args.plot:
        write_plot(C.plot, report, args.plot, args.quiet)
    return 0


def register_commands(register):
    register("compile", _add_compile, _run_compile)
