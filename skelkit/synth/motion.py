"""Action classes as procedural joint-angle programs, and their performance by one person.

A class is built from an RNG seeded by its action id only, so action k means the same motion in
every dataset and for every seed (NTU-60 and NTU-120 share actions 1-60; PKU reuses them too).
A program is a few primitives; each moves a group of degrees of freedom with an envelope (reach
and return, hold, a one-way change such as sitting down) and an optional oscillation.
Performing a program adds the nuisance of real recordings: personal posture and amplitude,
posture scatter, timing jitter, time warp, idle sway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from skelkit.synth.body import DOF, DOF_NAMES, NUM_DOF, Performer
from skelkit.synth.nuisance import NUISANCE_LEVELS, Nuisance

CLASS_SALT = 0x5E1C1A55  # separates class RNG streams from every sample stream

ARM = ("shoulder_flex", "shoulder_abd", "shoulder_rot", "elbow", "wrist")
ARM_RANGE = ((-0.4, 2.6), (0.0, 1.8), (-0.7, 0.7), (0.0, 2.3), (-0.5, 0.5))
LEG = ("hip_flex", "hip_abd", "knee")
LEG_RANGE = ((-0.3, 1.3), (0.0, 0.5), (0.0, 1.6))
TORSO = ("torso_pitch", "torso_roll", "torso_yaw")
TORSO_RANGE = ((-0.15, 1.0), (-0.35, 0.35), (-0.7, 0.7))
HEAD = ("head_pitch", "head_yaw")
HEAD_RANGE = ((-0.4, 0.5), (-0.8, 0.8))

ARM_DOFS = [DOF[f"{g}_{s}"] for g in ARM for s in ("left", "right")]
KINDS = ("reach", "gesture", "both_arms", "posture_change", "locomotion", "torso", "leg", "head")
KIND_WEIGHTS = (0.22, 0.22, 0.18, 0.08, 0.08, 0.08, 0.08, 0.06)


@dataclass(frozen=True)
class Primitive:
    """base + target * envelope(u) + osc * sin(2 pi freq u + phase) * envelope(u), per DOF."""

    envelope: str  # "pulse" (rise, hold, return), "step" (one-way), "const"
    u0: float
    u1: float
    target: np.ndarray
    base: np.ndarray
    osc: np.ndarray
    freq: float = 0.0
    phase: float = 0.0
    osc_phase: np.ndarray | None = None
    """Per-DOF phase offsets of the oscillation (anti-phase limbs)."""


@dataclass(frozen=True)
class ClassProgram:
    action: int
    kind: str
    actors: tuple[tuple[Primitive, ...], ...]
    """Primitives per actor: one tuple for single-actor actions, two for mutual actions."""
    duration: float
    """Typical length as a fraction of the frame range (0 short .. 1 long)."""


def _dofs(group: tuple[str, ...], side: str | None) -> list[int]:
    return [DOF[f"{g}_{side}" if side else g] for g in group]


def _zeros() -> np.ndarray:
    return np.zeros(NUM_DOF)


def _random_posture(rng: np.random.Generator, group, ranges, side=None, out=None) -> np.ndarray:
    out = _zeros() if out is None else out
    for d, (lo, hi) in zip(_dofs(group, side), ranges):
        out[d] = rng.uniform(lo, hi)
    return out


def _window(rng: np.random.Generator) -> tuple[float, float]:
    return float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.7, 0.95))


def _oscillation(rng, group, ranges, side, n_active: int) -> np.ndarray:
    osc = _zeros()
    dofs = _dofs(group, side)
    for k in rng.choice(len(dofs), size=min(n_active, len(dofs)), replace=False):
        lo, hi = ranges[k]
        osc[dofs[k]] = rng.uniform(0.25, 0.6) * (hi - lo) / 2
    return osc


def _primitive(envelope, window, target=None, base=None, osc=None, freq=0.0, phase=0.0,
               osc_phase=None) -> Primitive:
    return Primitive(envelope, window[0], window[1],
                     _zeros() if target is None else target,
                     _zeros() if base is None else base,
                     _zeros() if osc is None else osc, freq, phase, osc_phase)


def _single_actor(rng: np.random.Generator, kind: str) -> list[Primitive]:
    side = "right" if rng.random() < 0.75 else "left"
    other = "left" if side == "right" else "right"
    window = _window(rng)
    prims: list[Primitive] = []
    if kind == "reach":
        target = _random_posture(rng, ARM, ARM_RANGE, side)
        osc = _oscillation(rng, ARM, ARM_RANGE, side, 1) if rng.random() < 0.35 else None
        prims.append(_primitive("pulse", window, target, osc=osc, freq=rng.uniform(2, 5)))
    elif kind == "gesture":
        target = _random_posture(rng, ARM, ARM_RANGE, side)
        osc = _oscillation(rng, ARM, ARM_RANGE, side, int(rng.integers(1, 3)))
        prims.append(_primitive("pulse", window, target, osc=osc, freq=rng.uniform(1.5, 4.5)))
    elif kind == "both_arms":
        target = _random_posture(rng, ARM, ARM_RANGE, side)
        for g in ARM:
            target[DOF[f"{g}_{other}"]] = target[DOF[f"{g}_{side}"]] * rng.uniform(0.7, 1.0)
        osc = _zeros()
        phases = _zeros()
        if rng.random() < 0.6:
            single = _oscillation(rng, ARM, ARM_RANGE, side, 1)
            anti = rng.random() < 0.5
            for g in ARM:
                osc[DOF[f"{g}_{side}"]] = osc[DOF[f"{g}_{other}"]] = single[DOF[f"{g}_{side}"]]
                phases[DOF[f"{g}_{other}"]] = np.pi if anti else 0.0
        prims.append(_primitive("pulse", window, target, osc=osc, freq=rng.uniform(1.5, 4),
                                osc_phase=phases))
    elif kind == "posture_change":
        crouch = _zeros()
        depth = rng.uniform(0.5, 1.0)
        for s in ("left", "right"):
            crouch[DOF[f"hip_flex_{s}"]] = 1.5 * depth
            crouch[DOF[f"knee_{s}"]] = 1.6 * depth
        crouch[DOF["torso_pitch"]] = rng.uniform(0.1, 0.9)
        if rng.random() < 0.5:
            _random_posture(rng, ARM, ARM_RANGE, side, out=crouch)
        direction = rng.choice(["down", "up", "down_up"])
        if direction == "down":
            prims.append(_primitive("step", window, crouch))
        elif direction == "up":
            prims.append(_primitive("step", window, -crouch, base=crouch))
        else:
            prims.append(_primitive("pulse", window, crouch))
    elif kind == "locomotion":
        mode = rng.choice(["walk", "turn", "jump", "side_step"])
        target, osc, phases = _zeros(), _zeros(), _zeros()
        envelope, freq = "step", rng.uniform(2, 4)
        if mode in ("walk", "side_step"):
            key = "root_forward" if mode == "walk" else "root_lateral"
            target[DOF[key]] = rng.choice([-1, 1]) * rng.uniform(0.4, 1.0)
            for s, ph in (("left", 0.0), ("right", np.pi)):
                osc[DOF[f"hip_flex_{s}" if mode == "walk" else f"hip_abd_{s}"]] = 0.3
                osc[DOF[f"knee_{s}"]] = 0.25
                osc[DOF[f"shoulder_flex_{s}"]] = 0.3 if mode == "walk" else 0.0
                for g in ("hip_flex", "hip_abd", "knee"):
                    phases[DOF[f"{g}_{s}"]] = ph
                phases[DOF[f"shoulder_flex_{s}"]] = np.pi - ph
        elif mode == "turn":
            target[DOF["root_yaw"]] = rng.choice([-1, 1]) * rng.uniform(1.5, np.pi)
            osc[DOF["hip_flex_left"]] = osc[DOF["hip_flex_right"]] = 0.15
            phases[DOF["hip_flex_right"]] = np.pi
        else:
            envelope, freq = "pulse", rng.uniform(1, 3)
            osc[DOF["root_jump"]] = rng.uniform(0.08, 0.2)
            for s in ("left", "right"):
                target[DOF[f"knee_{s}"]] = 0.3
                target[DOF[f"hip_flex_{s}"]] = 0.25
                if rng.random() < 0.3:
                    _random_posture(rng, ARM, ARM_RANGE, s, out=target)
        prims.append(_primitive(envelope, window, target, osc=osc, freq=freq, osc_phase=phases))
    elif kind == "torso":
        target = _random_posture(rng, TORSO, TORSO_RANGE)
        osc = _oscillation(rng, TORSO, TORSO_RANGE, None, 1) if rng.random() < 0.5 else None
        prims.append(_primitive("pulse", window, target, osc=osc, freq=rng.uniform(1, 3)))
    elif kind == "leg":
        target = _random_posture(rng, LEG, LEG_RANGE, side)
        target[DOF["torso_pitch"]] = rng.uniform(-0.1, 0.2)
        osc = _oscillation(rng, LEG, LEG_RANGE, side, 1) if rng.random() < 0.5 else None
        prims.append(_primitive("pulse", window, target, osc=osc, freq=rng.uniform(1.5, 4)))
    elif kind == "head":
        target = _random_posture(rng, HEAD, HEAD_RANGE)
        osc = _oscillation(rng, HEAD, HEAD_RANGE, None, 1)
        prims.append(_primitive("pulse", window, target * 0.5, osc=osc,
                                freq=rng.uniform(2, 5)))
    else:
        raise ValueError(f"unknown action kind {kind!r}")
    if rng.random() < 0.5:  # a secondary, smaller movement (head follows, torso leans)
        group, ranges = (TORSO, TORSO_RANGE) if rng.random() < 0.5 else (HEAD, HEAD_RANGE)
        prims.append(_primitive("pulse", _window(rng),
                                0.5 * _random_posture(rng, group, ranges)))
    return prims


def _mutual(rng: np.random.Generator) -> tuple[list[Primitive], list[Primitive]]:
    """Two actors facing each other: the initiator acts, the partner mirrors or reacts."""
    kind = rng.choice(["reach", "both_arms", "gesture"], p=[0.45, 0.35, 0.2])
    first = _single_actor(rng, str(kind))
    if rng.random() < 0.4:  # both walk towards each other first
        approach = _zeros()
        approach[DOF["root_forward"]] = rng.uniform(0.2, 0.5)
        first.append(_primitive("step", (0.0, 0.3), approach))
    mode = rng.choice(["mirror", "react", "own"])
    if mode == "mirror":  # handshake, hug: the partner does the same, slightly later
        second = [replace(p, u0=min(p.u0 + 0.08, 0.5), u1=min(p.u1 + 0.05, 0.98)) for p in first]
    elif mode == "react":  # pushed, hit: lean and step back after the initiator's move
        react = _zeros()
        react[DOF["torso_pitch"]] = -rng.uniform(0.1, 0.4)
        react[DOF["root_forward"]] = -rng.uniform(0.1, 0.5)
        react[DOF["torso_roll"]] = rng.uniform(-0.2, 0.2)
        u0 = rng.uniform(0.35, 0.6)
        second = [_primitive("pulse", (u0, min(u0 + 0.35, 0.98)), react)]
    else:
        second = _single_actor(rng, str(rng.choice(["reach", "torso", "head"])))
    return first, second


def is_mutual(action: int) -> bool:
    """NTU's two-person actions: 50-60 and 106-120 (1-based)."""
    return 50 <= action <= 60 or 106 <= action <= 120


