"""The ``costpass`` command line: a thin shell over the core modules.

    costpass gpus [--json]
    costpass extract [--gpu NAME[,NAME]] FILE|-
    costpass diagnose (FILE|- | --example [NAME] | --workload NAME | --database DIR [--all])
                      [--gpu h100,h200,a100] [--measured-ms X] [--json] [--plot FILE.png]

Adding a subcommand is adding two functions, ``add_parser(sub)`` (creates the subparser on ``sub``, the
argparse sub-parsers object, and returns it) and ``run(args) -> int``, and registering them:

* in this file: ``register("name", add_parser, run)``;
* from another module (so that this file need not change): a module ``costpass/cli_<name>.py`` or
  ``costpass/<package>/cli.py`` that defines ``register_commands(register)`` and calls ``register`` in
  it. Such modules are found at start-up; one that fails to import is reported by ``costpass --help``
  and does not break the other commands.

Errors caused by the input (a malformed file, an unknown GPU or workload, a module without a GPU
kernel, ...) raise :class:`CLIError`; ``main`` prints them as one line ``costpass: error: ...`` on
stderr and returns 2, without a traceback. ``COSTPASS_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import io
import json
import math
import os
import pkgutil
import re
import sys
from dataclasses import dataclass

PROG = "costpass"


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


# --------------------------------------------------------------------------------------------------
# Command registry
# --------------------------------------------------------------------------------------------------

@dataclass
class Command:
    name: str
    add_parser: object    # add_parser(sub) -> argparse.ArgumentParser
    run: object           # run(args) -> int
    origin: str = __name__


_COMMANDS: dict[str, Command] = {}
_PLUGIN_ERRORS: list[str] = []
# Subcommands planned by other parts of the project (shown by --help until they exist).
PLANNED = ("measure", "data", "predict", "evaluate", "tune")  # compile: installed by cli_compile.py


def register(name: str, add_parser, run, origin: str | None = None) -> None:
    """Register a subcommand (see the module docstring)."""
    _COMMANDS[name] = Command(name, add_parser, run, origin or getattr(run, "__module__", __name__))


def _discover_plugins() -> None:
    import costpass
    pkg_dir = os.path.dirname(costpass.__file__)
    names = []
    for info in pkgutil.iter_modules([pkg_dir]):
        if info.name.startswith("cli_") and not info.ispkg:
            names.append(f"costpass.{info.name}")
        elif info.ispkg and os.path.exists(os.path.join(pkg_dir, info.name, "cli.py")):
            names.append(f"costpass.{info.name}.cli")
    for modname in sorted(names):
        try:
            mod = importlib.import_module(modname)
            hook = getattr(mod, "register_commands", None)
            if hook is not None:
                hook(lambda n, a, r, _m=modname: register(n, a, r, origin=_m))
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the CLI
            _PLUGIN_ERRORS.append(f"{modname}: {type(err).__name__}: {_first_line(err)}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``costpass: error: ...``) and exit code 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sub = self.prog.split(" ", 1)[1] + " " if " " in self.prog else ""
        sys.stderr.write(f"{PROG}: error: {message} (see '{PROG} {sub}--help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    epilog = None
    planned = [p for p in PLANNED if p not in _COMMANDS]
    lines = []
    if planned:
        lines.append("planned subcommands (not installed yet): " + ", ".join(planned))
    if _PLUGIN_ERRORS:
        lines += ["could not load: " + e for e in _PLUGIN_ERRORS]
    epilog = "\n".join(lines) or None
    p = _Parser(prog=PROG, description="GPU pipeline-demand performance model for TVM kernels.",
                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in _COMMANDS.values():
        sp = cmd.add_parser(sub)
        sp.set_defaults(_run=cmd.run)
    return p


# --------------------------------------------------------------------------------------------------
# Shared helpers (input loading, errors, progress)
# --------------------------------------------------------------------------------------------------

def write_plot(plot, report, path: str, quiet: bool = False) -> None:
    """``plot(report, path)``, an unwritable path as a one-line error."""
    try:
        plot(report, path)
    except OSError as err:
        raise CLIError(f"cannot write plot {path}: {_first_line(err)}") from None
    _info(f"wrote {path}", quiet)


def _first_line(err) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    for line in text.splitlines():
        line = line.strip()
        if line:
            return re.sub(r"\s+", " ", line)
    return type(err).__name__


_IMPORT_RE = re.compile(r"^(import\s+\S.*|from\s+(?!__future__)\S+\s+import\s+.*)$")


def read_source(path: str) -> tuple[str, str]:
    """(text, label) of a TVMScript file, or of stdin for '-'."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{path}: is a directory, expected a TVMScript file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CLIError(f"cannot read {path}: {_first_line(err)}") from None


