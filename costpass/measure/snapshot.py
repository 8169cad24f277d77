"""Freeze a consistent part of a bundle that is still being generated, for one measurement round.

    python3 -m costpass.measure.snapshot --bundle carry/bundle_v1 --out carry/snap1.tar.xz \
        [--exclude-measured datasets/h100/records.jsonl ...] [--ids FILE] [--limit N]

Takes the manifest lines written so far (each complete line is a built candidate), the references, the
libraries, the cubins already compiled and the CUDA sources of those not compiled yet (compiled on the GPU
machine with `compile_missing.sh`), hard-links them into a staging folder named like the bundle, and packs
it as one solid tar.xz. Candidates already measured (ids in the given record files) can be left out.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _lines(path: Path):
    if not path.exists():
        return []
    opener = lzma.open if path.suffix == ".xz" else open
    out = []
    with opener(path, "rt") as f:
        for line in f:
            line = line.strip()
            if line.endswith("}"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line still being written
    return out


def snapshot(bundles, out: Path, exclude_ids=(), only_ids=None, limit=None) -> dict:
    """``bundles``: one bundle folder or several (merged; the first one names the snapshot)."""
    bundles = [Path(b) for b in ([bundles] if isinstance(bundles, (str, Path)) else bundles)]
    entries, refs, home = [], {}, {}
    for bundle in bundles:
        for e in _lines(bundle / "manifest.jsonl"):
            if e["id"] in home or e["id"] in exclude_ids or (only_ids is not None and e["id"] not in only_ids):
                continue
            if (bundle / "libs" / f"{e['id']}.so").exists():
                entries.append(e)
                home[e["id"]] = bundle
        for r in _lines(bundle / "refs.jsonl"):
            if r["workload"] not in refs and (bundle / r["lib"]).exists():
                refs[r["workload"]] = r
                home[r["id"]] = bundle
    if limit:
        entries = entries[:limit]
    workloads = {e["workload"] for e in entries}
    refs = [r for w, r in refs.items() if w in workloads]
    stage = Path(tempfile.mkdtemp(prefix="snap_", dir=out.parent))
    root = stage / bundles[0].name
    for sub in ("libs", "cubins", "sources"):
        (root / sub).mkdir(parents=True)

    def link(src: Path, dst: Path):
        if src.exists() and not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

    shas, missing = set(), 0
    for e in entries + refs:
        bundle = home[e["id"]]
        link(bundle / (e.get("lib") or f"libs/{e['id']}.so"), root / (e.get("lib") or f"libs/{e['id']}.so"))
        for sha in e.get("cuda_sha256", []):
            shas.add((sha, bundle))
    for sha, bundle in shas:
        cub = next((b / "cubins" / f"{sha}.cubin" for b in bundles if (b / "cubins" / f"{sha}.cubin").exists()),
                   None)
        if cub is not None:
            link(cub, root / "cubins" / cub.name)
        else:
            missing += 1
            link(bundle / "sources" / f"{sha}.cu", root / "sources" / f"{sha}.cu")
    with open(root / "manifest.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    with open(root / "refs.jsonl", "w") as f:
        for r in refs:
            f.write(json.dumps(r) + "\n")
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        tar = subprocess.Popen(["tar", "-C", str(stage), "--sort=name", "-cf", "-", root.name],
                               stdout=subprocess.PIPE)
        subprocess.run(["xz", "-6", "-T2", "-c"], stdin=tar.stdout, stdout=f, check=True)
        tar.stdout.close()
        tar.wait()
    os.replace(tmp, out)
    shutil.rmtree(stage)
    return {"candidates": len(entries), "workloads": len(workloads), "references": len(refs),
            "cuda_sources": len(shas), "to_compile_on_gpu": missing, "bytes": out.stat().st_size}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m costpass.measure.snapshot")
    ap.add_argument("--bundle", required=True, action="append", help="bundle folder (repeatable)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--exclude-measured", nargs="*", default=[])
    ap.add_argument("--ids", help="file with one candidate id per line to keep")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args(argv)
    exclude = set()
    for p in a.exclude_measured:
        exclude |= {r.get("candidate_id") or r.get("id") for r in _lines(Path(p))}
    only = set(Path(a.ids).read_text().split()) if a.ids else None
    print(json.dumps(snapshot(a.bundle, Path(a.out), exclude, only, a.limit)))


if __name__ == "__main__":
    main()
