"""Published top-1 accuracies (%), for ``skeleval report --published`` (issue 13 item 4).

One row per number, each with the table it comes from. ``streams`` says what was evaluated:
``joint`` is one stream, as skelkit evaluates by default; ``3-stream``/``6-stream`` are
ensembles over modalities, which a joint-stream row of ours is not comparable to.

Keys: ``evaluation`` is one of linear, knn, semi1, semi10, finetune, transfer; ``dataset`` and
``protocol`` name the test side (for transfer: the target, PKU-II xsub), ``source_dataset`` the
pre-training set of a transfer; ``variant`` is "" for pre-trained encoders and
"w/o pre-training" for the same encoder trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    method: str
    evaluation: str
    dataset: str
    protocol: str
    top1: float
    streams: str
    source: str
    variant: str = ""
    source_dataset: str = ""


I2MD_T1 = "I²MD Table 1 (linear)"
I2MD_T2 = "I²MD Table 2 (KNN, k = 1)"
I2MD_T3 = "I²MD Table 3 (fine-tune)"
I2MD_T4 = "I²MD Table 4 (semi-supervised, mean of 5 runs)"
I2MD_T5 = "I²MD Table 5 (transfer to PKU-II xsub)"
CROSSCLR = "CrosSCLR"
IKEM = "IKEM Table 1"

_COLUMNS = (("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"), ("ntu120", "xset"),
            ("pku2", "xsub"))


def _row(method: str, evaluation: str, values: tuple[float | None, ...], streams: str,
         source: str, variant: str = "") -> list[Published]:
    """Values in the order NTU-60 xsub, xview, NTU-120 xsub, xset, PKU-II xsub (None: absent)."""
    return [Published(method, evaluation, dataset, protocol, value, streams, source, variant)
            for (dataset, protocol), value in zip(_COLUMNS, values) if value is not None]


def _semi(method: str, xsub: tuple[float, float], xview: tuple[float, float], streams: str,
          source: str) -> list[Published]:
    out = []
    for evaluation, index in (("semi1", 0), ("semi10", 1)):
        out.append(Published(method, evaluation, "ntu60", "xsub", xsub[index], streams, source))
        out.append(Published(method, evaluation, "ntu60", "xview", xview[index], streams, source))
    return out


def _transfer(method: str, from_ntu60: float, from_ntu120: float, source: str
              ) -> list[Published]:
    return [Published(method, "transfer", "pku2", "xsub", value, "joint", source,
                      source_dataset=origin)
            for origin, value in (("ntu60", from_ntu60), ("ntu120", from_ntu120))]


PUBLISHED: tuple[Published, ...] = (
    *_row("cmd", "linear", (79.4, 86.9, 70.3, 71.5, 43.0), "joint", I2MD_T1),
    *_row("i2md", "linear", (83.4, 88.0, 73.1, 74.1, 49.0), "joint", I2MD_T1),
    *_row("cmd", "knn", (70.6, 85.4, 58.3, 60.9, None), "joint", I2MD_T2),
    *_row("i2md", "knn", (75.9, 83.8, 62.0, 64.7, None), "joint", I2MD_T2),
    *_row("i2md", "finetune", (86.5, 93.6, 79.1, 80.3, None), "joint", I2MD_T3),
    *_row("i2md", "finetune", (80.1, 91.2, 71.1, 74.1, None), "joint", I2MD_T3,
          variant="w/o pre-training"),
    *_semi("cmd", xsub=(50.6, 75.4), xview=(53.0, 80.2), streams="joint", source=I2MD_T4),
    *_semi("i2md", xsub=(66.9, 81.1), xview=(66.9, 84.7), streams="joint", source=I2MD_T4),
    *_transfer("cmd", 56.0, 57.0, I2MD_T5),
    *_transfer("i2md", 60.7, 61.8, I2MD_T5),
    # CrosSCLR: joint stream of 3-view training, xview only (§4.3, "CrosSCLR-joint (79.88)");
    # the 3-stream ensemble: Table 5 (NTU-60), Table 6 (NTU-120), Table 7 (semi), Table 8 (FT).
    *_row("crossclr", "linear", (None, 79.88), "joint", f"{CROSSCLR} §4.3 / Table 1"),
    *_row("crossclr", "linear", (77.8, 83.4, 67.9, 66.7), "3-stream",
          f"{CROSSCLR} Tables 5 and 6"),
    *_semi("crossclr", xsub=(51.1, 74.4), xview=(50.0, 77.8), streams="3-stream",
           source=f"{CROSSCLR} Table 7"),
    *_row("crossclr", "finetune", (86.2, 92.5, 80.5, 80.4), "3-stream", f"{CROSSCLR} Table 8"),
    # SkeletonCLR (joint), as trained in the CrosSCLR paper: Table 4.
    *_row("skeletonclr", "linear", (68.3, 76.4), "joint", f"{CROSSCLR} Table 4"),
    # IKEM: the joint stream of the six-modality model (Table 1c), the 6-stream ensemble
    # (Table 1b) and the three-modality student's 3-stream ensemble (Table 1d).
    *_row("ikem", "linear", (75.5, 81.8), "joint", f"{IKEM}c"),
    *_row("ikem", "linear", (81.2, 86.9), "6-stream", f"{IKEM}b"),
    *_row("ikem-student", "linear", (80.7, 86.0), "3-stream", f"{IKEM}d"),
)


def published_for(method: str, variant: str = "") -> list[Published]:
    return [p for p in PUBLISHED if p.method == method and p.variant == variant]
