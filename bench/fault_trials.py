"""Fault-injection trials of issue 14 (first part): kill -9 at random moments and concurrent
writers, against real `skelprep` / `skeltrain` processes; prints one table row per fault.

    python bench/fault_trials.py [--trials 8] [--seed 14] [--only train-kill,build-kill,...]

Faults: train-kill (kill -9 of a training run at a random moment, then --resume, against an
uninterrupted run: every metrics.csv row equal but the timings), build-kill (kill -9 of a build
at a random moment, creation included, then --resume: every array equal to a clean build),
two-builds (a second build --overwrite of a store being built), two-runs (two `skeltrain run`
into one --run-dir started together), store-swap (a store rebuilt under a running trainer),
orphans (kill -9 of a --workers 2 build: its workers must end).

Second part: missing-chunk (one random chunk or shard file of a built store deleted: `skelprep
verify` exits 1 naming it; of a training store: `skeltrain run` exits 2 in one line, writing
nothing), flipped-byte (one random byte of a random chunk file flipped: verify exits 1 naming
the array, and a flip in fixed/joint stops training in one line), lying-header (a .skeleton whose
first line promises more frames than the file holds, or a million empty frames: the build goes
on, the report names file and line 1, peak memory stays that of a clean build), oversize (a
sparse 2 GB file in the raw folder: skipped unread by the default --max-file-mb), enospc (a
full disk, by failpoint, at a random write of a build, a training run or an embedding export:
one line, exit 2, no temporary file left; --resume (or a rerun) then equals the clean result).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.build_processes import children, parent_of

PY = sys.executable
TRAIN_SETTINGS = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=2",
                  "engine.checkpoint_every=0", "model.queue_size=16", "engine.threads=1",
                  "engine.embed_batch_size=16"]
TIMING = {"seconds", "samples_per_s"}


def skeltrain_args(store: Path, *where: str, epochs: int = 4) -> list[str]:
    sets = [x for s in TRAIN_SETTINGS for x in ("--set", s)]
    return [PY, "-m", "skelkit.train", "run", "skeletonclr", "--config", "tiny", "--store",
            str(store), "--protocol", "xsub", "--epochs", str(epochs), "--device", "cpu",
            "--no-progress", *where, *sets]


def skeltrain(store: Path, *where: str, epochs: int = 4) -> subprocess.Popen[str]:
    return subprocess.Popen(skeltrain_args(store, *where, epochs=epochs),
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


def kill_moment(draw: random.Random, clean_seconds: float) -> float:
    """A moment inside a clean run's span (5-95 % of it, start-up included), so the kill lands
    while the work runs however fast this machine is (fixed windows went stale when builds
    got faster)."""
    return draw.uniform(0.05, 0.95) * clean_seconds


def trial_train_kill(work: Path, draw: random.Random, store: Path, reference,
                     clean_seconds: float) -> str:
    run = work / "run"
    killed = kill_after(skeltrain(store, "--run-dir", str(run)),
                        kill_moment(draw, clean_seconds))
    if (run / "checkpoints" / "last.pt").is_file():
        done = skeltrain(store, "--resume", str(run))
    else:
        done = skeltrain(store, "--run-dir", str(run))
    done.communicate()
    ok = done.returncode == 0 and metrics(run) == reference
    return ("ok" if ok else "FAIL") + ("" if killed else " (ended before the kill)")


def trial_build_kill(work: Path, draw: random.Random, raw: Path, clean,
                     clean_seconds: float) -> str:
    out = work / "s.zarr"
    killed = kill_after(skelprep_build(raw, out), kill_moment(draw, clean_seconds))
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
    kids = children(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    deadline = time.monotonic() + 10
    while any(parent_of(k) is not None for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [k for k in kids if parent_of(k) is not None]
    for k in alive:
        os.kill(k, signal.SIGKILL)
    return f"ok ({len(kids)} workers ended)" if kids and not alive else f"FAIL alive {alive}"


# --- second part: damaged stores, crafted raw files, a full disk ----------------------------------

def chunk_files(store: Path) -> list[Path]:
    """Every chunk or shard file of a store (the files under an array's ``c/``)."""
    return sorted(p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts)


def array_of(store: Path, chunk: Path) -> str:
    parts = chunk.relative_to(store).parts
    return "/".join(parts[:parts.index("c")])


def run_command(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str], int]:
    """(exit code, stderr lines, peak resident memory in MB of the process) of one command."""
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [line for line in err.read().splitlines() if line.strip()]
    return p.returncode, lines, usage.ru_maxrss // 1024


