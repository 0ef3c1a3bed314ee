"""The published evaluation protocols' train sides (docs/design.md §2.5), written once.

A store's ``splits/<protocol>`` arrays follow these; the NTU format (skelkit/prep/formats/ntu.py)
cuts them and the synthetic generator (skelkit/synth/plan.py) makes sure both sides exist.
"""

from __future__ import annotations

NTU60_XSUB_TRAIN = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
"""Performers of the NTU-60 cross-subject training side."""
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
     89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
"""Performers of the NTU-120 cross-subject training side."""
NTU_XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
"""Cameras of the NTU-60 cross-view training side."""
