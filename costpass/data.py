"""Measured datasets: load, check, summarize, merge, write.

    from costpass import data
    recs = data.load("h100")                    # datasets/h100/*.jsonl[.xz|.gz]
    recs = data.load("runs/measure.jsonl")      # one file, or a folder
    print(data.format_stats(data.stats(recs)))

Rules: a line that cannot be read is reported as ``file:line`` (a ``RecordWarning``, and in the
``problems`` list when one is given) and skipped, never silently dropped. A dataset whose records
name more than one GPU is refused (``DatasetError``): timings of two GPUs under one name would
corrupt every model trained on it. Loading by GPU name also checks that the records' GPU is that one.
"""
from __future__ import annotations

import gzip
import lzma
import os
import re
from typing import Iterable

from costpass.measure.records import (Record, RecordWarning, dumps, median, read_records)

__all__ = ["DatasetError", "RecordWarning", "Record", "DATASETS", "gpu_key", "dataset_files", "load",
           "build_kind", "select_build",
           "stats", "format_stats", "merge", "write_compressed"]

DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.xz")


class DatasetError(ValueError):
    """A dataset that must not be used as it is (e.g. records of several GPUs under one name)."""


def gpu_key(name: str) -> str:
    """Short folder name of a GPU: "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA H200" -> "h200"."""
    toks = re.split(r"[^a-z0-9]+", name.lower())
    for t in toks:
        if t != "nvidia" and re.fullmatch(r"[a-z]{1,3}\d{2,4}[a-z]*", t) and not t.startswith("hbm"):
            return t
    return "-".join(t for t in toks if t) or "unknown"


def dataset_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(SUFFIXES))


def _resolve(source: str, root: str | None) -> tuple[list[str], str | None]:
    """Files to read and, when ``source`` named a GPU, its key."""
    if os.path.isfile(source):
        return [source], None
    if os.path.isdir(source):
        return dataset_files(source), None
    root = root or DATASETS
    for key in (source, gpu_key(source)):
        folder = os.path.join(root, key)
        if os.path.isdir(folder):
            return dataset_files(folder), key
    raise FileNotFoundError(f"no dataset file, folder or GPU named {source!r} (looked in {root})")


def build_kind(r: Record) -> str:
    """``"tvm"``: the cubin was made by TVM's own compile (``costpass.measure.tvm_build``: NVRTC, fast math,
    register-usage-level 10), as TVM deploys it; ``"nvcc"``: by the measuring code's ``nvcc -O3`` (every
    record before schema 2, and schema-2 records that say so)."""
    return "tvm" if (r.build or {}).get("compiler") == "tvm" else "nvcc"


def select_build(records: list[Record], build: str | None = "auto") -> list[Record]:
    """Records of one build. ``"auto"``: TVM's build where there is any, else all (the nvcc ones): the two
    builds time the same source up to 1.5x apart, so one model never trains on both. ``None`` / ``"all"``:
    every record."""
    if build in (None, "all"):
        return list(records)
    if build == "auto":
        build = "tvm" if any(build_kind(r) == "tvm" for r in records) else "nvcc"
    if build not in ("tvm", "nvcc"):
        raise ValueError(f"build must be 'auto', 'tvm', 'nvcc' or 'all', got {build!r}")
    return [r for r in records if build_kind(r) == build]


