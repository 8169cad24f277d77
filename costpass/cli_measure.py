"""``costpass measure`` and ``costpass data``: measuring candidates, and looking at measured datasets.

    costpass measure --workload NAME[,NAME] --candidates N [--evolved N] --gpu h100 --runner local|rpc
                     [--tracker HOST:PORT --key KEY] --out FILE.jsonl [--repeats 20] [--seed 0]
    costpass measure --bundle PATH [--budget-s S] [--ncu-first N] [--round]
    costpass data stats [--gpu NAME | PATHS...] [--json]
    costpass data show ID [--gpu NAME | PATHS...]

Found by ``costpass.cli``'s plugin discovery (``register_commands``). Module-level imports are the
standard library only: every ``costpass`` call imports this file.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

from .cli import PROG, CLIError, _first_line, _info, write_output


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------

MAX_WARNINGS = 20
STATUS_ABBR = {"build_error": "build_err", "load_error": "load_err", "run_error": "run_err",
               "timeout": "timeout", "wrong": "wrong"}


def _add_data(sub):
    p = sub.add_parser("data", help="measured datasets: per-workload statistics, one record",
                       description="Measured datasets (datasets/<gpu>/*.jsonl[.xz|.gz] or given files). "
                                   "Unreadable lines are reported as file:line on stderr and skipped; a file "
                                   "whose records name several GPUs is refused.")
    dsub = p.add_subparsers(dest="data_cmd", metavar="ACTION")
    s = dsub.add_parser("stats", help="records per GPU and workload: counts by status, best/median ms, noise",
                        description="Per GPU and workload: records (n), ok, failures by status, best_ms (lowest "
                                    "median of an ok candidate), med_ms (median of the ok candidates' medians), "
                                    "spread (worst/best), noise (median over ok candidates of (p90-p10)/median "
                                    "of their run times).")
    _add_sources(s)
    s.add_argument("--json", action="store_true", help="the statistics as JSON")
    w = dsub.add_parser("show", help="print the record(s) of one candidate id as JSON",
                        description="Print the record(s) of a candidate id (or a unique prefix of at least 4 "
                                    "characters) as JSON, one object per record.")
    w.add_argument("id", metavar="ID")
    _add_sources(w)
    return p


def _add_sources(p):
    p.add_argument("--gpu", help="the dataset of this GPU (datasets/<gpu>/)")
    p.add_argument("paths", nargs="*", metavar="PATHS", help="dataset files or folders (default: every "
                   "datasets/<gpu>/ folder)")


def _sources(args) -> list[str]:
    from . import data, spec
    if args.gpu and args.paths:
        raise CLIError("give --gpu NAME or PATHS, not both")
    if args.gpu:
        return [args.gpu]
    if args.paths:
        return list(args.paths)
    known = set(spec.available())
    found = []
    if os.path.isdir(data.DATASETS):
        found = [d for d in sorted(os.listdir(data.DATASETS))
                 if d in known and data.dataset_files(os.path.join(data.DATASETS, d))]
    if not found:
        raise CLIError(f"no dataset found in {data.DATASETS} (give --gpu NAME or PATHS)")
    return found


def _load_all(sources: list[str]):
    """[(source, records)], and the problems (file:line) met while reading."""
    from . import data
    from .measure.records import RecordWarning
    problems: list[str] = []
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)
        for src in sources:
            try:
                recs = data.load(src, problems=problems)
            except FileNotFoundError as err:
                raise CLIError(_first_line(err)) from None
            except data.DatasetError as err:
                _warn_problems(problems)
                raise CLIError(_first_line(err)) from None
            except (OSError, EOFError) as err:
                raise CLIError(f"cannot read {src}: {_first_line(err)}") from None
            out.append((src, recs))
    _warn_problems(problems)
    return out, problems


def _warn_problems(problems):
    sys.stdout.flush()
    for p in problems[:MAX_WARNINGS]:
        sys.stderr.write(f"{PROG}: warning: {p}\n")
    if len(problems) > MAX_WARNINGS:
        sys.stderr.write(f"{PROG}: warning: ... and {len(problems) - MAX_WARNINGS} more unreadable lines\n")


def _fmt(x, fmt):
    return "-" if x is None else format(x, fmt)


def format_stats_table(groups: list[tuple[str, list[dict]]]) -> str:
    """One block per GPU: a header line, then one row per workload and a total row."""
    lines = []
    for gpu, rows in groups:
        fails = [s for s in STATUS_ABBR if any(r["by_status"].get(s) for r in rows)]
        wlw = max([len("workload")] + [len(r["workload"]) for r in rows])
        hdr = f"{'workload':<{wlw}} {'n':>5} {'ok':>5}"
        hdr += "".join(f" {STATUS_ABBR[s]:>9}" for s in fails)
        hdr += f" {'best_ms':>10} {'med_ms':>10} {'spread':>7} {'noise':>6}"
        n = sum(r["n"] for r in rows)
        ok = sum(r["ok"] for r in rows)
        from .data import gpu_key
        lines.append(f"GPU {gpu} ({gpu_key(gpu) if gpu else '?'}): {n} records, {ok} ok, {len(rows)} workloads")
        lines += [hdr, "-" * len(hdr)]
        for r in rows:
            line = f"{r['workload']:<{wlw}} {r['n']:>5} {r['ok']:>5}"
            line += "".join(f" {r['by_status'].get(s, 0):>9}" for s in fails)
            line += (f" {_fmt(r['best_ms'], '.4f'):>10} {_fmt(r['median_of_medians_ms'], '.4f'):>10}"
                     f" {_fmt(r['spread'], '.1f'):>7} {_fmt(r['noise'], '.3f'):>6}")
            lines.append(line)
        tot = f"{'total':<{wlw}} {n:>5} {ok:>5}"
        tot += "".join(f" {sum(r['by_status'].get(s, 0) for r in rows):>9}" for s in fails)
        lines += ["-" * len(hdr), tot, ""]
    return "\n".join(lines).rstrip("\n")


def _run_data_stats(args) -> int:
    from . import data
    loaded, problems = _load_all(_sources(args))
    by_gpu: dict[str, list] = {}
    for src, recs in loaded:
        for row in data.stats(recs):
            by_gpu.setdefault(row["gpu"], []).append(dict(row, source=src))
    if args.json:
        rows = [r for rs in by_gpu.values() for r in rs]
        write_output(json.dumps({"rows": rows, "problems": problems,
                                 "sources": [s for s, _ in loaded]}, indent=1))
        return 0
    if not by_gpu:
        write_output("no records")
        return 0
    write_output(format_stats_table(sorted(by_gpu.items())))
    if problems:
        _info(f"{len(problems)} unreadable line{'s' if len(problems) != 1 else ''} skipped (see the warnings above)")
    return 0


def pretty_record(d: dict) -> str:
    """Indented JSON with lists of plain numbers on one line."""
    def simple_list(v):   # lists (nested too) of plain values: one line
        return isinstance(v, list) and all(simple_list(x) or isinstance(x, (int, float, str, bool, type(None)))
                                           for x in v)

    parts = []
    for k, v in d.items():
        if simple_list(v):
            text = json.dumps(v, separators=(", ", ":"))
        else:
            text = json.dumps(v, indent=2).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(k)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}"


def _run_data_show(args) -> int:
    loaded, _ = _load_all(_sources(args))
    want = args.id.strip()
    exact = [r for _, recs in loaded for r in recs if r.candidate_id == want]
    hits = exact
    if not hits and len(want) >= 4:
        hits = [r for _, recs in loaded for r in recs if r.candidate_id.startswith(want)]
        ids = sorted({r.candidate_id for r in hits})
        if len(ids) > 1:
            raise CLIError(f"id prefix {want!r} matches {len(ids)} candidates ({', '.join(ids[:5])}"
                           f"{', ...' if len(ids) > 5 else ''}); give more characters")
    if not hits:
        where = ", ".join(s for s, _ in loaded)
        raise CLIError(f"no record with candidate_id {want!r} in {where}")
    if len(hits) > 1:
        _info(f"{len(hits)} records of {hits[0].candidate_id} (one per measurement)")
    write_output("\n".join(pretty_record(r.to_dict()) for r in hits))
    return 0


def _run_data(args) -> int:
    if args.data_cmd == "stats":
        return _run_data_stats(args)
    if args.data_cmd == "show":
        return _run_data_show(args)
    raise CLIError("say what to do: costpass data stats | costpass data show ID")


# --------------------------------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------------------------------

def _add_measure(sub):
    p = sub.add_parser(
        "measure", help="sample, build and time candidates on a GPU (TVM runners), append records",
        description="Sample MetaSchedule candidates of named workloads, build them here (the project's "
                    "builder) and time them with MetaSchedule's LocalRunner (this machine's GPU) or RPCRunner "
                    "(GPU hosts behind a TVM RPC tracker); append one record per candidate to --out (ids "
                    "already there are skipped, so the same command resumes). With --bundle, print instead the "
                    "one-call command that measures a built bundle on the lent GPU machine. docs/measuring.md "
                    "has the details.")
    p.add_argument("--workload", metavar="NAME[,NAME]", help="named workloads (schedules/workloads.py)")
    p.add_argument("--candidates", type=int, metavar="N", help="random candidates per workload")
    p.add_argument("--evolved", type=int, default=0, metavar="N",
                   help="also N candidates per workload from MetaSchedule's evolutionary search (default 0)")
    p.add_argument("--cost-model", choices=("random", "analytical"), default="random",
                   help="what guides --evolved: MetaSchedule's RandomModel or costpass's analytical estimate "
                        "(default random)")
    p.add_argument("--gpu", help="the GPU measured, a name from 'costpass gpus' (build arch; checked against "
                                 "the device where it reports its name)")
    p.add_argument("--runner", choices=("local", "rpc"), default="local",
                   help="local: this machine's GPU; rpc: servers of a TVM RPC tracker (default local)")
    p.add_argument("--tracker", metavar="HOST:PORT", help="with --runner rpc: the tracker")
    p.add_argument("--key", help="with --runner rpc: the servers' key (default: the --gpu name)")
    p.add_argument("--out", metavar="FILE.jsonl", help="records are appended here")
    p.add_argument("--repeats", type=int, default=20, help="run times recorded per candidate (default 20)")
    p.add_argument("--number", type=int, default=1,
                   help="calls per run time at the start (TVM EvaluatorConfig.number, default 1)")
    p.add_argument("--min-repeat-ms", type=int, default=10,
                   help="each run time covers at least this many ms of back-to-back calls (default 10)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per candidate on the runner (default 60)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--tag", default="", help="written into every record's 'tag'")
    p.add_argument("--build-workers", type=int, default=None, metavar="N",
                   help="parallel builds (default: CPU count)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    b = p.add_argument_group("bundle path (how this repository's datasets are measured)")
    b.add_argument("--bundle", metavar="PATH", help="a bundle folder or snapshot .tar.xz: print the command "
                                                    "for one device 'run' call, and what to carry")
    b.add_argument("--budget-s", type=int, default=380, help="no candidate starts after this (default 380)")
    b.add_argument("--ncu-first", type=int, default=0, metavar="N",
                   help="profile N ok candidates per workload with Nsight Compute (default 0)")
    b.add_argument("--ncu-budget-s", type=int, default=90, help="(default 90)")
    b.add_argument("--resume-from", default="", metavar="FILE",
                   help="a carried earlier measure.jsonl to go on from")
    b.add_argument("--round", action="store_true",
                   help="print the gpu_round.sh form instead (snapshot .tar.xz: also compiles missing cubins "
                        "with nvcc there and returns them)")
    return p


def _positive(name, v, zero_ok=False):
    if v is None:
        return
    if v < 0 or (v == 0 and not zero_ok):
        raise CLIError(f"{name} must be {'0 or more' if zero_ok else 'at least 1'}, not {v}")


def _run_bundle(args) -> int:
    from .measure import remote
    path = args.bundle
    if not os.path.exists(path):
        raise CLIError(f"bundle {path}: no such file or folder (build one with python3 -m costpass.measure.bundle "
                       "generate --out DIR, then snapshot it)")
    for name in ("budget_s", "ncu_budget_s"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--ncu-first", args.ncu_first, zero_ok=True)
    rel = os.path.relpath(path, remote.REPO) if os.path.isabs(path) else path
    if rel.startswith(".."):
        raise CLIError(f"bundle {path} is outside the repository: the device 'run' call carries paths inside it")
    carry = list(remote.CARRY) + [rel]
    if args.resume_from:
        carry.append(args.resume_from)
    if args.round:
        if not (rel.endswith(".tar.xz") and os.path.isfile(path)):
            raise CLIError("--round takes a snapshot .tar.xz (python3 -m costpass.measure.snapshot --bundle DIR "
                           "--out carry/snapN.tar.xz)")
        total = args.budget_s + 60 + (args.ncu_budget_s + 60 if args.ncu_first else 0) + 60   # + nvcc, set-up
        tag = args.tag or "round"
        cmd = f"bash costpass/measure/gpu_round.sh {rel} {tag} {args.budget_s} {args.ncu_first} {args.ncu_budget_s}\n"
    else:
        total = args.budget_s + 60 + (args.ncu_budget_s + 60 if args.ncu_first else 0) + 60
        cmd = remote.measure_command(rel, budget_s=args.budget_s, tag=args.tag, ncu_first=args.ncu_first,
                                     resume_from=args.resume_from, ncu_budget_s=args.ncu_budget_s)
    if total > 600:
        raise CLIError(f"budget too large for one device call: {total} s with the set-up margins, a call may take "
                       "600 s (lower --budget-s or --ncu-budget-s)")
    for c in remote.CARRY:
        if not os.path.exists(os.path.join(remote.REPO, c)):
            how = "python3 -m costpass.measure.remote wheel" if c == remote.WHEEL_DIR else \
                "python3 -m costpass.measure.remote runtime"
            _info(f"warning: {c} is missing; make it with: {how}")
    sys.stdout.write(cmd if cmd.endswith("\n") else cmd + "\n")
    sys.stdout.write(f"# carry: {' '.join(carry)}\n")
    return 0


def _check_out(path: str, gpu_spec_name: str):
    from .data import gpu_key
    from .measure.records import RecordWarning, read_records
    if not path.endswith(".jsonl"):
        raise CLIError(f"--out {path}: expected a .jsonl file (records are appended to it)")
    d = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.path.isfile(path):
        raise CLIError(f"--out {path}: not a file")
    base = d                                   # created when the first record is written
    while not os.path.isdir(base):
        if os.path.exists(base):
            raise CLIError(f"--out {path}: {base} is not a folder")
        base = os.path.dirname(base)
    if not os.access(base, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CLIError(f"--out {path}: not writable")
    if os.path.exists(path):
        problems: list[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecordWarning)
            names = sorted({r.gpu for r in read_records(path, problems) if r.gpu and r.gpu != "unknown"})
        _warn_problems(problems)
        other = [n for n in names if gpu_key(n) != gpu_spec_name and gpu_spec_name not in
                 "".join(ch for ch in n.lower() if ch.isalnum())]
        if other:
            raise CLIError(f"--out {path} holds records of {other[0]!r}, not {gpu_spec_name}: one file holds one GPU")


def _workloads(text: str):
    from .cli import _get_workload
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise CLIError("--workload NAME[,NAME] is required (the names are in schedules/workloads.py)")
    out = []
    for n in names:
        wl = _get_workload(n)
        if wl.name not in [w.name for w in out]:
            out.append(wl)
    return out


def _run_measure(args) -> int:
    if args.bundle:
        return _run_bundle(args)
    from .measure import tvm_runner as TR
    # everything that can be wrong with the arguments, before anything slow
    if args.gpu is None:
        raise CLIError("--gpu NAME is required: the GPU measured (see 'costpass gpus')")
    if "," in args.gpu:
        raise CLIError(f"--gpu takes one GPU (the one measured), not {args.gpu!r}")
    from .cli import load_gpus
    (gpu,) = load_gpus(args.gpu)
    if args.candidates is None:
        raise CLIError("--candidates N is required (random candidates per workload)")
    _positive("--candidates", args.candidates, zero_ok=True)
    _positive("--evolved", args.evolved, zero_ok=True)
    if args.candidates + args.evolved == 0:
        raise CLIError("nothing to measure: --candidates and --evolved are both 0")
    for name in ("repeats", "number", "build_workers"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--min-repeat-ms", args.min_repeat_ms, zero_ok=True)
    if not args.timeout_s > 0:
        raise CLIError(f"--timeout-s must be positive, not {args.timeout_s}")
    cfg = TR.RunnerConfig(kind=args.runner, repeats=args.repeats, number=args.number,
                          min_repeat_ms=args.min_repeat_ms, timeout_s=args.timeout_s)
    if args.runner == "rpc":
        if not args.tracker:
            raise CLIError("--runner rpc needs --tracker HOST:PORT (a running python -m tvm.exec.rpc_tracker)")
        try:
            cfg.tracker_host, cfg.tracker_port = TR.parse_tracker(args.tracker)
        except TR.MeasureError as err:
            raise CLIError(str(err)) from None
        cfg.key = args.key or gpu.name
    elif args.tracker or args.key:
        raise CLIError("--tracker and --key apply to --runner rpc only")
    if not args.out:
        raise CLIError("--out FILE.jsonl is required (records are appended to it)")
    wls = _workloads(args.workload)
    _check_out(args.out, gpu.name)
    cost_model_factory = None
    if args.evolved and args.cost_model == "analytical":
        try:
            from .measure import search_model
            from .metaschedule import CostModel  # noqa: F401  (what search_model.analytical builds)
        except ImportError as err:
            raise CLIError(f"--cost-model analytical is not available: {_first_line(err)}") from None
        cost_model_factory = lambda wl, _g=gpu.name: search_model.analytical(wl, gpu=_g)  # noqa: E731

    # the device: fail here, before sampling and building, when there is none
    try:
        info = TR.check_device(cfg, gpu.name)
    except TR.MeasureError as err:
        raise CLIError(str(err)) from None
    _info(f"measuring on {info['gpu']} ({'this machine' if cfg.kind == 'local' else 'rpc ' + args.tracker + ' key ' + cfg.key}"
          + (f", {info.get('servers')} server(s)" if cfg.kind == "rpc" else "") + ")", args.quiet)

    from .measure.build import cuda_target, ms_builder
    target = cuda_target(gpu.arch)
    _info(f"sampling candidates of {len(wls)} workload(s) (seed {args.seed})", args.quiet)
    cands = TR.sample(wls, target, args.candidates, args.evolved, seed=args.seed,
                      cost_model_factory=cost_model_factory,
                      log=None if args.quiet else (lambda m: _info(m)))
    if not cands:
        raise CLIError("no valid candidate was sampled (try another --seed or more --candidates)")
    builder = ms_builder(max_workers=args.build_workers or os.cpu_count() or 1)
    runner = TR.make_runner(cfg, info.get("servers"))
    parallel = 1 if cfg.kind == "local" else max(1, int(info.get("servers") or 1))
    from .measure.records import RecordWarning
    with _Progress(len(cands), args.quiet) as prog, warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)   # unreadable lines of --out: reported above
        counts = TR.measure(cands, args.out, target=target, builder=builder, runner=runner, device=info, cfg=cfg,
                            tag=args.tag, parallel=parallel, on_event=prog.event)
    skipped = counts.pop("skipped", 0)
    done = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing new"
    _info(f"{args.out}: {done}; {skipped} already there (skipped)")
    return 0


class _Progress:
    """A rich progress bar on a TTY; otherwise one line per workload."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.quiet = quiet
        self.bar = None
        self.task = None
        self.best: dict[str, float] = {}
        self.n: dict[str, int] = {}
        self.current = None

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=sys.stderr))
            self.bar.__enter__()
            self.task = self.bar.add_task("measuring", total=self.total)
        return self

    def __exit__(self, *exc):
        self._flush_line()
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _flush_line(self):
        if self.bar is None and self.current and not self.quiet:
            wl = self.current
            best = self.best.get(wl)
            _info(f"{wl}: {self.n.get(wl, 0)} measured" + (f", best {best:.4f} ms" if best is not None else ""))

    def event(self, kind, payload):
        if kind == "plan":
            todo, skipped = payload
            if self.bar is not None:
                self.bar.update(self.task, total=todo + skipped, completed=skipped)
            elif skipped and not self.quiet:
                _info(f"{skipped} candidate(s) already measured in the output: skipped")
        elif kind == "build":
            if self.bar is not None:
                self.bar.update(self.task, description=f"building {payload}")
        elif kind == "record":
            rec = payload
            if rec.workload != self.current:
                self._flush_line()
                self.current = rec.workload
            self.n[rec.workload] = self.n.get(rec.workload, 0) + 1
            if rec.status == "ok" and rec.median_ms is not None:
                self.best[rec.workload] = min(self.best.get(rec.workload, float("inf")), rec.median_ms)
            if self.bar is not None:
                best = self.best.get(rec.workload)
                self.bar.update(self.task, advance=1, description=f"{rec.workload}"
                                + (f" best {best:.4f} ms" if best is not None else ""))


def register_commands(register):
    register("measure", _add_measure, _run_measure)
    register("data", _add_data, _run_data)