def verify_cmd(store: Path) -> list[str]:
    return [PY, "-m", "skelkit.prep.cli", "verify", str(store)]


def build_cmd(raw: Path, out: Path, *extra: str) -> list[str]:
    return [PY, "-m", "skelkit.prep.cli", "build", "--dataset", "ntu60", "--raw", str(raw),
            "--out", str(out), "--workers", "1", *extra]


def trial_missing_chunk(work: Path, draw: random.Random, clean_store: Path, store: Path) -> str:
    built = work / "s.zarr"
    shutil.copytree(clean_store, built)
    lost = draw.choice(chunk_files(built))
    lost.unlink()
    code, lines, _ = run_command(verify_cmd(built))
    key = "/".join(lost.relative_to(built / array_of(built, lost)).parts)
    named = any(f"{array_of(built, lost)}: chunk file {key}" in line for line in lines)
    trained = work / "rw.zarr"
    shutil.copytree(store, trained)
    gone = draw.choice(chunk_files(trained))
    gone.unlink()
    run = work / "run"
    t = skeltrain(trained, "--run-dir", str(run))
    refused = one_line_exit_2(t) and not run.exists()
    ok = code == 1 and named and refused
    return "ok" if ok else f"FAIL verify {code} named {named}, training refused {refused}"


def flip(path: Path, draw: random.Random) -> None:
    data = bytearray(path.read_bytes())
    data[draw.randrange(len(data))] ^= 1 << draw.randrange(8)
    path.write_bytes(bytes(data))


def trial_flipped_byte(work: Path, draw: random.Random, clean_store: Path, store: Path) -> str:
    built = work / "s.zarr"
    shutil.copytree(clean_store, built)
    chunk = draw.choice(chunk_files(built))
    flip(chunk, draw)
    code, lines, _ = run_command(verify_cmd(built))
    array = array_of(built, chunk)
    named = bool(lines) and all(array in line for line in lines)
    trained = work / "rw.zarr"
    shutil.copytree(store, trained)
    flip(draw.choice(chunk_files(trained / "fixed" / "joint")), draw)
    stopped = one_line_exit_2(skeltrain(trained, "--run-dir", str(work / "run")))
    ok = code == 1 and named and stopped
    return "ok" if ok else f"FAIL verify {code} {lines[:2]}, training stopped {stopped}"


def trial_lying_header(work: Path, draw: random.Random, raw: Path, clean_peak: int) -> str:
    crafted = work / "raw"
    shutil.copytree(raw, crafted)
    victim = draw.choice(sorted(crafted.rglob("*.skeleton")))
    if draw.random() < 0.5:  # a header larger than the lines the file has
        body = victim.read_bytes().split(b"\n", 1)[1]
        victim.write_bytes(f"{draw.randint(10**4, 10**7)}\n".encode() + body)
    else:  # a true header of a million frames without a body
        victim.write_bytes(b"1000000\n" + b"0\n" * 1_000_000)
    out = work / "s.zarr"
    code, _, peak = run_command(build_cmd(crafted, out))
    from skelkit.store.reader import open_store

    skips = [s for s in open_store(out).report.get("skipped", [])] if code == 0 else []
    named = any(s["file"] == str(victim) and s["line"] == 1 for s in skips)
    ok = code == 0 and named and peak < clean_peak + 100
    return "ok" if ok else f"FAIL exit {code} named {named} peak {peak} MB (clean {clean_peak})"


