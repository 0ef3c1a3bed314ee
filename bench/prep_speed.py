"""Builds one NTU set twice, one worker each: a plain-Python reader vs skelprep (issue 2, item 6).

The plain-Python side reads files the way the published gendata scripts do (readline, split,
a dict per joint, numpy per frame), then does the same preparation in numpy (energy body
selection, CMD normalisation, IKEM 50-frame preparation, six modalities) and the same store
writes in the same batches. The skelprep side is ``skelprep build --workers 1``. Both are timed
end to end including the store writes; numba is warmed up first (its cache is on disk).

    python bench/prep_speed.py                      # generates a set with skelprep synth
    python bench/prep_speed.py --raw DIR --limit 300
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelkit.prep.builder.batch import PreparedBatch, make_batches, to_sample_batch
from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.prep.formats import get_dataset
from skelkit.store import Layout, get_layout
from skelkit.store.schema import MAX_BODIES, MODALITIES
from skelkit.store.writer import StoreWriter

BODY_KEYS = ("bodyID", "clipedEdges", "handLeftConfidence", "handLeftState",
             "handRightConfidence", "handRightState", "isResticted", "leanX", "leanY",
             "trackingState")
JOINT_KEYS = ("x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW",
              "orientationX", "orientationY", "orientationZ", "trackingState")


# ---------------------------------------------------------------------------------------------
# The plain-Python reader, in the style of the published NTU gendata scripts.


def read_skeleton(path: str) -> dict:
    with open(path) as f:
        info = {"numFrame": int(f.readline()), "frameInfo": []}
        for _ in range(info["numFrame"]):
            frame = {"numBody": int(f.readline()), "bodyInfo": []}
            for _ in range(frame["numBody"]):
                body = dict(zip(BODY_KEYS, f.readline().split()))
                body["numJoint"] = int(f.readline())
                body["jointInfo"] = []
                for _ in range(body["numJoint"]):
                    joint = {k: float(v) for k, v in zip(JOINT_KEYS, f.readline().split())}
                    body["jointInfo"].append(joint)
                frame["bodyInfo"].append(body)
            info["frameInfo"].append(frame)
    return info


def nonzero_energy(body: np.ndarray) -> float:
    """Sum over x, y, z of the std over joints of the body's non-zero frames."""
    frames = body[body.sum(axis=(1, 2)) != 0]
    if len(frames) == 0:
        return 0.0
    return float(frames.reshape(-1, 3).std(axis=0).sum())


def read_xyz(path: str, num_joints: int, max_slots: int = 4) -> np.ndarray:
    seq = read_skeleton(path)
    data = np.zeros((max_slots, seq["numFrame"], num_joints, 3), dtype=np.float32)
    for t, frame in enumerate(seq["frameInfo"]):
        for m, body in enumerate(frame["bodyInfo"]):
            if m >= max_slots:
                continue
            for v, joint in enumerate(body["jointInfo"][:num_joints]):
                data[m, t, v, :] = [joint["x"], joint["y"], joint["z"]]
    energy = np.array([nonzero_energy(b) for b in data])
    return data[np.argsort(-energy, kind="stable")[:MAX_BODIES]]  # (M, T, V, 3)


# ---------------------------------------------------------------------------------------------
# The same preparation in numpy.


