"""Fault-injection trials of issue 14 (first part): kill -9 at random moments and concurrent
writers, against real `skelprep` / `skeltrain` processes; prints one table row per fault.

    python bench/fault_trials.py [--trials 8] [--seed 14] [--only train-kill,build-kill,...]

Faults: train-kill (kill -9 of a training run at a random moment, then --resume, against an
uninterrupted run: every metrics.csv row equal but the timings), build-kill (kill -9 of a build
at a random moment, creation included, then --resume: every array equal to a clean build),
two-builds (a second build --overwrite of a store being built), two-runs (two `skeltrain run`
into one --run-dir started together), store-swap (a store rebuilt under a running trainer),
orphans (kill -9 of a --workers 2 build: its workers must end).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable
TRAIN_SETTINGS = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=2",
                  "engine.checkpoint_every=0", "model.queue_size=16", "engine.threads=1",
                  "engine.embed_batch_size=16"]
TIMING = {"seconds", "samples_per_s"}


def skeltrain(store: Path, *where: str, epochs: int = 4) -> subprocess.Popen[str]:
    sets = [x for s in TRAIN_SETTINGS for x in ("--set", s)]
    return subprocess.Popen([PY, "-m", "skelkit.train", "run", "skeletonclr", "--config", "tiny",
                             "--store", str(store), "--protocol", "xsub", "--epochs", str(epochs),
                             "--device", "cpu", "--no-progress", *where, *sets],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def skelprep_build(raw: Path, out: Path, *extra: str, slow: bool = False,
                   workers: int = 1) -> subprocess.Popen[str]:
    env = {**os.environ}
    if slow:
        env.update(SKELKIT_PREP_BATCH_SIZE="2", SKELKIT_PREP_BATCH_PAUSE="0.3")
    return subprocess.Popen([PY, "-m", "skelkit.prep.cli", "build", "--dataset", "ntu60",
                             "--raw", str(raw), "--out", str(out), "--workers", str(workers),
                             *extra], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def arrays(path: Path) -> dict[str, np.ndarray]:
    from skelkit.store.reader import open_store

    s = open_store(path)
    out = {f"samples/{c}": s.samples[c].to_numpy() for c in s.samples.columns}
    out.update({f"fixed/{m}": np.asarray(s.fixed(m)[:]) for m in s.modalities})
    out["raw/joint"] = np.asarray(s.group["raw/joint"][:])
    out["raw/offsets"] = s.offsets
    return out


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def kill_after(process: subprocess.Popen[str], seconds: float) -> bool:
    """kill -9 after ``seconds`` unless it ended first; True when it was killed."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = process.poll() is None
    process.kill()
    process.communicate()
    return killed


def one_line_exit_2(process: subprocess.Popen[str], timeout: float = 300) -> bool:
    _, err = process.communicate(timeout=timeout)
    return process.returncode == 2 and len(err.strip().splitlines()) == 1


def trial_train_kill(work: Path, draw: random.Random, store: Path, reference) -> str:
    run = work / "run"
    killed = kill_after(skeltrain(store, "--run-dir", str(run)), draw.uniform(2.0, 14.0))
    if (run / "checkpoints" / "last.pt").is_file():
        done = skeltrain(store, "--resume", str(run))
    else:
        done = skeltrain(store, "--run-dir", str(run))
    done.communicate()
    ok = done.returncode == 0 and metrics(run) == reference
    return ("ok" if ok else "FAIL") + ("" if killed else " (ended before the kill)")


def trial_build_kill(work: Path, draw: random.Random, raw: Path, clean) -> str:
    out = work / "s.zarr"
    killed = kill_after(skelprep_build(raw, out), draw.uniform(0.5, 4.0))
    done = skelprep_build(raw, out, "--resume")
    done.communicate()
    ok = done.returncode == 0 and same_arrays(arrays(out), clean)
    return ("ok" if ok else "FAIL") + ("" if killed else " (ended before the kill)")


