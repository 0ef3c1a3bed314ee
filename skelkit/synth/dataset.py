"""``skelprep synth``: a small dataset in the genuine raw formats, with the nuisance of real data.

Every NTU take (setup, performer, replication, action) is one performance seen by up to three
cameras, as in NTU RGB+D; PKU-MMD II videos chain several actions of one subject seen from the
views L, M, R. Random streams are keyed by what they describe (a performer, a setup's rig, a take,
one camera's file), so a sample does not change when the set around it grows or shrinks.

:func:`iter_ntu_samples` and :func:`iter_pku_videos` give the clean arrays and metadata before
any text formatting; :func:`synth_dataset` writes the files.

Action ids are spread over the dataset's range (``pick_actions``), so with fewer classes than the
dataset has, the 0-based labels (action - 1) are not contiguous: count classes with
``np.unique``, size classifier heads with ``max(label) + 1`` or remap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from skelkit.store.layout import NTU25, Layout
from skelkit.synth.body import Performer, Skeleton, make_performer, rot_y, skeleton_for
from skelkit.synth.motion import (
    ClassProgram,
    class_program,
    is_mutual,
    perform,
)
from skelkit.synth.nuisance import DEFAULT_NUISANCE, Nuisance, nuisance_level
from skelkit.synth.plan import (
    PKU_VIEWS,
    PKU_XVIEW_TRAIN,
    DatasetSpec,
    dataset_spec,
    missing_names,
    ntu_name,
    ntu_setup,
    pick_actions,
    pick_performers,
    pku_video_name,
)
from skelkit.synth.scene import (
    Body,
    Placement,
    Rig,
    camera_pose,
    drop_joints,
    make_rig,
    new_body_id,
    sense,
    spurious_body,
    world_actor,
)
from skelkit.synth.text import ntu_text, pku_labels_text, pku_split_text, pku_text

DEFAULT_CLASSES = 20
DEFAULT_PERFORMERS = 10
# Stream tags: the first key of every RNG so different streams never coincide.
_PERSON, _RIG, _TAKE, _CAMERA, _VIDEO, _DROPOUT = 1, 2, 3, 4, 5, 6
_PARTNER_OFFSET = 1000  # the partner in a two-person action is another (unlisted) person


@dataclass
class SynthSample:
    """One NTU file before formatting: its bodies in camera space and its metadata."""

    name: str
    action: int
    setup: int
    camera: int
    performer: int
    replication: int
    num_frames: int
    bodies: list[Body]
    """Actors first (body 0 is the main actor), then spurious detections."""

    @property
    def label(self) -> int:
        return self.action - 1

    def actor_joints(self, max_bodies: int = 2) -> np.ndarray:
        """(T, max_bodies, V, 3) actor joints, zeros in frames where an actor is absent."""
        return dense_joints([b for b in self.bodies if not b.spurious], self.num_frames,
                            max_bodies)


@dataclass
class SynthVideo:
    """One PKU-MMD II video (one subject, one take, one view) before formatting."""

    name: str
    subject: int
    take: int
    camera: int
    num_frames: int
    bodies: list[Body]
    clips: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(action 1-based, start, end exclusive, confidence)."""


def dense_joints(bodies: list[Body], num_frames: int, max_bodies: int) -> np.ndarray:
    v = bodies[0].joints.shape[1] if bodies else 25
    out = np.zeros((num_frames, max_bodies, v, 3))
    for slot, body in enumerate(bodies[:max_bodies]):
        stop = min(num_frames, body.first_frame + body.num_frames)
        out[body.first_frame:stop, slot] = body.joints[: stop - body.first_frame]
    return out


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


