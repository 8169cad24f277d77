"""Measurement records: the schema, an append-only JSONL writer and a tolerant reader.

Standard library only: this file is also imported as a sibling module by ``gpu_run.py`` and
``ncu.py`` on the GPU machine, where costpass is not installed.

A record is one measured candidate (one line of JSONL). The writer appends one whole line per
``os.write`` on an ``O_APPEND`` descriptor and fsyncs it, so a kill loses at most the line being
written; such a torn line is reported by the reader (file:line) and skipped, never silently
dropped. ``recorded_ids`` gives what a rerun with the same output file should skip.
"""
from __future__ import annotations

import gzip
import io
import json
import lzma
import math
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Iterator

SCHEMA_VERSION = 2   # 2: ``build`` (how the cubin was made); schema-1 records are nvcc -O3 builds

# ok: ran and (if checked) matched the reference. wrong: ran, output differs from the reference.
STATUSES = ("ok", "build_error", "load_error", "run_error", "timeout", "wrong")


class RecordWarning(UserWarning):
    """A line of a record file could not be read (corrupted, truncated or not a record)."""


@dataclass
class Record:
    """One measured candidate on one GPU.

    Times are milliseconds of device time between CUDA events around one launch of the
    candidate's entry function (which may hold several kernels). ``median_ms`` is the median of
    ``run_times_ms``; it is None when the candidate did not run.
    """

    workload: str
    candidate_id: str
    status: str
    origin: str = ""
    tag: str = ""
    # the device, as read on the GPU machine
    gpu: str = ""                       # name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
    driver: str = ""
    compute_capability: str = ""        # "9.0"
    sm_count: int | None = None
    l2_bytes: int | None = None
    clocks: dict = field(default_factory=dict)  # sm_mhz, mem_mhz, max_sm_mhz, max_mem_mhz, read_at, ...
    date: str = ""                      # ISO-8601 UTC time of the measurement
    # provenance (from the bundle manifest)
    costpass_commit: str = ""
    tvm_version: str = ""
    seed: int | None = None
    trace_json: list | str = ""         # the schedule: MetaSchedule trace JSON (with decisions)
    params: dict = field(default_factory=dict)
    flops: float | None = None
    min_bytes: float | None = None
    # the measurement
    repeats: int = 0
    run_times_ms: list = field(default_factory=list)
    median_ms: float | None = None
    timing: dict = field(default_factory=dict)       # method, l2_flush, probe_ms, spin_ms, load_ms, ...
    correctness: dict | None = None     # {"rel_l2", "tol", "ok", "all_written"} when checked
    error: str | None = None
    build: dict = field(default_factory=dict)        # how the cubin was made (``build_of``); {} = nvcc -O3
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)        # keys this version does not know, kept verbatim

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r} (expected one of {STATUSES})")
        if not self.workload or not self.candidate_id:
            raise ValueError("a record needs a workload and a candidate_id")
        if not isinstance(self.run_times_ms, list) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in self.run_times_ms
        ):
            raise ValueError("run_times_ms must be a list of numbers")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        d = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            d[f.name] = getattr(self, f.name)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        if not isinstance(d, dict):
            raise ValueError(f"a record is a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in known}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known and k != "extra"})
        missing = [k for k in ("workload", "candidate_id", "status") if k not in kw]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        return cls(**kw, extra=extra)


def median(xs: Iterable[float]) -> float | None:
    s = sorted(float(x) for x in xs)
    if not s:
        return None
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def dumps(d: dict) -> str:
    """One JSON line, no NaN/Infinity (they are not JSON): such floats become null."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(d), separators=(",", ":"), allow_nan=False)


class JsonlWriter:
    """Append-only JSONL file: one ``os.write`` per line on an O_APPEND descriptor, then fsync.

    If the file ends in a torn line (a kill during a write), a newline is written first so the
    fragment stays a line of its own (reported by the reader) instead of swallowing the next record.
    """

    def __init__(self, path: str, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self.fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self.fd, b"\n")

    def append(self, rec: "Record | dict") -> None:
        d = rec.to_dict() if isinstance(rec, Record) else rec
        data = (dumps(d) + "\n").encode()
        n = os.write(self.fd, data)
        while n < len(data):  # regular files write everything; be safe anyway
            n += os.write(self.fd, data[n:])
        if self.fsync:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_text(path: str):
    """Open .jsonl, .jsonl.xz or .jsonl.gz for reading text."""
    if path.endswith(".xz"):
        return io.TextIOWrapper(lzma.open(path, "rb"), encoding="utf-8", errors="replace")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def iter_json_lines(path: str, problems: list | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each readable line; warn (file:line) about the others.

    A compressed file cut short is reported too (as the line where reading stopped).
    """
    lineno = 0
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError(f"not a JSON object ({type(obj).__name__})")
                except ValueError as e:
                    _report(path, lineno, f"corrupted line skipped: {e}", problems)
                    continue
                yield lineno, obj
        except (EOFError, lzma.LZMAError, OSError) as e:
            _report(path, lineno + 1, f"file truncated or unreadable from here on: {e}", problems)


def _report(path, lineno, msg, problems):
    text = f"{path}:{lineno}: {msg}"
    if problems is not None:
        problems.append(text)
    warnings.warn(text, RecordWarning, stacklevel=3)


def read_records(path: str, problems: list | None = None) -> list[Record]:
    """All records of one file; unreadable lines and invalid records are reported and skipped."""
    out = []
    for lineno, obj in iter_json_lines(path, problems):
        try:
            out.append(Record.from_dict(obj))
        except (TypeError, ValueError) as e:
            _report(path, lineno, f"invalid record skipped: {e}", problems)
    return out


def recorded_ids(path: str, redo_status: Iterable[str] = ()) -> set[str]:
    """candidate_ids already in ``path`` (a rerun skips them), except those whose latest record
    has a status in ``redo_status``."""
    redo = set(redo_status)
    last: dict[str, str] = {}
    if not os.path.exists(path):
        return set()
    for _, obj in iter_json_lines(path):
        cid = obj.get("candidate_id")
        if isinstance(cid, str):
            last[cid] = obj.get("status", "")
    return {c for c, s in last.items() if s not in redo}
