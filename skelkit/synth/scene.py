"""From world-space actors to what a Kinect v2 reports: camera rigs, projection, sensor noise.

World frame: floor at y = 0, y up, the actors near the origin; camera 2 stands in front of them
(at -z, looking along +z), cameras 1 and 3 at -45 and +45 degrees around them, all three at the
same height, as in NTU RGB+D. Camera space is Kinect's: x to the sensor's left, y up, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skelkit.synth.body import (
    EXTREMITIES,
    NO_ORIENTATION,
    Performer,
    Skeleton,
    forward_kinematics,
    rot_x,
    rot_y,
    rot_z,
)
from skelkit.synth.nuisance import NUISANCE_LEVELS, Nuisance

NO_NUISANCE = NUISANCE_LEVELS["none"]

# Kinect v2 intrinsics fitted to genuine NTU files (depth 512x424, colour 1920x1080).
DEPTH_F = (364.2, -367.3)
DEPTH_C = (257.3, 208.7)
COLOR_F = (1050.0, -1043.0)
COLOR_C = (976.2, 562.6)
CAMERA_AZIMUTH = {1: np.pi / 4, 2: 0.0, 3: -np.pi / 4}
BODY_ID_BASE = 72057594037927936  # Kinect body ids are 2**56 plus a tracking counter


@dataclass(frozen=True)
class Rig:
    """Camera placement of one setup (shared by its three cameras)."""

    height: float
    distance: float
    tilt: float


def make_rig(rng: np.random.Generator, nuisance: Nuisance = NO_NUISANCE) -> Rig:
    height = rng.uniform(*nuisance.rig_height)
    distance = rng.uniform(2.6, 3.7)
    # Aim roughly at the chest; operators were not exact about it.
    tilt = np.arctan2(height - 1.1, distance) + rng.normal(0.0, np.radians(nuisance.aim_sd_deg))
    return Rig(float(height), float(distance), float(tilt))


@dataclass(frozen=True)
class CameraPose:
    rotation: np.ndarray
    """(3, 3) camera-to-world rotation."""
    position: np.ndarray

    def to_camera(self, world: np.ndarray) -> np.ndarray:
        return (world - self.position) @ self.rotation


def camera_pose(rig: Rig, camera: int, rng: np.random.Generator,
                nuisance: Nuisance = NO_NUISANCE) -> CameraPose:
    azimuth = CAMERA_AZIMUTH.get(camera, 0.0) + rng.normal(0.0, np.radians(nuisance.azimuth_sd_deg))
    yaw = rot_y(np.array(azimuth))
    tilt = rot_x(np.array(rig.tilt + rng.normal(0.0, np.radians(nuisance.tilt_sd_deg))))
    roll = rot_z(np.array(rng.normal(0.0, np.radians(nuisance.roll_sd_deg))))
    position = yaw @ np.array([0.0, rig.height, -rig.distance])
    return CameraPose(yaw @ tilt @ roll, position)


@dataclass
class Body:
    """One tracked body in one camera's file: frames first_frame .. first_frame + len - 1."""

    body_id: int
    first_frame: int
    joints: np.ndarray
    """(L, V, 3) camera-space metres."""
    orientation: np.ndarray
    """(L, V, 4) unit quaternions (w, x, y, z); zeros where Kinect reports none."""
    tracking: np.ndarray
    """(L, V) int: 2 tracked, 1 inferred."""
    hands: np.ndarray
    """(L, 4) int: handLeftConfidence, handLeftState, handRightConfidence, handRightState."""
    spurious: bool = False

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]

    def lean(self, skel: Skeleton) -> np.ndarray:
        """(L, 2) Kinect-style leanX, leanY in [-1, 1] from the spine direction."""
        spine = (self.joints[:, skel.index["spine_shoulder"]]
                 - self.joints[:, skel.index["spine_base"]])
        unit = spine / np.maximum(np.linalg.norm(spine, axis=-1, keepdims=True), 1e-9)
        return np.clip(np.stack([-unit[:, 0], -unit[:, 2]], -1), -1.0, 1.0)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z)."""
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]],
                 -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]],
                 -1),
    ], -2)
    # The row with the largest diagonal term is the numerically stable one.
    diag = np.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = np.take_along_axis(candidates, diag.argmax(-1)[..., None, None], -2)[..., 0, :]
    return best / np.linalg.norm(best, axis=-1, keepdims=True)


def project_depth(joints: np.ndarray) -> np.ndarray:
    z = np.maximum(joints[..., 2], 1e-3)
    return np.stack([DEPTH_F[0] * joints[..., 0] / z + DEPTH_C[0],
                     DEPTH_F[1] * joints[..., 1] / z + DEPTH_C[1]], -1)


def project_color(joints: np.ndarray) -> np.ndarray:
    z = np.maximum(joints[..., 2], 1e-3)
    return np.stack([COLOR_F[0] * joints[..., 0] / z + COLOR_C[0],
                     COLOR_F[1] * joints[..., 1] / z + COLOR_C[1]], -1)


@dataclass(frozen=True)
class Placement:
    """Where an actor stands and which way it faces (world frame)."""

    facing: float
    position: np.ndarray


def world_actor(skel: Skeleton, performer: Performer, angles: np.ndarray, place: Placement):
    pos, glob = forward_kinematics(skel, performer, angles)
    turn = rot_y(np.array(place.facing))
    return pos @ turn.T + place.position, turn @ glob


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], span: int) -> np.ndarray:
    """Gaussian noise low-passed over about ``span`` frames along axis 0, unit variance."""
    white = rng.normal(0.0, 1.0, (shape[0] + 2 * span, *shape[1:]))
    kernel = np.hanning(2 * span + 3)[1:-1]
    kernel /= np.sqrt((kernel**2).sum())
    out = np.zeros(shape)
    for k, w in enumerate(kernel):
        out += w * white[k : k + shape[0]]
    return out


def _hand_states(rng: np.random.Generator, t_len: int) -> np.ndarray:
    """Piecewise-constant hand confidence/state runs as Kinect reports them."""
    out = np.zeros((t_len, 4), dtype=np.int64)
    for hand in (0, 2):
        cuts = np.sort(rng.integers(0, t_len, int(rng.integers(0, 4))))
        for seg_start, seg_end in zip(np.r_[0, cuts], np.r_[cuts, t_len]):
            confident = rng.random() < 0.35
            out[seg_start:seg_end, hand] = int(confident)
            out[seg_start:seg_end, hand + 1] = int(rng.choice([0, 1, 2, 3])) if confident else (
                int(rng.choice([0, 3])))
    return out


TORSO_JOINTS = ("spine_base", "spine_mid", "spine_shoulder", "neck", "head")


def _occlusion(skel: Skeleton, joints: np.ndarray, rng: np.random.Generator):
    """Self-occlusion: joints behind the torso as the camera sees it are guessed by the sensor.

    Kinect infers hidden joints and tends to put them on the visible surface, so they are pulled
    towards the torso's depth and wobble; this depends on the view, as in real recordings.
    """
    torso = joints[:, skel.index["spine_mid"]][:, None]
    rel = joints - torso
    lateral = np.linalg.norm(rel[..., :2], axis=-1)
    behind = rel[..., 2]
    weight = 1.0 / (1.0 + np.exp(-(behind - 0.04) / 0.02))
    weight = weight / (1.0 + np.exp(-(0.3 - lateral) / 0.03))
    weight[:, [skel.index[n] for n in TORSO_JOINTS]] = 0.0
    wobble = _smooth(rng, joints.shape, span=4) * 0.05
    moved = joints + weight[..., None] * wobble
    moved[..., 2] -= 0.5 * weight * np.maximum(behind, 0.0)
    return moved, weight > 0.5


def sense(
    skel: Skeleton,
    world: np.ndarray,
    bone_rotations: np.ndarray,
    cam: CameraPose,
    rng: np.random.Generator,
    body_id: int,
    first_frame: int = 0,
    nuisance: Nuisance = NO_NUISANCE,
) -> Body:
    """What the sensor reports for one actor: noisy camera-space joints and their metadata."""
    joints = cam.to_camera(world)
    t_len, v = joints.shape[:2]
    joints, hidden = _occlusion(skel, joints, rng)
    sigma = np.full(v, nuisance.joint_sigma)
    extremities = [skel.index[n] for n in EXTREMITIES]
    sigma[extremities] = nuisance.extremity_sigma
    depth_gain = np.array([1.0, 1.0, 1.6])  # time-of-flight noise is worst along the ray
    noise = _smooth(rng, (t_len, v, 3), span=3) * sigma[None, :, None] * depth_gain
    noise += rng.normal(0.0, 0.002, noise.shape)
    joints = joints + noise
    tracking = np.full((t_len, v), 2, dtype=np.int64)
    tracking[hidden] = 1
    tips = [skel.index[n] for n in ("handtip_left", "handtip_right", "thumb_left", "thumb_right")]
    tracking[:, tips] = np.where(rng.random((t_len, len(tips))) < 0.1, 1, 2)
    # Tracking glitches: an extremity jumps for a few frames and is reported as inferred.
    for _ in range(int(rng.poisson(nuisance.glitch_rate))):
        joint = int(rng.choice(extremities))
        start = int(rng.integers(0, t_len))
        stop = min(t_len, start + int(rng.integers(2, 9)))
        joints[start:stop, joint] += rng.normal(0.0, 0.08, 3)
        tracking[start:stop, joint] = 1
    rotations = cam.rotation.T @ bone_rotations
    orientation = matrix_to_quaternion(rotations)
    orientation *= np.where(rng.random() < 0.5, 1.0, -1.0)  # Kinect's sign is arbitrary
    orientation[:, [skel.index[n] for n in NO_ORIENTATION]] = 0.0
    return Body(body_id, first_frame, joints, orientation, tracking, _hand_states(rng, t_len))


# Limb ends the sensor loses together: a joint and the joints hanging from it.
DROPOUT_CHAINS = (
    ("wrist_left", "hand_left", "handtip_left", "thumb_left"),
    ("wrist_right", "hand_right", "handtip_right", "thumb_right"),
    ("hand_left", "handtip_left", "thumb_left"),
    ("hand_right", "handtip_right", "thumb_right"),
    ("ankle_left", "foot_left"),
    ("ankle_right", "foot_right"),
)


def drop_joints(skel: Skeleton, body: Body, rng: np.random.Generator,
                nuisance: Nuisance) -> None:
    """Lost limb ends, in place: for a run of frames the sensor reports the chain frozen where
    it last saw it (plus its jitter) and flags it inferred."""
    t_len = body.num_frames
    lo, hi = nuisance.dropout_frames
    for _ in range(int(rng.poisson(nuisance.dropout_rate))):
        chain = [skel.index[n] for n in DROPOUT_CHAINS[int(rng.integers(len(DROPOUT_CHAINS)))]]
        start = int(rng.integers(0, t_len))
        stop = min(t_len, start + int(rng.integers(lo, hi)))
        hold_joints(body, chain, start, stop, rng, nuisance.joint_sigma)


def hold_joints(body: Body, joints: list[int], start: int, stop: int, rng: np.random.Generator,
                sigma: float) -> None:
    """Frames start..stop-1 of ``joints``: where they were at ``start``, plus jitter, inferred."""
    held = body.joints[start, joints]
    body.joints[start:stop, joints] = held + rng.normal(0.0, sigma, (stop - start, len(joints), 3))
    body.tracking[start:stop, joints] = 1


def spurious_body(
    skel: Skeleton, total_frames: int, rng: np.random.Generator, body_id: int
) -> Body:
    """A short-lived, nearly still false detection (a chair, a coat) as Kinect produces."""
    t_len = int(rng.integers(3, min(26, max(4, total_frames // 2))))
    first = int(rng.integers(0, max(1, total_frames - t_len)))
    crumple = rng.uniform(0.5, 1.0)
    rest = (skel.rest - skel.rest[skel.index["spine_base"]]) * crumple
    rest = rest + rng.normal(0.0, 0.05, rest.shape)
    spot = np.array([rng.uniform(-1.6, 1.6), rng.uniform(-0.6, 0.3), rng.uniform(2.0, 4.5)])
    joints = rest[None] + spot + rng.normal(0.0, 0.008, (t_len, *rest.shape))
    joints += _smooth(rng, (t_len, 1, 3), span=4) * 0.01
    orientation = np.zeros((t_len, skel.num_joints, 4))
    orientation[..., 0] = 1.0
    orientation[:, [skel.index[n] for n in NO_ORIENTATION]] = 0.0
    tracking = np.where(rng.random((t_len, skel.num_joints)) < 0.4, 1, 2)
    hands = np.zeros((t_len, 4), dtype=np.int64)
    return Body(body_id, first, joints, orientation, tracking, hands, spurious=True)


def new_body_id(rng: np.random.Generator) -> int:
    return BODY_ID_BASE + int(rng.integers(1000, 60000))
