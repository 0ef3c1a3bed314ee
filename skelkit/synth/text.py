"""Text writers for the genuine raw formats (docs/design.md §2), fast enough for thousands of files.

NTU numbers are written the way the Kinect recorder (C# ``float.ToString()``) wrote them: seven
significant digits, no trailing zeros, ``E-05`` style exponents for tiny values, which is
Python's ``%.7G``. One ``%`` call formats a whole body block, so no per-number Python loop runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skelkit.store.layout import Layout
from skelkit.synth.scene import Body, project_color, project_depth

CRLF = "\r\n"
_JOINT_LINE = " ".join(["%.7G"] * 11) + " %d" + CRLF
_INFO_LINE = "%d %d %d %d %d %d %d %.7G %.7G %d" + CRLF


def _body_rows(body: Body) -> np.ndarray:
    """(L, V, 12) joint fields in file order: x y z depthXY colorXY quaternion trackingState."""
    rows = np.concatenate(
        [body.joints, project_depth(body.joints), project_color(body.joints),
         body.orientation, body.tracking[..., None].astype(np.float64)], -1,
    )
    return rows + 0.0  # turns -0.0 into 0.0; the recorder never wrote "-0"


def ntu_text(bodies: Sequence[Body], num_frames: int, layout: Layout, lean: Sequence[np.ndarray]
             ) -> str:
    """The whole ``.skeleton`` file: frame count, then per frame its bodies, CRLF endings."""
    num_joints = layout.num_joints
    block_fmt = _INFO_LINE + f"{num_joints}{CRLF}" + _JOINT_LINE * num_joints
    per_frame: list[list[str]] = [[] for _ in range(num_frames)]
    for body, body_lean in zip(bodies, lean):
        rows = _body_rows(body).reshape(body.num_frames, -1).tolist()
        hands = body.hands.tolist()
        lean_rows = body_lean.tolist()
        for k in range(body.num_frames):
            t = body.first_frame + k
            if not 0 <= t < num_frames:
                continue
            fields = (body.body_id, 0, *hands[k], 0, *lean_rows[k], 2, *rows[k])
            per_frame[t].append(block_fmt % fields)
    parts = [f"{num_frames}{CRLF}"]
    for blocks in per_frame:
        parts.append(f"{len(blocks)}{CRLF}")
        parts.extend(blocks)
    return "".join(parts)


def pku_text(slots: np.ndarray) -> str:
    """PKU-MMD II skeleton text: one frame a line, 2 bodies x V joints x 3, ``%.6f``, LF."""
    t_len = slots.shape[0]
    flat = (slots.reshape(t_len, -1) + 0.0).tolist()
    line = " ".join(["%.6f"] * (slots.shape[1] * slots.shape[2] * 3)) + "\n"
    return "".join(line % tuple(row) for row in flat)


def pku_labels_text(clips: Sequence[tuple[int, int, int, int]]) -> str:
    """``label,start,end,confidence`` lines, label 1-based, frames start..end-1."""
    return "".join(f"{a},{s},{e},{c}\n" for a, s, e, c in clips)


def pku_split_text(train: Sequence[str], test: Sequence[str]) -> str:
    # "Validataion" is the dataset's own spelling; readers look for it.
    return (f"Training videos:\n{', '.join(train)}\n"
            f"Validataion videos:\n{', '.join(test)}\n")