class _Cast:
    """Performers and rigs of one generated set, built once each."""

    def __init__(self, skel: Skeleton, seed: int, nuisance: Nuisance) -> None:
        self.skel = skel
        self.seed = seed
        self.nuisance = nuisance
        self._people: dict[int, Performer] = {}

    def person(self, pid: int) -> Performer:
        if pid not in self._people:
            self._people[pid] = make_performer(self.skel, pid, _rng(self.seed, _PERSON, pid),
                                               self.nuisance)
        return self._people[pid]

    def rig(self, setup: int) -> Rig:
        return make_rig(_rng(self.seed, _RIG, setup), self.nuisance)


@cache
def _program(action: int) -> ClassProgram:
    return class_program(action)


def _take_length(program: ClassProgram, person: Performer, frames: tuple[int, int],
                 rng: np.random.Generator, nuisance: Nuisance) -> int:
    lo, hi = frames
    typical = lo + program.duration * (hi - lo)
    length = typical / person.tempo * np.exp(rng.normal(0.0, nuisance.take_length_sd))
    return int(np.clip(round(length), lo, hi))


def _placements(mutual: bool, facing: float, rng: np.random.Generator) -> list[Placement]:
    centre = np.array([rng.normal(0.0, 0.15), 0.0, rng.normal(0.0, 0.2)])
    if not mutual:
        return [Placement(facing, centre)]
    axis = facing + rng.normal(0.0, np.radians(15.0))
    gap = rng.uniform(1.0, 1.6)
    side = rot_y(np.array(axis)) @ np.array([gap / 2, 0.0, 0.0])
    # Facing -z turned by -90 degrees faces +x: the two actors look at each other.
    return [Placement(axis - np.pi / 2, centre - side), Placement(axis + np.pi / 2, centre + side)]


def _crop(body: Body, start: int, stop: int) -> Body | None:
    """The part of ``body`` inside frames start..stop-1 (None when nothing is left)."""
    lo = max(start, body.first_frame)
    hi = min(stop, body.first_frame + body.num_frames)
    if hi <= lo:
        return None
    k0, k1 = lo - body.first_frame, hi - body.first_frame
    return Body(body.body_id, lo, body.joints[k0:k1], body.orientation[k0:k1],
                body.tracking[k0:k1], body.hands[k0:k1], body.spurious)


def iter_ntu_samples(
    dataset: str = "ntu60",
    *,
    classes: int | None = None,
    performers: int | None = None,
    seed: int = 0,
    cameras: int = 3,
    replications: int = 2,
    frames: tuple[int, int] | None = None,
    layout: Layout = NTU25,
    nuisance: str | Nuisance = DEFAULT_NUISANCE,
) -> Iterator[SynthSample]:
    """Every sample of a synthetic NTU set, in a fixed order, before text formatting."""
    spec = dataset_spec(dataset)
    if spec.name == "pku2":
        raise ValueError("iter_ntu_samples: use iter_pku_videos for pku2")
    nz, frames, skel, cast, actions, people = _plan(spec, classes, performers, seed, cameras,
                                                    replications, frames, layout, nuisance)
    skip = missing_names(spec)
    for pid in people:
        for action in actions:
            setup = ntu_setup(pid, action)
            rig = cast.rig(setup)
            for rep in range(1, replications + 1):
                take_rng = _rng(seed, _TAKE, setup, pid, rep, action)
                program = _program(action)
                actors = (cast.person(pid), cast.person(pid + _PARTNER_OFFSET))
                t_len = _take_length(program, actors[0], frames, take_rng, nz)
                performance = perform(program, actors, t_len, take_rng, nz)
                # R001 faces the left camera, R002 the right one (NTU's protocol).
                facing = (1.0 if rep % 2 else -1.0) * np.radians(30.0)
                facing += take_rng.normal(0.0, np.radians(10.0))
                places = _placements(len(program.actors) > 1, facing, take_rng)
                world = [world_actor(skel, actors[i], performance.angles[i], places[i])
                         for i in range(len(program.actors))]
                for camera in range(1, cameras + 1):
                    name = ntu_name(setup, camera, pid, rep, action)
                    if name in skip:
                        continue
                    key = (seed, setup, camera, pid, rep, action)
                    cam_rng = _rng(key[0], _CAMERA, *key[1:])
                    bodies, n_frames = _camera_bodies(skel, world, rig, camera, t_len, frames[0],
                                                      cam_rng, nz)
                    if nz.dropout_rate > 0:  # its own stream: level "none" draws nothing here
                        drop_rng = _rng(key[0], _DROPOUT, *key[1:])
                        for body in bodies:
                            if not body.spurious:
                                drop_joints(skel, body, drop_rng, nz)
                    yield SynthSample(name, action, setup, camera, pid, rep, n_frames, bodies)


