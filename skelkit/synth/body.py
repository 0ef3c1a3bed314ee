"""The synthetic actor: an NTU25 rest pose, per-performer proportions and forward kinematics.

Body frame (metres): origin at spine_base, y up, the actor faces -z and its left side is -x,
which is how Kinect's camera space sees a person facing the sensor (x grows to the sensor's left).
Joint angles drive bone rotations; :func:`forward_kinematics` turns an angle track (T, NUM_DOF)
into joint positions and per-bone global rotations, vectorised over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skelkit.store.layout import Layout
from skelkit.synth.nuisance import NUISANCE_LEVELS, Nuisance

# Degrees of freedom of the kinematic actor: joint angles in radians, root terms in metres.
DOF_NAMES: tuple[str, ...] = (
    "torso_pitch", "torso_roll", "torso_yaw", "head_pitch", "head_yaw",
    "shoulder_flex_left", "shoulder_abd_left", "shoulder_rot_left", "elbow_left", "wrist_left",
    "shoulder_flex_right", "shoulder_abd_right", "shoulder_rot_right", "elbow_right",
    "wrist_right",
    "hip_flex_left", "hip_abd_left", "knee_left", "hip_flex_right", "hip_abd_right",
    "knee_right",
    "root_yaw", "root_forward", "root_lateral", "root_jump",
)
DOF = {name: i for i, name in enumerate(DOF_NAMES)}
NUM_DOF = len(DOF_NAMES)

# Rest pose of a 1.75 m actor, body frame, spine_base at the origin (about 0.95 m above the floor).
REST_POSE: dict[str, tuple[float, float, float]] = {
    "spine_base": (0.0, 0.0, 0.0),
    "spine_mid": (0.0, 0.29, 0.01),
    "spine_shoulder": (0.0, 0.50, 0.0),
    "neck": (0.0, 0.57, 0.0),
    "head": (0.0, 0.70, -0.01),
    "shoulder_left": (-0.17, 0.45, 0.01),
    "elbow_left": (-0.20, 0.19, 0.02),
    "wrist_left": (-0.21, -0.05, 0.0),
    "hand_left": (-0.21, -0.12, -0.01),
    "handtip_left": (-0.21, -0.19, -0.01),
    "thumb_left": (-0.18, -0.11, -0.05),
    "hip_left": (-0.08, -0.03, 0.0),
    "knee_left": (-0.09, -0.47, 0.0),
    "ankle_left": (-0.09, -0.86, 0.02),
    "foot_left": (-0.10, -0.91, -0.09),
}
for _name, (_x, _y, _z) in list(REST_POSE.items()):
    if _name.endswith("_left"):
        REST_POSE[_name.replace("_left", "_right")] = (-_x, _y, _z)

# Which proportion factor scales the bone that ends at each joint.
SEGMENT_OF_JOINT: dict[str, str] = {
    "spine_mid": "torso", "spine_shoulder": "torso", "neck": "neck", "head": "neck",
    "shoulder_left": "shoulders", "shoulder_right": "shoulders",
    "elbow_left": "upper_arm", "elbow_right": "upper_arm",
    "wrist_left": "forearm", "wrist_right": "forearm",
    "hand_left": "hand", "hand_right": "hand", "handtip_left": "hand", "handtip_right": "hand",
    "thumb_left": "hand", "thumb_right": "hand",
    "hip_left": "hips", "hip_right": "hips", "knee_left": "thigh", "knee_right": "thigh",
    "ankle_left": "shin", "ankle_right": "shin", "foot_left": "foot", "foot_right": "foot",
}
SEGMENTS = ("torso", "neck", "shoulders", "upper_arm", "forearm", "hand", "hips", "thigh",
            "shin", "foot")
# Kinect reports no orientation for these end joints (all-zero quaternion in genuine files).
NO_ORIENTATION = ("head", "foot_left", "foot_right", "handtip_left", "handtip_right",
                  "thumb_left", "thumb_right")
EXTREMITIES = ("wrist_left", "wrist_right", "hand_left", "hand_right", "handtip_left",
               "handtip_right", "thumb_left", "thumb_right", "ankle_left", "ankle_right",
               "foot_left", "foot_right")
ROOT_JOINT = "spine_base"


@dataclass(frozen=True)
class Skeleton:
    """The kinematic tree of a layout, re-rooted at the pelvis for motion."""

    layout: Layout
    index: dict[str, int]
    order: tuple[int, ...]
    """Joints in breadth-first order from the root (parents before children)."""
    parent: tuple[int, ...]
    """Parent of each joint in the pelvis-rooted tree; the root points to itself."""
    rest: np.ndarray
    """(V, 3) rest positions in the body frame."""

    @property
    def num_joints(self) -> int:
        return self.layout.num_joints


def skeleton_for(layout: Layout) -> Skeleton:
    """The pelvis-rooted tree of ``layout``; its joints must carry the NTU25 names."""
    names = layout.joint_names
    missing = sorted(set(REST_POSE) - set(names))
    if missing or len(names) != len(REST_POSE):
        raise ValueError(
            f"layout {layout.name}: the synthetic actor needs the NTU25 joints; missing {missing}"
        )
    index = {n: i for i, n in enumerate(names)}
    neighbours: dict[int, list[int]] = {i: [] for i in range(len(names))}
    for a, b in layout.edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    root = index[ROOT_JOINT]
    parent = [-1] * len(names)
    parent[root] = root
    order = [root]
    for v in order:  # breadth-first; the list grows while we walk it
        for w in sorted(neighbours[v]):
            if parent[w] == -1:
                parent[w] = v
                order.append(w)
    if len(order) != len(names):
        raise ValueError(f"layout {layout.name}: the joint graph is not connected")
    rest = np.array([REST_POSE[n] for n in names], dtype=np.float64)
    return Skeleton(layout, index, tuple(order), tuple(parent), rest)


@dataclass(frozen=True)
class Performer:
    """One person: size, proportions, habitual posture and style."""

    pid: int
    offsets: np.ndarray
    """(V, 3) bone vectors parent -> joint in the body frame (zero at the root)."""
    rest_angles: np.ndarray
    """(NUM_DOF,) habitual posture added to every frame."""
    left_handed: bool
    gain: float
    """Personal amplitude of movements."""
    tempo: float
    """Personal speed factor (> 1 is faster)."""


def make_performer(skel: Skeleton, pid: int, rng: np.random.Generator,
                   nuisance: Nuisance = NUISANCE_LEVELS["none"]) -> Performer:
    scale = rng.uniform(*nuisance.height_scale)
    segment = {s: rng.normal(1.0, nuisance.segment_sd) for s in SEGMENTS}
    offsets = np.zeros_like(skel.rest)
    for v, p in enumerate(skel.parent):
        if v == p:
            continue
        factor = scale * segment[SEGMENT_OF_JOINT[skel.layout.joint_names[v]]]
        offsets[v] = (skel.rest[v] - skel.rest[p]) * factor
    rest_angles = np.zeros(NUM_DOF)
    habit = dict(nuisance.posture)
    rest_angles[DOF["torso_pitch"]] = rng.uniform(*habit["torso_pitch"])
    rest_angles[DOF["head_pitch"]] = rng.uniform(*habit["head_pitch"])
    for side in ("left", "right"):
        for dof in ("shoulder_abd", "shoulder_flex", "elbow", "shoulder_rot", "hip_abd"):
            rest_angles[DOF[f"{dof}_{side}"]] = rng.uniform(*habit[dof])
    return Performer(
        pid=pid,
        offsets=offsets,
        rest_angles=rest_angles,
        left_handed=bool(rng.random() < 0.12),
        gain=float(rng.normal(1.0, nuisance.gain_sd)),
        tempo=float(np.exp(rng.normal(0.0, nuisance.tempo_sd))),
    )


def rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def _local_rotations(skel: Skeleton, angles: np.ndarray) -> dict[int, np.ndarray]:
    """Rotation of each driven bone relative to its parent bone, (T, 3, 3) per child joint."""
    a = {name: angles[:, i] for name, i in DOF.items()}
    ix = skel.index
    # Torso bending is spread over the two spine bones so the back curves.
    local = {
        ix["spine_mid"]: rot_y(0.5 * a["torso_yaw"]) @ rot_x(-0.55 * a["torso_pitch"])
        @ rot_z(0.55 * a["torso_roll"]),
        ix["spine_shoulder"]: rot_y(0.5 * a["torso_yaw"]) @ rot_x(-0.45 * a["torso_pitch"])
        @ rot_z(0.45 * a["torso_roll"]),
        ix["neck"]: rot_y(0.4 * a["head_yaw"]) @ rot_x(-0.4 * a["head_pitch"]),
        ix["head"]: rot_y(0.6 * a["head_yaw"]) @ rot_x(-0.6 * a["head_pitch"]),
    }
    for side, outward in (("left", -1.0), ("right", 1.0)):
        local[ix[f"elbow_{side}"]] = (
            rot_z(outward * a[f"shoulder_abd_{side}"]) @ rot_x(a[f"shoulder_flex_{side}"])
            @ rot_y(outward * a[f"shoulder_rot_{side}"])
        )
        local[ix[f"wrist_{side}"]] = rot_x(a[f"elbow_{side}"])
        local[ix[f"hand_{side}"]] = rot_x(a[f"wrist_{side}"])
        local[ix[f"knee_{side}"]] = rot_z(outward * a[f"hip_abd_{side}"]) @ rot_x(
            a[f"hip_flex_{side}"]
        )
        local[ix[f"ankle_{side}"]] = rot_x(-a[f"knee_{side}"])
    return local


def forward_kinematics(
    skel: Skeleton, performer: Performer, angles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (T, V, 3) and bone rotations (T, V, 3, 3) in the world frame.

    ``angles`` is (T, NUM_DOF). The root terms place the actor: yaw about y, forward and lateral
    steps along its initial facing, and the pelvis height keeps the lower foot on the floor
    (y = 0) plus the jump height.
    """
    t_len = angles.shape[0]
    local = _local_rotations(skel, angles)
    eye = np.broadcast_to(np.eye(3), (t_len, 3, 3))
    glob = np.empty((t_len, skel.num_joints, 3, 3))
    pos = np.empty((t_len, skel.num_joints, 3))
    root = skel.order[0]
    glob[:, root] = eye
    pos[:, root] = 0.0
    for v in skel.order[1:]:
        p = skel.parent[v]
        glob[:, v] = glob[:, p] @ local[v] if v in local else glob[:, p]
        pos[:, v] = pos[:, p] + glob[:, v] @ performer.offsets[v]
    ix = skel.index
    feet = [ix["foot_left"], ix["foot_right"], ix["ankle_left"], ix["ankle_right"]]
    floor_gap = 0.04 - pos[:, feet, 1].min(axis=1)
    yaw = rot_y(angles[:, DOF["root_yaw"]])
    step = np.stack(
        [-angles[:, DOF["root_lateral"]], floor_gap + angles[:, DOF["root_jump"]],
         -angles[:, DOF["root_forward"]]], -1,
    )
    pos = np.einsum("tij,tvj->tvi", yaw, pos) + step[:, None, :]
    glob = yaw[:, None] @ glob
    return pos, glob
