"""Skeleton layouts as data: joint names, kinematic tree, hinge pairs and normalisation joints.

Layout facts live only here; every other module asks the store (or this registry) for them.
All indices are 0-based. NTU documents its joints 1-based: joint ``k`` in docs/design.md is index ``k - 1``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TorsoNormal:
    """Bone ``joint`` is replaced by unit((bone[a] - bone[c]) x (bone[b] - bone[c]))."""

    joint: int
    a: int
    b: int
    c: int


@dataclass(frozen=True)
class Layout:
    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    """parents[v] is the parent joint of v; the root points to itself (a zero self-loop bone)."""
    hinges: tuple[tuple[int, int], ...]
    """hinges[v] = (v, w): the hinge axis at v is unit(bone_v x bone_w)."""
    torso_normal: TorsoNormal | None = None
    # CMD-style normalisation (docs/design.md §3.3): centre, z-axis bottom->top, x-axis left->right shoulder.
    center_joint: int = 0
    z_axis: tuple[int, int] = (0, 1)
    x_axis: tuple[int, int] = (4, 8)
    # IKEM-style 50-frame preparation: origin joint per frame, the joint whose presence counts frames.
    fixed_origin_joint: int = 0
    presence_joint: int = 0
    edges: tuple[tuple[int, int], ...] = field(default=())
    """Undirected graph edges for GCNs; defaults to the kinematic tree without self-loops."""

    def __post_init__(self) -> None:
        v = len(self.joint_names)
        if len(self.parents) != v or len(self.hinges) != v:
            raise ValueError(f"layout {self.name}: parents/hinges must have {v} entries")
        for i, p in enumerate(self.parents):
            if not 0 <= p < v:
                raise ValueError(f"layout {self.name}: parent of joint {i} out of range: {p}")
        for i, (a, b) in enumerate(self.hinges):
            if a != i or not 0 <= b < v:
                raise ValueError(f"layout {self.name}: hinge {i} must be ({i}, w) with w in range")
        for j in (self.center_joint, *self.z_axis, *self.x_axis, self.fixed_origin_joint,
                  self.presence_joint):
            if not 0 <= j < v:
                raise ValueError(f"layout {self.name}: normalisation joint {j} out of range")
        if not self.edges:
            object.__setattr__(
                self, "edges", tuple((i, p) for i, p in enumerate(self.parents) if i != p)
            )

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def to_attrs(self) -> dict[str, Any]:
        d = asdict(self)
        d["joints"] = list(self.joint_names)
        del d["joint_names"]
        return json.loads(json.dumps(d))  # tuples -> lists, JSON-safe

    @classmethod
    def from_attrs(cls, d: dict[str, Any]) -> Layout:
        tn = d.get("torso_normal")
        return cls(
            name=d["name"],
            joint_names=tuple(d["joints"]),
            parents=tuple(int(p) for p in d["parents"]),
            hinges=tuple((int(a), int(b)) for a, b in d["hinges"]),
            torso_normal=TorsoNormal(**tn) if tn else None,
            center_joint=int(d.get("center_joint", 0)),
            z_axis=tuple(d.get("z_axis", (0, 1))),  # type: ignore[arg-type]
            x_axis=tuple(d.get("x_axis", (4, 8))),  # type: ignore[arg-type]
            fixed_origin_joint=int(d.get("fixed_origin_joint", 0)),
            presence_joint=int(d.get("presence_joint", 0)),
            edges=tuple((int(a), int(b)) for a, b in d.get("edges", ())),
        )


def _one_based(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(a - 1, b - 1) for a, b in pairs]


_NTU_NAMES = (
    "spine_base", "spine_mid", "neck", "head", "shoulder_left", "elbow_left", "wrist_left",
    "hand_left", "shoulder_right", "elbow_right", "wrist_right", "hand_right", "hip_left",
    "knee_left", "ankle_left", "foot_left", "hip_right", "knee_right", "ankle_right",
    "foot_right", "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
)
# docs/design.md §3.2, (child, parent), 1-based.
_NTU_BONES = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (21, 21), (22, 8), (23, 8), (24, 12), (25, 12),
]
_NTU_HINGES = [(23, 22) if c == 23 else (25, 24) if c == 25 else (c, p) for c, p in _NTU_BONES]

NTU25 = Layout(
    name="ntu25",
    joint_names=_NTU_NAMES,
    parents=tuple(p for _, p in _one_based(_NTU_BONES)),
    hinges=tuple(_one_based(_NTU_HINGES)),
    # bone 21 := unit((b2 - b9) x (b5 - b9)) (golden README).
    torso_normal=TorsoNormal(joint=20, a=1, b=4, c=8),
    center_joint=1,
    z_axis=(0, 1),
    x_axis=(4, 8),
    fixed_origin_joint=20,
    presence_joint=0,
)

_KINECT20_NAMES = (
    "head", "shoulder_center", "spine", "hip_center", "l_shoulder", "l_elbow", "l_wrist", "l_hand",
    "r_shoulder", "r_elbow", "r_wrist", "r_hand", "l_hip", "l_knee", "l_ankle", "l_foot", "r_hip",
    "r_knee", "r_ankle", "r_foot",
)
# Kinect v1 (UTD-MHAD order, docs/design.md §2.3), 0-based. The tree mirrors NTU25: the shoulder centre is
# the root (NTU's spine_shoulder), the spine hangs from it and the hips from the hip centre.
_KINECT20_PARENTS = (1, 1, 1, 2, 1, 4, 5, 6, 1, 8, 9, 10, 3, 12, 13, 14, 3, 16, 17, 18)

KINECT20 = Layout(
    name="kinect20",
    joint_names=_KINECT20_NAMES,
    parents=_KINECT20_PARENTS,
    hinges=tuple((v, p) for v, p in enumerate(_KINECT20_PARENTS)),
    # As NTU's unit((b_spine - b_rshoulder) x (b_lshoulder - b_rshoulder)) at the root bone.
    torso_normal=TorsoNormal(joint=1, a=2, b=4, c=8),
    center_joint=2,
    z_axis=(3, 2),
    x_axis=(4, 8),
    fixed_origin_joint=1,
    presence_joint=3,
)

LAYOUTS: dict[str, Layout] = {NTU25.name: NTU25, KINECT20.name: KINECT20}


def get_layout(name_or_path: str) -> Layout:
    """A registered layout by name, or one loaded from a JSON file in the ``to_attrs`` form."""
    if name_or_path in LAYOUTS:
        return LAYOUTS[name_or_path]
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        return Layout.from_attrs(json.loads(p.read_text()))
    raise KeyError(f"unknown layout {name_or_path!r}; known: {', '.join(sorted(LAYOUTS))}")


def register_layout(layout: Layout) -> None:
    LAYOUTS[layout.name] = layout