def trial_oversize(work: Path, draw: random.Random, raw: Path, clean_peak: int) -> str:
    crafted = work / "raw"
    shutil.copytree(raw, crafted)
    victim = crafted / f"S001C001P{draw.randint(50, 99):03d}R001A001.skeleton"
    with open(victim, "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse
    out = work / "s.zarr"
    started = time.perf_counter()
    code, _, peak = run_command(build_cmd(crafted, out))
    seconds = time.perf_counter() - started
    from skelkit.store.reader import open_store

    skips = open_store(out).report.get("skipped", []) if code == 0 else []
    skipped = any(s["file"] == str(victim) and s["kind"] == "too_large" for s in skips)
    ok = code == 0 and skipped and peak < clean_peak + 100
    return "ok" if ok else f"FAIL exit {code} skipped {skipped} peak {peak} MB {seconds:.0f} s"


def trial_enospc(work: Path, draw: random.Random, raw: Path, clean, store: Path,
                 reference) -> str:
    site = draw.choice(["store-append", "write-checkpoint", "write-metrics", "write-embeddings"])
    if site == "store-append":
        out = work / "s.zarr"
        point = f"store-append:{draw.randint(1, 3)}"  # of 9 batches of 4 files
        small = {"SKELKIT_PREP_BATCH_SIZE": "4"}
        code, lines, _ = run_command(build_cmd(raw, out),
                                     env={**small, "SKELKIT_ENOSPC_AT": point})
        code2, _, _ = run_command(build_cmd(raw, out, "--resume"), env=small)
        after = code2 == 0 and same_arrays(arrays(out), clean)
    elif site in ("write-checkpoint", "write-metrics"):
        run = work / "run"
        point = f"{site}:{draw.randint(1, 4)}"
        code, lines, _ = run_command(skeltrain_args(store, "--run-dir", str(run)),
                                     env={"SKELKIT_ENOSPC_AT": point})
        resumed = skeltrain(store, "--resume", str(run)) if (
            run / "checkpoints" / "last.pt").is_file() else skeltrain(store, "--run-dir",
                                                                      str(run))
        resumed.communicate()
        after = resumed.returncode == 0 and metrics(run) == reference
    else:
        run = work / "run"
        skeltrain(store, "--run-dir", str(run), epochs=1).communicate()
        out = work / "e.h5"
        args = [PY, "-m", "skelkit.train", "embed", "--run", str(run), "--out", str(out),
                "--device", "cpu", "--no-progress"]
        point = site
        code, lines, _ = run_command(args, env={"SKELKIT_ENOSPC_AT": point})
        after = not out.exists() and run_command(args)[0] == 0 and out.is_file()
    # One error line, no traceback (a build's progress bar may precede it on stderr).
    one_line = (bool(lines) and "no space left on device writing" in lines[-1]
                and sum("error" in line for line in lines) == 1
                and not any("Traceback" in line for line in lines))
    clean_dir = not [p for p in work.rglob("*.partial*")]
    ok = code == 2 and one_line and clean_dir and after
    return f"ok ({point})" if ok else f"FAIL {point}: exit {code} {lines[-1:]} partial-free {clean_dir} after {after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", default="train-kill,build-kill,two-builds,two-runs,"
                                          "store-swap,orphans,missing-chunk,flipped-byte,"
                                          "lying-header,oversize,enospc")
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
    started = time.monotonic()
    skeltrain(store, "--run-dir", str(ref_run)).communicate()
    train_seconds = time.monotonic() - started
    reference = metrics(ref_run)
    started = time.monotonic()
    _, _, clean_peak = run_command(build_cmd(raw, root / "clean.zarr"))
    build_seconds = time.monotonic() - started
    print(f"clean training run {train_seconds:.1f} s, clean build {build_seconds:.1f} s: kills "
          f"land at 5-95 % of these", flush=True)
    clean = arrays(root / "clean.zarr")
    trials = {
        "train-kill": lambda w: trial_train_kill(w, draw, store, reference, train_seconds),
        "build-kill": lambda w: trial_build_kill(w, draw, raw, clean, build_seconds),
        "two-builds": lambda w: trial_two_builds(w, draw, raw, clean),
        "two-runs": lambda w: trial_two_runs(w, draw, store, reference),
        "store-swap": lambda w: trial_store_swap(w, draw),
        "orphans": lambda w: trial_orphans(w, draw, raw),
        "missing-chunk": lambda w: trial_missing_chunk(w, draw, root / "clean.zarr", store),
        "flipped-byte": lambda w: trial_flipped_byte(w, draw, root / "clean.zarr", store),
        "lying-header": lambda w: trial_lying_header(w, draw, raw, clean_peak),
        "oversize": lambda w: trial_oversize(w, draw, raw, clean_peak),
        "enospc": lambda w: trial_enospc(w, draw, raw, clean, store, reference),
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