def class_program(action: int) -> ClassProgram:
    """The motion of action ``action`` (1-based); depends on nothing else."""
    rng = np.random.default_rng([CLASS_SALT, action])
    if is_mutual(action):
        first, second = _mutual(rng)
        actors: tuple[tuple[Primitive, ...], ...] = (tuple(first), tuple(second))
        kind = "mutual"
    else:
        kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
        actors = (tuple(_single_actor(rng, kind)),)
    return ClassProgram(action, kind, actors, duration=float(rng.uniform(0.2, 0.8)))


MIRROR = np.arange(NUM_DOF)
_NEGATE = np.zeros(NUM_DOF, dtype=bool)
for _i, _n in enumerate(DOF_NAMES):
    if _n.endswith("_left"):
        MIRROR[_i] = DOF[_n.replace("_left", "_right")]
    elif _n.endswith("_right"):
        MIRROR[_i] = DOF[_n.replace("_right", "_left")]
    _NEGATE[_i] = _n in ("torso_roll", "torso_yaw", "head_yaw", "root_yaw", "root_lateral")


def mirror_dofs(values: np.ndarray) -> np.ndarray:
    """The left-right mirror image of a DOF vector or track (left-handed performers)."""
    out = values[..., MIRROR]
    return np.where(_NEGATE, -out, out)