def parse_tvmscript(text: str, label: str = "<input>"):
    """Parse TVMScript text (an ``@I.ir_module`` class or a ``@T.prim_func``) into an IRModule.

    Top-level ``import`` / ``from ... import`` lines (which the TVMScript parser rejects) are blanked, so
    a file can also be valid Python."""
    import tvm

    lines = text.splitlines()
    cleaned = "\n".join("" if _IMPORT_RE.match(line) else line for line in lines) + "\n"
    if not cleaned.strip() or all(not l.strip() or l.lstrip().startswith("#") for l in cleaned.splitlines()):
        raise CLIError(f"{label}: no kernel: the file holds no TVMScript module or prim_func")
    try:
        obj = tvm.script.from_source(cleaned)
    except SyntaxError as err:
        raise CLIError(f"{label}:{err.lineno or '?'}: malformed TVMScript: {err.msg}") from None
    except Exception as err:  # noqa: BLE001 - TVM raises DiagnosticError / TVMError / IndexError ...
        msg = str(err)
        m = re.search(r"-->\s*\S*?:(\d+):(\d+)", msg)
        where = f"{label}:{m.group(1)}" if m else label
        first = _first_line(err)
        if "No result exists in IRBuilder" in msg:
            raise CLIError(f"{label}: no kernel: the file holds no TVMScript module or prim_func") from None
        first = re.sub(r"^error:\s*", "", first)
        raise CLIError(f"{where}: malformed TVMScript: {first}") from None
    if isinstance(obj, tvm.tirx.PrimFunc):
        obj = tvm.IRModule({"main": obj})
    if not isinstance(obj, tvm.IRModule):
        raise CLIError(f"{label}: no kernel: the file holds no TVMScript module or prim_func")
    if not any(isinstance(f, tvm.tirx.PrimFunc) for _, f in obj.functions_items()):
        raise CLIError(f"{label}: no kernel: the module has no prim_func")
    return obj


def load_module_file(path: str):
    text, label = read_source(path)
    return parse_tvmscript(text, label), label


def load_gpus(names: str):
    from . import spec
    names = names or "h100"
    try:
        gpus = spec.load_many(names)
    except spec.UnknownGPUError as err:
        raise CLIError(_first_line(err)) from None
    if not gpus:
        raise CLIError(f"no GPU named in --gpu {names!r} (known: {', '.join(spec.available())})")
    seen = set()
    out = []
    for g in gpus:
        if g.name not in seen:
            seen.add(g.name)
            out.append(g)
    return out


_PRELOADED = False


