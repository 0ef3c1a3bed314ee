"""Peak RSS of `skelprep build` for 1x and 8x the files (issue 2, item 6): it must stay flat.

Each build runs in a fresh subprocess; the peak is the kernel's ru_maxrss of that process
(and of its worker processes, when --workers > 1), cross-checked by psutil sampling the whole
process tree (driver + workers summed).

    python bench/prep_memory.py                      # generates a set with skelprep synth
    python bench/prep_memory.py --raw DIR --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skelkit.prep.builder.batch import BATCH_SIZE_ENV

REPO = Path(__file__).resolve().parents[1]
NTU_NAME = re.compile(r"^(S\d{3}C\d{3}P\d{3})R(\d{3})(A\d{3})$")

CHILD = """
import json, resource, sys
from pathlib import Path
from skelkit.prep.builder.pipeline import BuildOptions, build_store
report = build_store(BuildOptions(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]),
                                  workers=int(sys.argv[4]), progress=False))
kib = 1 if sys.platform != "darwin" else 1 / 1024
print(json.dumps({
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 1024,
    "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 1024,
    "samples": report["samples_written"], "seconds": report["seconds"],
}))
"""


def replicate(raw: Path, dst: Path, copies: int) -> int:
    """``copies`` x the NTU files of ``raw`` in ``dst`` (links), renamed by replication number."""
    dst.mkdir(parents=True)
    n = 0
    for f in sorted(raw.rglob("*.skeleton")):
        m = NTU_NAME.match(f.stem)
        if m is None:
            continue
        for k in range(copies):
            name = f"{m.group(1)}R{int(m.group(2)) + 100 * k:03d}{m.group(3)}.skeleton"
            target = dst / name
            try:
                os.link(f, target)
            except OSError:
                os.symlink(f.resolve(), target)
            n += 1
    return n


def measure(dataset: str, raw: Path, out: Path, workers: int, batch_size: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep)}
    if batch_size:
        env[BATCH_SIZE_ENV] = str(batch_size)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, dataset, str(raw), str(out), str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    tree_peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
            tree_peak = max(tree_peak, sum(p.memory_info().rss for p in members))
        except psutil.Error:
            pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["tree_mb"] = tree_peak / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, help="an NTU folder (default: generate one with synth)")
    ap.add_argument("--dataset", default="ntu120", choices=("ntu60", "ntu120"))
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--performers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--factor", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="samples per batch (default: the build's own choice, 256 for 1 worker); "
                         "the peak plateaus once a few batches have gone through")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="skelprep_mem_", dir=args.work))
    try:
        base = args.raw
        if base is None:
            from skelkit.synth.dataset import synth_dataset

            base = work / "base"
            synth_dataset(args.dataset, base, classes=args.classes, performers=args.performers)
        rows = []
        for factor in (1, args.factor):
            raw = work / f"x{factor}"
            files = replicate(base, raw, factor)
            megabytes = sum(f.stat().st_size for f in raw.iterdir()) / 1e6
            r = measure(args.dataset, raw, work / f"x{factor}.zarr", args.workers,
                        args.batch_size)
            rows.append((factor, files, megabytes, r))
            shutil.rmtree(work / f"x{factor}.zarr", ignore_errors=True)
        print(f"workers {args.workers}, batch size {args.batch_size or 'default'}; peak RSS of the build process (max of any worker "
              f"process) and of the whole process tree")
        print(f"{'set':>5} {'files':>7} {'raw MB':>8} {'samples':>8} {'seconds':>8} "
              f"{'peak MB':>8} {'worker MB':>9} {'tree MB':>8}")
        for factor, files, megabytes, r in rows:
            print(f"{factor:>4}x {files:7d} {megabytes:8.1f} {r['samples']:8d} {r['seconds']:8.1f} "
                  f"{r['self_mb']:8.1f} {r['children_mb']:9.1f} {r['tree_mb']:8.1f}")
        (_, _, _, small), (_, _, _, big) = rows
        print(f"ratio {args.factor}x/1x: peak {big['self_mb'] / small['self_mb']:.2f}, "
              f"tree {big['tree_mb'] / max(small['tree_mb'], 1e-9):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