def _camera_bodies(skel: Skeleton, world, rig, camera: int, t_len: int, min_frames: int,
                   rng: np.random.Generator, nz: Nuisance) -> tuple[list[Body], int]:
    """One camera's bodies and frame count: the cameras were not started together, so each
    file covers a slightly different stretch of the take."""
    pose = camera_pose(rig, camera, rng, nz)
    first_id = new_body_id(rng)
    spare = max(0, t_len - min_frames)
    start = min(int(rng.integers(0, 8)), spare)
    t_len -= start + min(int(rng.integers(0, 8)), spare - start)
    bodies = [sense(skel, pos[start:start + t_len], rot[start:start + t_len], pose, rng,
                    first_id + 1 + 3 * i, nuisance=nz)
              for i, (pos, rot) in enumerate(world)]
    # Kinect often finds the actors a few frames late or loses them before the end.
    lead = int(rng.integers(1, 9)) if rng.random() < 0.2 else 0
    tail = int(rng.integers(1, 6)) if rng.random() < 0.1 else 0
    kept = []
    for i, body in enumerate(bodies):
        late = int(rng.integers(1, 11)) if i > 0 and rng.random() < 0.2 else 0
        cropped = _crop(body, lead + late, t_len - tail)
        if cropped is not None:
            kept.append(cropped)
    if rng.random() < 0.12:
        kept.append(spurious_body(skel, t_len, rng, first_id + 50 + int(rng.integers(0, 40))))
    return kept, t_len


def iter_pku_videos(
    *,
    classes: int | None = None,
    performers: int | None = None,
    seed: int = 0,
    cameras: int = 3,
    replications: int = 2,
    frames: tuple[int, int] | None = None,
    layout: Layout = NTU25,
    nuisance: str | Nuisance = DEFAULT_NUISANCE,
) -> Iterator[SynthVideo]:
    """Every video of a synthetic PKU-MMD II set: each (subject, take) performs every chosen
    action once, in its own order, with idle gaps, seen from each view."""
    spec = dataset_spec("pku2")
    nz, frames, skel, cast, actions, subjects = _plan(spec, classes, performers, seed, cameras,
                                                      replications, frames, layout, nuisance)
    for subject in subjects:
        rig = cast.rig(subject)  # each subject recorded in its own session
        for take in range(1, replications + 1):
            rng = _rng(seed, _VIDEO, subject, take)
            world, clips, t_total = _pku_take(skel, cast, subject, actions, frames, rng, nz)
            for camera in range(1, cameras + 1):
                cam_rng = _rng(seed, _CAMERA, subject, take, camera)
                pose = camera_pose(rig, camera, cam_rng, nz)
                first_id = new_body_id(cam_rng)
                bodies = []
                for i, (first, pos, rot) in enumerate(world):
                    body = sense(skel, pos, rot, pose, cam_rng, first_id + 1 + 3 * i, first, nz)
                    bodies.append(body)
                if nz.dropout_rate > 0:  # its own stream: level "none" draws nothing here
                    drop_rng = _rng(seed, _DROPOUT, subject, take, camera)
                    for body in bodies:
                        drop_joints(skel, body, drop_rng, nz)
                lead = int(cam_rng.integers(1, 20)) if cam_rng.random() < 0.5 else 0
                bodies = [b for b in (_crop(b, lead, t_total) for b in bodies) if b is not None]
                for _ in range(int(cam_rng.poisson(0.5))):
                    bodies.append(spurious_body(skel, t_total, cam_rng, first_id + 99))
                name = pku_video_name(subject, take, camera)
                yield SynthVideo(name, subject, take, camera, t_total, bodies, clips)