def _envelope(kind: str, u: np.ndarray, u0: float, u1: float) -> np.ndarray:
    if kind == "const":
        return np.ones_like(u)
    if kind == "step":
        s = np.clip((u - u0) / max(u1 - u0, 1e-3), 0.0, 1.0)
        return s * s * (3 - 2 * s)
    ramp = max(0.25 * (u1 - u0), 1e-3)
    rise = np.clip((u - u0) / ramp, 0.0, 1.0)
    fall = np.clip((u1 - u) / ramp, 0.0, 1.0)
    r = np.minimum(rise, fall)
    return r * r * (3 - 2 * r)


def smooth_noise(rng: np.random.Generator, t_len: int, dims: int, cycles: float) -> np.ndarray:
    """(t_len, dims) zero-mean smooth noise of unit-ish scale, about ``cycles`` wiggles long."""
    n_waves = 3
    t = np.linspace(0.0, 1.0, t_len)[:, None, None]
    freq = rng.uniform(0.3, 1.0, (1, dims, n_waves)) * cycles
    phase = rng.uniform(0, 2 * np.pi, (1, dims, n_waves))
    amp = rng.normal(0, 1, (1, dims, n_waves)) / np.sqrt(n_waves)
    return (amp * np.sin(2 * np.pi * freq * t + phase)).sum(-1)