def preload_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (which the demand pass needs) quickly.

    Importing it registers ~500 TVMScript prim_funcs; each ``@T.prim_func`` calls ``inspect.stack()``,
    whose ``inspect.getmodule`` lookups cost ~20 s of CPU in TVM 0.27 here. The decorator only uses
    each frame and its current source line, so during this one import ``inspect.stack`` is replaced by
    an equivalent that builds the same FrameInfo records from ``sys._getframe`` and ``linecache``
    (3-4 s instead of ~20 s). Nothing else is affected."""
    global _PRELOADED
    if _PRELOADED or "tvm.s_tir.tensor_intrin.cuda" in sys.modules:
        _PRELOADED = True
        return
    import inspect
    import linecache

    orig = inspect.stack

    def stack(context=1):
        out = []
        f = sys._getframe(1)
        while f is not None:
            fn, ln = f.f_code.co_filename, f.f_lineno
            line = linecache.getline(fn, ln) if context else ""
            out.append(inspect.FrameInfo(f, fn, ln, f.f_code.co_name, [line] if line else None,
                                         0 if line else None))
            f = f.f_back
        return out

    inspect.stack = stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = orig
    _PRELOADED = True


def extract_demands(mod, label: str, target=None):
    from . import demand
    preload_tensor_intrinsics()
    try:
        ds = demand.extract(mod, target=target)
    except demand.DemandError as err:
        msg = _first_line(err)
        if "no GPU kernel" in msg or "no GPU thread bindings" in msg:
            raise CLIError(f"{label}: no GPU kernel: the module has no blockIdx/threadIdx thread bindings "
                           "(schedule it for a GPU first)") from None
        raise CLIError(f"{label}: {msg}") from None
    if not ds:
        raise CLIError(f"{label}: no kernel found")
    return ds


def _target_for(gpus):
    from . import demand
    return demand.default_target(gpus[0].arch if gpus else "sm_90a")


def progress(items, total: int | None = None, desc: str = "", enabled: bool = True, threshold: int = 4):
    """Iterate with a progress bar on stderr when it is a TTY and there are at least ``threshold`` items."""
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    if not enabled or total < threshold or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(desc, total=total)
        for x in items:
            yield x
            bar.advance(task)


def _status(msg: str, enabled: bool = True):
    """A spinner on stderr (TTY only) for one long step."""
    import contextlib
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console
    return Console(file=sys.stderr).status(msg)


def _info(msg: str, quiet: bool = False):
    if not quiet:
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: {msg}\n")


def write_output(text: str, path: str | None = None):
    if path and path != "-":
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            raise CLIError(f"cannot write {path}: {_first_line(err)}") from None
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------------------------------------------
# gpus
# --------------------------------------------------------------------------------------------------

def _add_gpus(sub):
    p = sub.add_parser("gpus", help="table of the known GPUs and their key numbers",
                       description="Known GPUs (costpass/gpus/*.toml) and the numbers the model uses.")
    p.add_argument("--json", action="store_true", help="full specs as JSON")
    return p


def _run_gpus(args) -> int:
    from . import diagnose as D
    from . import spec
    gpus = [spec.load(n) for n in spec.available()]
    if args.json:
        out = []
        for g in gpus:
            d = g.to_dict()
            d["derived"] = D.gpu_summary(g)
            out.append(d)
        write_output(json.dumps(out, indent=2))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table
    tty = sys.stdout.isatty()
    t = Table(box=box.SIMPLE_HEAD if tty else D._plain_box(), pad_edge=False, show_edge=False,
              padding=(0, 1), collapse_padding=True)
    for col, just in (("name", "left"), ("GPU", "left"), ("SMs", "right"), ("MHz", "right"),
                      ("fp16 TC TF/s", "right"), ("FP32 TF/s", "right"), ("DRAM TB/s", "right"),
                      ("L2 MB", "right")):
        t.add_column(col, justify=just, no_wrap=True)
    for g in gpus:
        s = D.gpu_summary(g)
        t.add_row(g.name, g.full_name.replace("NVIDIA ", ""), str(g.sm_count), f"{g.sm_clock_mhz:.0f}",
                  f"{s['tensor_fp16_tflops']:.0f}", f"{s['fp32_tflops']:.1f}",
                  f"{g.memory['dram_bandwidth_gbs'] / 1000:.2f}", f"{g.memory['l2_bytes'] / 2**20:.0f}")
    console = Console(width=None if tty else 100, no_color=not tty, force_terminal=tty, highlight=False,
                      file=io.StringIO(), record=True)
    console.print(t)
    text = console.export_text(styles=tty)
    sys.stdout.write(text if tty else "\n".join(l.rstrip() for l in text.splitlines()) + "\n")
    sys.stdout.write("Peaks as the model uses them: tensor at the clock NVIDIA quotes them for (rated_clock_mhz),\n"
                     "the others at MHz (sm_clock_mhz). Sources: costpass/gpus/<name>.toml.\n")
    return 0


# --------------------------------------------------------------------------------------------------
# extract
# --------------------------------------------------------------------------------------------------

def _add_extract(sub):
    p = sub.add_parser("extract", help="TVMScript of a scheduled module -> demand records (JSON)",
                       description="Lower a scheduled TensorIR module (TVMScript) and print one demand record "
                                   "per GPU kernel as JSON. With --gpu, each item is {demand, bounds: {gpu: ...}}.")
    p.add_argument("file", metavar="FILE|-", help="TVMScript file ('-' reads stdin)")
    p.add_argument("--gpu", help="also the analytical bounds on these GPUs (comma-separated)")
    p.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    return p


def _run_extract(args) -> int:
    from . import bounds
    gpus = load_gpus(args.gpu) if args.gpu else []
    mod, label = load_module_file(args.file)
    ds = extract_demands(mod, label, _target_for(gpus))
    if not gpus:
        out = [d.to_dict() for d in ds]
    else:
        out = [{"demand": d.to_dict(), "bounds": {g.name: bounds.analyze(d, g).to_dict() for g in gpus}}
               for d in ds]
    write_output(json.dumps(_json_safe(out), indent=2), args.output)
    return 0


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------------
# diagnose
# --------------------------------------------------------------------------------------------------

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples")


def list_examples() -> dict:
    """name -> metadata dict (with 'path') of the shipped examples (costpass/examples/*.json)."""
    out = {}
    if not os.path.isdir(EXAMPLES_DIR):
        return out
    for fn in sorted(os.listdir(EXAMPLES_DIR)):
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(EXAMPLES_DIR, fn)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        meta["path"] = os.path.join(EXAMPLES_DIR, meta.get("file", fn[:-5] + ".py"))
        out[meta.get("name", fn[:-5])] = meta
    return out


DEFAULT_EXAMPLE = "gemm_llama3_8b_o_proj_fp16"


def _add_diagnose(sub):
    p = sub.add_parser(
        "diagnose", help="what limits each kernel, on one or several GPUs, and which schedule decision to change",
        description="Per-kernel diagnosis: bottleneck pipe, ceiling and estimate, per-pipe pressure, occupancy, "
                    "waves and hints tied to schedule decisions. Input: a TVMScript file, a shipped example, "
                    "a named workload, or a MetaSchedule JSON database.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  costpass diagnose --example\n  costpass diagnose --example --gpu h100,h200,a100\n"
               "  costpass diagnose kernel.py --gpu h100 --measured-ms 0.21 --plot kernel.png\n"
               "  costpass diagnose --database work_dir/ --gpu h100 --json\n"
               "  costpass diagnose --workload llama3_8b_o_proj_fp16")
    src = p.add_mutually_exclusive_group()
    src.add_argument("file", nargs="?", metavar="FILE|-", help="TVMScript of a scheduled module ('-': stdin)")
    src.add_argument("--example", nargs="?", const=DEFAULT_EXAMPLE, metavar="NAME",
                     help=f"a shipped example (default {DEFAULT_EXAMPLE}; 'all' for every example; "
                          "'list' to list them)")
    src.add_argument("--workload", metavar="NAME", help="a named workload from schedules/ (its shipped schedule, or "
                                                        "the best of a few sampled candidates by analytical estimate)")
    src.add_argument("--database", metavar="DIR", help="a MetaSchedule JSON database directory "
                                                       "(database_workload.json + database_tuning_record.json)")
    p.add_argument("--all", action="store_true", help="with --database: every record, not only the best per workload")
    p.add_argument("--gpu", default="h100", help="GPU name(s), comma-separated (default h100; see 'costpass gpus')")
    p.add_argument("--measured-ms", type=float, metavar="X",
                   help="measured time of the whole module in ms (compared on the first GPU)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write per-pipe utilization bars and a roofline to FILE.png")
    p.add_argument("--summary", action="store_true", help="only the summary table (no per-kernel details)")
    p.add_argument("--samples", type=int, default=8, help="with --workload and no shipped schedule: "
                                                          "candidates to sample (default 8)")
    p.add_argument("--seed", type=int, default=0, help="with --workload: sampling seed (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes on stderr")
    return p


def _workload_context(wl) -> dict:
    return {"dtype": wl.dtype, "gemm_like": all(k in wl.params for k in ("M", "N", "K"))}


def _report_from_module(mod, label, name, gpus, measured_ms, context=None, notes=()):
    from . import diagnose as D
    ds = extract_demands(mod, label, _target_for(gpus))
    r = D.diagnose(ds, gpus, measured_ms, name=name, source=label, context=context)
    r.modules[0].notes.extend(notes)
    return r


def _diagnose_examples(args, gpus):
    from . import diagnose as D
    ex = list_examples()
    if not ex:
        raise CLIError(f"no shipped examples found in {EXAMPLES_DIR}")
    if args.example == "list":
        for n, m in ex.items():
            sys.stdout.write(f"{n:34s} {m.get('description', '')}\n")
        return None
    names = list(ex) if args.example == "all" else [args.example]
    reports = []
    for n in names:
        if n not in ex:
            near = difflib.get_close_matches(n, list(ex), n=3, cutoff=0.3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise CLIError(f"unknown example '{n}' (known: {', '.join(ex)}){hint}")
        meta = ex[n]
        mod, label = load_module_file(meta["path"])
        sel = meta.get("selection", {})
        notes = [meta.get("description", "")] if meta.get("description") else []
        if sel:
            notes.append(f"schedule: MetaSchedule candidate {meta.get('candidate', {}).get('id', '?')}, the lowest "
                         f"analytical estimate on {sel.get('gpu')} of {sel.get('candidates')} sampled (not tuned "
                         f"on hardware)")
        measured = args.measured_ms if len(names) == 1 else None
        reports.append(_report_from_module(mod, os.path.relpath(meta["path"]), n, gpus, measured,
                                           meta.get("context"), notes))
    return D.combine(reports)


def _shipped_schedule(name: str):
    """Path of a shipped TVMScript schedule for a workload (examples/ or schedules/), or None."""
    for meta in list_examples().values():
        if meta.get("workload") == name and os.path.exists(meta["path"]):
            return meta["path"]
    try:
        import schedules
        base = os.path.dirname(os.path.abspath(schedules.__file__))
        for cand in (os.path.join(base, "tuned", f"{name}.py"), os.path.join(base, f"{name}.tvmscript"),
                     os.path.join(base, "tuned", f"{name}.tvmscript")):
            if os.path.exists(cand):
                return cand
    except ImportError:
        pass
    return None


def _get_workload(name):
    try:
        from schedules import workloads as W
    except ImportError as err:
        raise CLIError(f"the named workloads (schedules/workloads.py) are not available: {_first_line(err)}") \
            from None
    try:
        return W.get(name)
    except KeyError as err:
        raise CLIError(_first_line(err).replace("did you mean: ", "did you mean ")) from None


def _diagnose_workload(args, gpus):
    from . import bounds
    preload_tensor_intrinsics()
    from . import diagnose as D
    wl = _get_workload(args.workload)
    path = _shipped_schedule(wl.name)
    if path:
        mod, label = load_module_file(path)
        return _report_from_module(mod, os.path.relpath(path), wl.name, gpus, args.measured_ms,
                                   _workload_context(wl), [f"shipped schedule {os.path.relpath(path)}"])
    try:
        from .measure import candidates as C
    except ImportError as err:
        raise CLIError(f"no shipped schedule for {wl.name} and candidate sampling is unavailable: "
                       f"{_first_line(err)}") from None
    target = _target_for(gpus)
    note = (f"no tuned schedule is shipped for {wl.name}: sampled {{n}} MetaSchedule candidate{{s}} (seed {args.seed}) "
            f"and took the lowest analytical estimate on {gpus[0].name}: {{est}}")
    _info(f"no tuned schedule shipped for {wl.name}: sampling {args.samples} MetaSchedule candidates "
          f"(seed {args.seed})", args.quiet)
    with _status(f"sampling {args.samples} candidates of {wl.name}", not args.quiet):
        cands = C.random_candidates(wl, target, args.samples, seed=args.seed)
    if not cands:
        raise CLIError(f"{wl.name}: no valid candidate sampled (seed {args.seed}); try another --seed")
    best = None
    for c in progress(cands, desc="analysing candidates", enabled=not args.quiet, threshold=2):
        sch = C.apply_trace(wl, c.trace_json)
        try:
            ds = extract_demands(sch.mod, f"candidate {c.id}", target)
        except CLIError:
            continue
        est = sum(bounds.analyze(d, gpus[0]).estimate_us for d in ds)
        if best is None or est < best[0]:
            best = (est, c, ds)
    if best is None:
        raise CLIError(f"{wl.name}: none of {len(cands)} sampled candidates could be analysed")
    est, c, ds = best
    r = D.diagnose(ds, gpus, args.measured_ms, name=wl.name, source=f"sampled candidate {c.id}",
                   context=_workload_context(wl))
    r.modules[0].notes.append(note.format(n=len(cands), s="" if len(cands) == 1 else "s", est=D._us(est)))
    return r


def _database_files(path: str):
    if not os.path.exists(path):
        raise CLIError(f"cannot read database {path}: no such directory")
    if not os.path.isdir(path):
        raise CLIError(f"cannot read database {path}: not a directory (expected a MetaSchedule work dir)")
    wl = os.path.join(path, "database_workload.json")
    tr = os.path.join(path, "database_tuning_record.json")
    if os.path.exists(wl) and os.path.exists(tr):
        return wl, tr
    files = os.listdir(path)
    wls = [f for f in files if f.endswith(".json") and "workload" in f]
    trs = [f for f in files if f.endswith(".json") and "tuning_record" in f]
    if len(wls) == 1 and len(trs) == 1:
        return os.path.join(path, wls[0]), os.path.join(path, trs[0])
    raise CLIError(f"cannot read database {path}: expected database_workload.json and "
                   "database_tuning_record.json in it")


def _check_json_lines(path: str):
    """MetaSchedule's JSON database is one JSON value per line: check before TVM parses it (a TVM
    parse error can abort the process)."""
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    v = json.loads(line)
                    if not isinstance(v, list):
                        raise ValueError("not a JSON list")
    except (OSError, UnicodeDecodeError) as err:
        raise CLIError(f"cannot read database file {path}: {_first_line(err)}") from None
    except ValueError as err:
        raise CLIError(f"cannot read database file {path}: line {i}: {_first_line(err)}") from None


def _workload_label(mod, known_cache: dict) -> str:
    """A readable name for a database workload: the matching named workload, else its signature."""
    import tvm_ffi
    h = tvm_ffi.structural_hash(mod)
    if "map" not in known_cache:
        known_cache["map"] = {}
        try:
            from schedules import workloads as W
            for w in W.all_workloads():
                try:
                    known_cache["map"][tvm_ffi.structural_hash(w.mod())] = w
                except Exception:  # noqa: BLE001
                    pass
        except ImportError:
            pass
    w = known_cache["map"].get(h)
    if w is not None:
        return w.name, w
    func = next(f for _, f in mod.functions_items())
    bmap = getattr(func, "buffer_map", None) or {}
    shapes, dtypes = [], []
    for prm in func.params:
        buf = bmap.get(prm) if bmap else (prm if hasattr(prm, "shape") else None)
        if buf is not None:
            shapes.append("x".join(str(s) for s in buf.shape))
            dtypes.append(str(buf.dtype).replace("float", "f").replace("int", "i"))
    dt = dtypes[0] if dtypes and len(set(dtypes)) == 1 else "/".join(dict.fromkeys(dtypes))
    return f"workload({dt}: {', '.join(shapes)})", None


def _diagnose_database(args, gpus):
    preload_tensor_intrinsics()
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from . import diagnose as D

    wl_path, tr_path = _database_files(args.database)
    _check_json_lines(wl_path)
    _check_json_lines(tr_path)
    try:
        db = ms.database.JSONDatabase(path_workload=wl_path, path_tuning_record=tr_path, allow_missing=False)
        records = list(db.get_all_tuning_records())
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot read database {args.database}: {_first_line(err)}") from None
    if not records:
        raise CLIError(f"database {args.database} holds no tuning records")

    def mean_secs(rec):
        rs = [float(x) for x in (rec.run_secs or [])]
        rs = [x for x in rs if math.isfinite(x) and 0 < x < 1e9]   # MetaSchedule writes 1e10 for failures
        return sum(rs) / len(rs) if rs else None

    groups = {}
    cache = {}
    import tvm_ffi
    for rec in records:
        key = tvm_ffi.structural_hash(rec.workload.mod)
        groups.setdefault(key, []).append(rec)
    chosen = []
    for key, recs in groups.items():
        label, wl = _workload_label(recs[0].workload.mod, cache)
        recs = sorted(recs, key=lambda r: (mean_secs(r) is None, mean_secs(r) or 0.0))
        if not args.all:
            recs = recs[:1]
        for i, rec in enumerate(recs):
            chosen.append((label, wl, i, rec))
    reports, skipped = [], []
    target = _target_for(gpus)
    for label, wl, i, rec in progress(chosen, desc="records", enabled=not args.quiet):
        secs = mean_secs(rec)
        name = label if not args.all else f"{label} #{i + 1}"
        try:
            sch = s_tir.Schedule(rec.workload.mod)
            rec.trace.apply_to_schedule(sch, remove_postproc=False)
            ds = extract_demands(sch.mod, name, target)
        except CLIError as err:
            skipped.append(f"{name}: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - a trace that does not replay
            skipped.append(f"{name}: trace does not replay: {_first_line(err)}")
            continue
        r = D.diagnose(ds, gpus, secs * 1000 if secs is not None else None, name=name,
                       source=f"{os.path.basename(os.path.normpath(args.database))} record"
                              + (f", measured {secs * 1e3:.4g} ms" if secs is not None else ", no valid run"),
                       context=_workload_context(wl) if wl is not None else None)
        reports.append(r)
    if not reports:
        raise CLIError(f"database {args.database}: no record could be analysed ({skipped[0] if skipped else ''})")
    notes = [f"database {args.database}: {len(records)} records over {len(groups)} workloads; "
             + ("all records" if args.all else "best record per workload")
             + f"; run_secs compared on {gpus[0].name}"]
    notes += [f"skipped {s}" for s in skipped]
    return D.combine(reports, notes=notes)


def _run_diagnose(args) -> int:
    from . import diagnose as D
    if args.measured_ms is not None and not (args.measured_ms > 0 and math.isfinite(args.measured_ms)):
        raise CLIError(f"--measured-ms must be a positive number of milliseconds, not {args.measured_ms}")
    if args.all and not args.database:
        raise CLIError("--all applies to --database only")
    if args.plot:
        d = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(d):
            raise CLIError(f"cannot write plot {args.plot}: no such directory {d}")
    gpus = load_gpus(args.gpu)
    if args.example:
        report = _diagnose_examples(args, gpus)
        if report is None:
            return 0
    elif args.workload:
        report = _diagnose_workload(args, gpus)
    elif args.database:
        report = _diagnose_database(args, gpus)
    elif args.file:
        mod, label = load_module_file(args.file)
        name = "<stdin>" if args.file == "-" else os.path.splitext(os.path.basename(args.file))[0]
        report = _report_from_module(mod, label, name, gpus, args.measured_ms)
    else:
        raise CLIError("nothing to diagnose: give a FILE, --example, --workload NAME or --database DIR")
    if args.json:
        write_output(D.render_json(report))
    else:
        write_output(D.render_text(report, details=not args.summary, file=sys.stdout))
    if args.plot:
        write_plot(D.plot, report, args.plot, args.quiet)
    return 0


register("gpus", _add_gpus, _run_gpus)
register("extract", _add_extract, _run_extract)
register("diagnose", _add_diagnose, _run_diagnose)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------

_DISCOVERED = False


def main(argv=None) -> int:
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        _discover_plugins()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as err:
        sys.stderr.write(f"{PROG}: error: {_first_line(err)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = io.StringIO()
        finally:
            return 0
    except Exception as err:  # noqa: BLE001 - one line, no traceback, unless debugging
        if os.environ.get("COSTPASS_DEBUG"):
            raise
        sys.stderr.write(f"{PROG}: error: internal error: {type(err).__name__}: {_first_line(err)} "
                         "(COSTPASS_DEBUG=1 shows the traceback)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