def _pku_take(skel: Skeleton, cast: _Cast, subject: int, actions: list[int],
              frames: tuple[int, int], rng: np.random.Generator, nz: Nuisance):
    """World tracks of one subject performing every action once (plus partners), and clips."""
    lead_person = cast.person(subject)
    partner = cast.person(subject + _PARTNER_OFFSET)
    order = rng.permutation(actions)
    segments: list[np.ndarray] = []
    partners: list[tuple[int, np.ndarray]] = []
    clips: list[tuple[int, int, int, int]] = []
    cursor = 0
    previous = np.tile(lead_person.rest_angles, (1, 1))
    for action in order:
        gap = int(rng.integers(15, 45))
        program = _program(int(action))
        t_len = _take_length(program, lead_person, frames, rng, nz)
        performance = perform(program, (lead_person, partner), t_len, rng, nz)
        track = performance.angles[0]
        blend = np.linspace(0.0, 1.0, gap)[:, None]
        segments.append(previous[-1] * (1 - blend) + track[0] * blend)  # walk back, settle
        start = cursor + gap
        segments.append(track)
        if len(performance.angles) > 1:
            partners.append((start, performance.angles[1]))
        clips.append((int(action), start, start + t_len, int(rng.integers(1, 3))))
        cursor = start + t_len
        previous = track
    tail = int(rng.integers(10, 40))
    segments.append(np.tile(previous[-1], (tail, 1)))
    angles = np.concatenate(segments)
    facing = rng.normal(0.0, np.radians(15.0))
    place = Placement(facing, np.array([rng.normal(0, 0.15), 0.0, rng.normal(0, 0.2)]))
    world = [(0, *world_actor(skel, lead_person, angles, place))]
    for start, track in partners:
        rel = facing + rng.uniform(-0.5, 0.5)
        offset = rot_y(np.array(rel)) @ np.array([0.0, 0.0, -rng.uniform(1.0, 1.5)])
        # Facing -z turned by pi faces +z, back towards the subject.
        partner_place = Placement(rel + np.pi, place.position + offset)
        world.append((start, *world_actor(skel, partner, track, partner_place)))
    return world, clips, angles.shape[0]


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


class _Plan(NamedTuple):
    """What both generators settle before the first take."""

    nuisance: Nuisance
    frames: tuple[int, int]
    skel: Skeleton
    cast: _Cast
    actions: list[int]
    people: list[int]


def _plan(spec: DatasetSpec, classes: int | None, performers: int | None, seed: int, cameras: int,
          replications: int, frames: tuple[int, int] | None, layout: Layout,
          nuisance: str | Nuisance) -> _Plan:
    """The checked options of one generated set, with its skeleton, cast, actions and people."""
    nz = nuisance_level(nuisance)
    frames = nz.frames if frames is None else frames
    if not 1 <= cameras <= 3:
        raise ValueError(f"cameras must be 1..3, got {cameras}")
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    lo, hi = frames
    if not 2 <= lo <= hi:
        raise ValueError(f"frames must be (lo, hi) with 2 <= lo <= hi, got {frames}")
    skel = skeleton_for(layout)
    actions = pick_actions(spec, _default(classes, DEFAULT_CLASSES))
    people = pick_performers(spec, _default(performers, DEFAULT_PERFORMERS))
    return _Plan(nz, frames, skel, _Cast(skel, seed, nz), actions, people)