def rotation_to(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    axis = np.cross(v, target)
    norm = np.linalg.norm(v)
    if norm < 1e-6 or np.abs(axis).sum() < 1e-6:
        return np.eye(3)
    angle = math.acos(np.clip(np.dot(v, target) / norm, -1.0, 1.0))
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def cmd_normalize(x: np.ndarray, layout: Layout) -> np.ndarray:
    s = x.astype(np.float64)
    for m in range(s.shape[0]):
        person = s[m]
        present = person.reshape(len(person), -1).any(axis=1)
        if not present.any():
            continue
        last = int(np.flatnonzero(present)[-1]) + 1
        person[last:] = np.resize(person[:last], person[last:].shape)  # repeat from the start
    mask = s.any(axis=-1, keepdims=True)
    s = (s - s[0:1, :, layout.center_joint:layout.center_joint + 1]) * mask
    bottom, top = layout.z_axis
    rz = rotation_to(s[0, 0, top] - s[0, 0, bottom], np.array([0.0, 0.0, 1.0]))
    s = np.where(mask, s @ rz.T, 0)
    left, right = layout.x_axis
    rx = rotation_to(s[0, 0, right] - s[0, 0, left], np.array([1.0, 0.0, 0.0]))
    s = np.where(mask, s @ rx.T, 0)
    return s.astype(np.float32)


def cmd_normalize_loops(x: np.ndarray, layout: Layout) -> np.ndarray:
    """The same steps with the published routine's per-frame / per-joint loops and np.dot."""
    s = x.astype(np.float64)
    for m in range(s.shape[0]):
        person = s[m]
        if person.sum() == 0:
            continue
        for t, frame in enumerate(person):
            if frame.sum() == 0 and person[t:].sum() == 0:
                rest = len(person) - t
                person[t:] = np.concatenate([person[:t]] * (rest // t + 1))[:rest]
                break
    center = s[0, :, layout.center_joint:layout.center_joint + 1, :].copy()
    for m in range(s.shape[0]):
        if s[m].sum() == 0:
            continue
        mask = (s[m].sum(-1) != 0).reshape(s.shape[1], s.shape[2], 1)
        s[m] = (s[m] - center) * mask
    for (a, b), target in ((layout.z_axis, (0.0, 0.0, 1.0)), (layout.x_axis, (1.0, 0.0, 0.0))):
        rot = rotation_to(s[0, 0, b] - s[0, 0, a], np.array(target))
        for m in range(s.shape[0]):
            for t in range(s.shape[1]):
                for v in range(s.shape[2]):
                    if s[m, t, v].sum() != 0:
                        s[m, t, v] = np.dot(rot, s[m, t, v])
    return s.astype(np.float32)


def ikem_fixed(x: np.ndarray, layout: Layout, frames: int) -> np.ndarray:
    x = x - x[:, :, layout.fixed_origin_joint:layout.fixed_origin_joint + 1]
    length = max(1, int(x[0, :, layout.presence_joint].any(axis=-1).sum()))
    src = np.clip((np.arange(frames) + 0.5) * length / frames - 0.5, 0, length - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, length - 1)
    w = (src - lo)[None, :, None, None]
    y = x[:, lo] * (1 - w) + x[:, hi] * w
    left, right = layout.x_axis
    d = y[0, :, right] - y[0, :, left]
    angle = np.arctan2(d[:, 2], d[:, 0])
    c, s = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]
    out = y.copy()
    out[..., 0] = c * y[..., 0] + s * y[..., 2]
    out[..., 2] = -s * y[..., 0] + c * y[..., 2]
    return out.astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def modalities(j: np.ndarray, gamma: float, layout: Layout) -> dict[str, np.ndarray]:
    parents = np.asarray(layout.parents)
    partners = np.asarray([w for _, w in layout.hinges])
    motion = np.zeros_like(j)
    motion[:, :-1] = (j[:, 1:] - j[:, :-1]) / gamma
    acceleration = np.zeros_like(j)
    acceleration[:, :-2] = (motion[:, 1:-1] - motion[:, :-2]) / gamma
    bone = j - j[:, :, parents]
    tn = layout.torso_normal
    if tn is not None:
        bone[:, :, tn.joint] = unit(np.cross(bone[:, :, tn.a] - bone[:, :, tn.c],
                                             bone[:, :, tn.b] - bone[:, :, tn.c]))
    cross = np.cross(bone, bone[:, :, partners])
    axis = unit(cross)
    u, w = unit(bone), unit(bone[:, :, partners])
    theta = np.arctan2(np.linalg.norm(np.cross(u, w), axis=-1), (u * w).sum(-1))
    omega = np.zeros_like(j)
    omega[:, :-1] = axis[:, :-1] * ((theta[:, 1:] - theta[:, :-1]) / gamma)[..., None]
    return {"joint": j, "motion": motion, "bone": bone, "acceleration": acceleration,
            "axis": axis, "angular_velocity": omega}


def plain_prepare_batch(tasks, layout: Layout, frames: int, loops: bool) -> PreparedBatch:
    specs, raws, fixed, nf, nb, gm = [], [], {m: [] for m in MODALITIES}, [], [], []
    for task in tasks:
        bodies = read_xyz(task.file, layout.num_joints)
        t = bodies.shape[1]
        gamma = t / frames
        normalised = (cmd_normalize_loops if loops else cmd_normalize)(bodies, layout)
        raws.append(np.ascontiguousarray(normalised.transpose(1, 3, 2, 0)))
        mods = modalities(ikem_fixed(bodies, layout, frames), gamma, layout)
        for m in MODALITIES:
            fixed[m].append(mods[m].transpose(3, 1, 2, 0).astype(np.float32))
        specs.append(task.samples[0])
        nf.append(t)
        nb.append(int(bodies.reshape(len(bodies), -1).any(axis=1).sum()))
        gm.append(gamma)
    return PreparedBatch(specs, raws, {m: np.stack(v) for m, v in fixed.items()},
                         np.array(nf, np.int32), np.array(nb, np.int8), np.array(gm, np.float32),
                         files=len(tasks), bytes=sum(t.size for t in tasks))


def plain_build(raw: Path, out: Path, dataset_name: str, loops: bool, frames: int = 50) -> int:
    dataset = get_dataset(dataset_name)
    layout = get_layout(dataset.layout)
    disc = dataset.discover(raw)
    writer = StoreWriter.create(
        out, dataset=dataset.name, layout=layout, frames=frames, max_bodies=MAX_BODIES,
        modalities=list(MODALITIES), normalisation={"bench": "plain python"}, source={},
        protocols=list(dataset.protocols), overwrite=True,
    )
    for i, batch in enumerate(make_batches(disc.tasks, 256)):
        writer.append(to_sample_batch(plain_prepare_batch(batch, layout, frames, loops), dataset,
                                      disc.split_lists))
        writer.commit_progress({"batches_done": i + 1})
    writer.finalize({})
    return writer.n_samples


# ---------------------------------------------------------------------------------------------


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def subset(raw: Path, limit: int | None, work: Path) -> Path:
    files = sorted(raw.rglob("*.skeleton"))
    if limit is None or limit >= len(files):
        return raw
    picked = work / "raw_subset"
    picked.mkdir()
    for f in files[:limit]:
        os.symlink(f.resolve(), picked / f.name)
    return picked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, help="an NTU folder (default: generate one with synth)")
    ap.add_argument("--dataset", default="ntu120", choices=("ntu60", "ntu120"))
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--performers", type=int, default=4)
    ap.add_argument("--published-loops", action="store_true",
                    help="plain side rotates joint by joint with np.dot, as the published "
                         "pre-normalisation does (default: vectorised numpy, the kinder baseline)")
    ap.add_argument("--limit", type=int, default=None, help="use the first N files only")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="skelprep_bench_", dir=args.work))
    try:
        raw = args.raw
        if raw is None:
            from skelkit.synth.dataset import synth_dataset

            raw = work / "raw"
            synth_dataset(args.dataset, raw, classes=args.classes, performers=args.performers)
        raw = subset(raw, args.limit, work)
        files = sorted(raw.rglob("*.skeleton"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6

        # Warm-up: numba loads its compiled kernels from the on-disk cache on first call.
        warm = work / "warm"
        warm.mkdir()
        os.symlink(files[0].resolve(), warm / files[0].name)
        build_store(BuildOptions(args.dataset, warm, work / "warm.zarr", workers=1,
                                 progress=False))

        plain_s, plain_cpu = timed(
            lambda: plain_build(raw, work / "plain.zarr", args.dataset, args.published_loops))
        report = {}

        def fast() -> None:
            report.update(build_store(BuildOptions(args.dataset, raw, work / "skelprep.zarr",
                                                   workers=1, progress=False)))

        fast_s, fast_cpu = timed(fast)
        n = len(files)
        style = "per-joint loops" if args.published_loops else "vectorised numpy"
        print(f"plain normalisation: {style}")
        print(f"files {n}, raw text {megabytes:.1f} MB, one worker each, end to end with "
              f"store writes (samples written: {report['samples_written']})")
        print("wall = elapsed seconds; cpu = process CPU seconds (all threads), the per-core "
              "figure on a shared machine")
        print(f"{'':10} {'wall s':>8} {'files/s':>8} {'MB/s':>7} {'cpu s':>8} {'files/s':>8} "
              f"{'MB/s':>7}")
        for name, wall, cpu in (("plain", plain_s, plain_cpu), ("skelprep", fast_s, fast_cpu)):
            print(f"{name:10} {wall:8.2f} {n / wall:8.1f} {megabytes / wall:7.2f} {cpu:8.2f} "
                  f"{n / cpu:8.1f} {megabytes / cpu:7.2f}")
        print(f"ratio      wall {plain_s / fast_s:.1f}x, cpu {plain_cpu / fast_cpu:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