@dataclass(frozen=True)
class Performance:
    """How one person performs one action in one take: frames, timing and angle tracks."""

    angles: tuple[np.ndarray, ...]
    """(T, NUM_DOF) per actor."""
    num_frames: int


def perform(
    program: ClassProgram,
    performers: tuple[Performer, ...],
    num_frames: int,
    rng: np.random.Generator,
    nuisance: Nuisance = NUISANCE_LEVELS["none"],
) -> Performance:
    """Angle tracks of every actor for ``num_frames`` frames, with personal and take variation."""
    # Idle before and after the action (floor division keeps the level "none" bit-identical).
    lead = max(0, int(rng.integers(0, max(1, int(num_frames // nuisance.lead_divisor)))))
    tail = max(0, int(rng.integers(0, max(1, int(num_frames // nuisance.tail_divisor)))))
    s = np.clip((np.arange(num_frames) - lead) / max(num_frames - lead - tail - 1, 1), 0, 1)
    # Monotone for |warp| < 1: speeds up then slows down.
    warp = rng.uniform(-nuisance.warp, nuisance.warp)
    u = s + warp * np.sin(2 * np.pi * s) / (2 * np.pi)
    tracks = []
    for actor, prims in enumerate(program.actors):
        person = performers[min(actor, len(performers) - 1)]
        angles = np.tile(person.rest_angles, (num_frames, 1))
        for p in prims:
            gain = person.gain * rng.normal(1.0, 0.18)
            u0 = float(np.clip(p.u0 + rng.normal(0, nuisance.timing_sd), 0.0, 0.6))
            u1 = float(np.clip(p.u1 + rng.normal(0, nuisance.timing_sd), u0 + 0.2, 1.0))
            scatter = rng.normal(0.0, 0.2, NUM_DOF) * (p.target != 0)
            env = _envelope(p.envelope, u, u0, u1)[:, None]
            target = gain * p.target + scatter
            angles += p.base * gain + env * target
            if p.freq > 0 and np.any(p.osc):
                freq = p.freq * person.tempo * rng.normal(1.0, 0.1)
                phase = p.phase + rng.uniform(-0.5, 0.5)
                per_dof = 0.0 if p.osc_phase is None else p.osc_phase
                wave = np.sin(2 * np.pi * freq * u[:, None] + phase + per_dof)
                angles += env * wave * (p.osc * gain * rng.normal(1.0, 0.15))
        idle = smooth_noise(rng, num_frames, NUM_DOF, cycles=2.0)
        idle_scale = np.full(NUM_DOF, 0.06)
        idle_scale[ARM_DOFS] = 0.1  # people fidget with their arms while they wait or act
        idle_scale[[DOF["root_forward"], DOF["root_lateral"]]] = 0.03
        idle_scale[[DOF["root_jump"], DOF["root_yaw"]]] = [0.0, 0.05]
        angles += idle * idle_scale
        if person.left_handed:
            angles = mirror_dofs(angles)
        tracks.append(angles)
    return Performance(tuple(tracks), num_frames)