def load(source: str, *, root: str | None = None, problems: list | None = None,
         statuses: Iterable[str] | None = None, build: str | None = "all") -> list[Record]:
    """Records of a file, a folder of files, or a GPU (``datasets/<gpu>/``).

    ``problems`` collects one ``file:line: ...`` text per skipped line; ``statuses`` keeps only
    records with those statuses (e.g. ``{"ok"}``); ``build`` keeps one build (:func:`select_build`; the
    model code passes ``"auto"``). Raises DatasetError on mixed GPUs.
    """
    files, key = _resolve(source, root)
    out: list[Record] = []
    seen: dict[str, str] = {}  # gpu name -> first file naming it
    for path in files:
        recs = read_records(path, problems)
        names = sorted({r.gpu for r in recs if r.gpu})
        if len(names) > 1:
            raise DatasetError(f"{path}: records name {len(names)} GPUs {names}; one dataset file "
                               f"holds one GPU (split it by the 'gpu' field)")
        for n in names:
            seen.setdefault(n, path)
        if len(seen) > 1:
            raise DatasetError("records of several GPUs under one dataset: "
                               + "; ".join(f"{g!r} in {p}" for g, p in seen.items()))
        out.extend(recs)
    if key is not None:
        wrong = [g for g in seen if gpu_key(g) != gpu_key(key)]
        if wrong:
            raise DatasetError(f"dataset {key!r} holds records of {wrong[0]!r} ({seen[wrong[0]]})")
    if statuses is not None:
        keep = set(statuses)
        out = [r for r in out if r.status in keep]
    return select_build(out, build)


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def stats(records: Iterable[Record]) -> list[dict]:
    """Per (GPU, workload): counts by status, median of the candidates' medians, best and worst,
    ``spread`` (worst / best median of ok candidates) and ``noise`` (median over ok candidates of
    (p90 - p10) / median of their run times)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.gpu, r.workload), []).append(r)
    rows = []
    for (gpu, wl), rs in sorted(groups.items()):
        ok = [r for r in rs if r.status == "ok" and r.median_ms is not None]
        meds = [r.median_ms for r in ok]
        noise = [(_quantile(r.run_times_ms, 0.9) - _quantile(r.run_times_ms, 0.1)) / r.median_ms
                 for r in ok if len(r.run_times_ms) >= 3 and r.median_ms > 0]
        by_status: dict[str, int] = {}
        for r in rs:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        rows.append({
            "gpu": gpu, "workload": wl, "n": len(rs), "ok": len(ok), "by_status": by_status,
            "median_of_medians_ms": median(meds), "best_ms": min(meds) if meds else None,
            "worst_ms": max(meds) if meds else None,
            "spread": (max(meds) / min(meds)) if meds and min(meds) > 0 else None,
            "noise": median(noise),
        })
    return rows


def format_stats(rows: list[dict]) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    hdr = (f"{'gpu':<24} {'workload':<28} {'n':>6} {'ok':>6} {'med_ms':>10} {'best_ms':>10} "
           f"{'spread':>9} {'noise':>7}")
    lines = [hdr, "-" * len(hdr)]
    for r in rows:
        lines.append(f"{r['gpu'][:24]:<24} {r['workload'][:28]:<28} {r['n']:>6} {r['ok']:>6} "
                     f"{f(r['median_of_medians_ms'], '.4f'):>10} {f(r['best_ms'], '.4f'):>10} "
                     f"{f(r['spread'], '.1f'):>9} {f(r['noise'], '.3f'):>7}")
    return "\n".join(lines)


def merge(*sources, dedupe: str = "exact", problems: list | None = None) -> list[Record]:
    """Records of several sources (paths for ``load`` or lists of records), in order.

    dedupe: "exact" drops records identical in every field; "latest" keeps the last record of each
    (gpu, candidate_id); "none" keeps all. GPU mixing is not checked here: ``write_compressed``
    output is checked when it is loaded.
    """
    out: list[Record] = []
    for s in sources:
        out.extend(load(s, problems=problems) if isinstance(s, (str, os.PathLike)) else list(s))
    if dedupe == "none":
        return out
    if dedupe == "exact":
        seen, keep = set(), []
        for r in out:
            k = dumps(r.to_dict())
            if k not in seen:
                seen.add(k)
                keep.append(r)
        return keep
    if dedupe == "latest":
        last: dict[tuple, Record] = {}
        for r in out:
            last.pop((r.gpu, r.candidate_id), None)
            last[(r.gpu, r.candidate_id)] = r
        return list(last.values())
    raise ValueError(f"dedupe must be exact, latest or none, not {dedupe!r}")


def write_compressed(records: Iterable[Record], path: str) -> str:
    """Write records as JSONL (.jsonl.xz, .jsonl.gz or plain .jsonl by the name), atomically."""
    if not path.endswith(SUFFIXES):
        raise ValueError(f"{path}: expected a name ending in one of {SUFFIXES}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    data = "".join(dumps(r.to_dict() if isinstance(r, Record) else r) + "\n" for r in records).encode()
    if path.endswith(".xz"):
        with lzma.open(tmp, "wb", preset=6) as f:
            f.write(data)
    elif path.endswith(".gz"):
        with gzip.open(tmp, "wb") as f:
            f.write(data)
    else:
        with open(tmp, "wb") as f:
            f.write(data)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