def pku_slots(video: SynthVideo, num_joints: int) -> np.ndarray:
    """(T, 2, V, 3): the subject in slot 0; a partner, or else a spurious body, in slot 1."""
    out = np.zeros((video.num_frames, 2, num_joints, 3))
    taken = np.zeros(video.num_frames, dtype=bool)
    ordered = sorted(video.bodies, key=lambda b: b.spurious)  # actors before false detections
    for i, body in enumerate(ordered):
        stop = min(video.num_frames, body.first_frame + body.num_frames)
        frames = np.arange(body.first_frame, stop)
        if i == 0:
            out[frames, 0] = body.joints[: len(frames)]
            continue
        free = ~taken[frames]
        out[frames[free], 1] = body.joints[: len(frames)][free]
        taken[frames[free]] = True
    return out


def synth_dataset(
    dataset: str,
    out: Path,
    *,
    classes: int | None = None,
    performers: int | None = None,
    seed: int = 0,
    cameras: int = 3,
    replications: int = 2,
    frames: tuple[int, int] | None = None,
    layout: Layout = NTU25,
    nuisance: str | Nuisance = DEFAULT_NUISANCE,
) -> dict:
    """Write a synthetic ``dataset`` (ntu60, ntu120, pku2) under ``out``; returns a summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(classes=classes, performers=performers, seed=seed, cameras=cameras,
                   replications=replications, frames=frames, layout=layout, nuisance=nuisance)
    spec = dataset_spec(dataset)
    if spec.name == "pku2":
        files, samples, nbytes, people = _write_pku(out, layout, options)
    else:
        files = samples = nbytes = 0
        people_seen: set[int] = set()
        for sample in iter_ntu_samples(dataset, **options):
            lean = [b.lean(_skel(layout)) for b in sample.bodies]
            text = ntu_text(sample.bodies, sample.num_frames, layout, lean)
            nbytes += _write(out / f"{sample.name}.skeleton", text)
            files += 1
            samples += 1
            people_seen.add(sample.performer)
        people = len(people_seen)
    return {
        "dataset": spec.name,
        "out": str(out),
        "files": files,
        "samples": samples,
        "classes": len(pick_actions(spec, _default(classes, DEFAULT_CLASSES))),
        "performers": people,
        "bytes": nbytes,
        "seed": seed,
        "nuisance": nuisance_level(nuisance).name,
    }


@cache
def _skel(layout: Layout) -> Skeleton:
    return skeleton_for(layout)


def _write(path: Path, text: str) -> int:
    data = text.encode("ascii")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # never leave a half-written file under the final name
    return len(data)


def _write_pku(out: Path, layout: Layout, options: dict) -> tuple[int, int, int, int]:
    (out / "skeleton").mkdir(exist_ok=True)
    (out / "label").mkdir(exist_ok=True)
    files = samples = nbytes = 0
    videos: list[SynthVideo] = []
    for video in iter_pku_videos(**options):
        slots = pku_slots(video, layout.num_joints)
        nbytes += _write(out / "skeleton" / f"{video.name}.txt", pku_text(slots))
        nbytes += _write(out / "label" / f"{video.name}.txt", pku_labels_text(video.clips))
        files += 2
        samples += len(video.clips)
        videos.append(video)
    spec = dataset_spec("pku2")
    names = sorted(v.name for v in videos)
    train_subject = {v.name for v in videos if v.subject in spec.xsub_train}
    train_view = {v.name for v in videos if PKU_VIEWS[v.camera] in PKU_XVIEW_TRAIN}
    for file_name, train in (("cross_subject_v2.txt", train_subject),
                             ("cross_view_v2.txt", train_view)):
        text = pku_split_text([n for n in names if n in train], [n for n in names
                                                                  if n not in train])
        nbytes += _write(out / file_name, text)
        files += 1
    return files, samples, nbytes, len({v.subject for v in videos})


__all__ = [
    "SynthSample",
    "SynthVideo",
    "is_mutual",
    "iter_ntu_samples",
    "iter_pku_videos",
    "pku_slots",
    "synth_dataset",
]