def trial_two_builds(work: Path, draw: random.Random, raw: Path, clean) -> str:
    out = work / "s.zarr"
    first = skelprep_build(raw, out, slow=True)
    while not (out / "zarr.json").is_file() and first.poll() is None:
        time.sleep(0.02)
    time.sleep(draw.uniform(0.0, 1.0))
    refused = one_line_exit_2(skelprep_build(raw, out, draw.choice(["--overwrite", "--resume"])))
    first.communicate()
    ok = refused and first.returncode == 0 and same_arrays(arrays(out), clean)
    return "ok" if ok else "FAIL"


def trial_two_runs(work: Path, draw: random.Random, store: Path, reference) -> str:
    run = work / "run"
    a = skeltrain(store, "--run-dir", str(run))
    time.sleep(draw.uniform(0.0, 0.5))
    b = skeltrain(store, "--run-dir", str(run))
    codes = []
    for p in (a, b):
        _, err = p.communicate()
        codes.append((p.returncode, len(err.strip().splitlines())))
    ok = sorted(c for c, _ in codes) == [0, 2] and all(n == 1 for c, n in codes if c == 2)
    ok = ok and metrics(run) == reference and not (run / "writer.lock").exists()
    return "ok" if ok else f"FAIL {codes}"


def trial_store_swap(work: Path, draw: random.Random) -> str:
    from skelkit.train.data import write_random_walk_store

    store = write_random_walk_store(work / "rw.zarr", classes=3, per_class=6, frames=(20, 40))
    run = work / "run"
    trainer = skeltrain(store, "--run-dir", str(run), epochs=200)
    while not (run / "checkpoints" / "last.pt").is_file() and trainer.poll() is None:
        time.sleep(0.05)
    time.sleep(draw.uniform(0.0, 2.0))
    write_random_walk_store(store, classes=3, per_class=6, frames=(20, 40), seed=9)
    return "ok" if one_line_exit_2(trainer, timeout=120) else "FAIL"


def trial_orphans(work: Path, draw: random.Random, raw: Path) -> str:
    out = work / "s.zarr"
    driver = skelprep_build(raw, out, slow=True, workers=2)
    time.sleep(draw.uniform(3.0, 6.0))
    kids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()
            and _ppid(int(e.name)) == driver.pid]
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    deadline = time.monotonic() + 10
    while any(_ppid(k) is not None for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [k for k in kids if _ppid(k) is not None]
    for k in alive:
        os.kill(k, signal.SIGKILL)
    return f"ok ({len(kids)} workers ended)" if kids and not alive else f"FAIL alive {alive}"


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", default="train-kill,build-kill,two-builds,two-runs,"
                                          "store-swap,orphans")
    args = parser.parse_args()
    from skelkit.train.data import write_random_walk_store

    draw = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="skelkit-faults-"))
    raw = root / "raw"
    subprocess.run([PY, "-m", "skelkit.prep.cli", "synth", "--dataset", "ntu60", "--out",
                    str(raw), "--classes", "3", "--performers", "2", "--nuisance", "none"],
                   check=True, capture_output=True)
    store = write_random_walk_store(root / "rw.zarr", classes=3, per_class=6, frames=(20, 40),
                                    seed=3)
    ref_run = root / "reference"
    skeltrain(store, "--run-dir", str(ref_run)).communicate()
    reference = metrics(ref_run)
    skelprep_build(raw, root / "clean.zarr").communicate()
    clean = arrays(root / "clean.zarr")
    trials = {
        "train-kill": lambda w: trial_train_kill(w, draw, store, reference),
        "build-kill": lambda w: trial_build_kill(w, draw, raw, clean),
        "two-builds": lambda w: trial_two_builds(w, draw, raw, clean),
        "two-runs": lambda w: trial_two_runs(w, draw, store, reference),
        "store-swap": lambda w: trial_store_swap(w, draw),
        "orphans": lambda w: trial_orphans(w, draw, raw),
    }
    print("| fault | trials | result |\n| --- | --- | --- |", flush=True)
    for name in args.only.split(","):
        outcomes = []
        for i in range(args.trials):
            work = root / f"{name}-{i}"
            work.mkdir()
            outcomes.append(trials[name](work))
        passed = sum(o.startswith("ok") for o in outcomes)
        notes = {o: outcomes.count(o) for o in outcomes if o != "ok"}
        print(f"| {name} | {args.trials} | {passed}/{args.trials} ok"
              f"{''.join(f'; {n}x {o}' for o, n in notes.items())} |", flush=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
