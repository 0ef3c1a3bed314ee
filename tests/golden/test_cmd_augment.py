"""CMD's data views against the authors' feeders: the pre-training augmentations with their draws
given (``cmd_augment.npz``: crop-resize, shear, joint corruption, the whole two-view feeder) and
the downstream view (``cmd_eval_view.npz``). The full-feeder test replays the recorded draw
sequence through our own pipeline, built from the published config, so it also proves that our
augmentations draw in the reference's order, kind and bounds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from skelkit.store.rundir import RunDir
from skelkit.train.augment import (
    Clips,
    CMDEvalView,
    cmd_eval_view,
    corrupt_joints,
    crop_length,
    crop_resize,
    shear,
    shear_matrix,
)
from skelkit.train.config import resolve_run_config
from skelkit.train.data import build_augment
from skelkit.train.fused import FusedViews
from skelkit.train.methods import CMD
from skelkit.train.runs import Run
from tests.golden.load import assert_exact, assert_forward, load_golden

REPORT: dict[str, float] = {}


@pytest.fixture(scope="module")
def augment() -> dict[str, np.ndarray]:
    return load_golden("cmd_augment")


@pytest.fixture(scope="module")
def eval_view() -> dict[str, np.ndarray]:
    return load_golden("cmd_eval_view")


@pytest.fixture(scope="module", autouse=True)
def report() -> Any:
    yield
    if REPORT:
        print("\ncmd views max|diff|:", {k: f"{v:.1e}" for k, v in REPORT.items()})


class RecordedDraws:
    """Stands in for ``numpy.random.Generator``: returns the reference's recorded draws in order
    and fails on any call whose kind or bounds differ from the reference's."""

    UNIT = ("np.random.rand", "random.random")

    def __init__(self, golden: dict[str, np.ndarray], clip: int) -> None:
        mine = golden["input/feeder/draw_sample"] == clip
        self.kinds = [str(k) for k in golden["input/feeder/draw_kind"][mine]]
        self.values = golden["input/feeder/draw_value"][mine]
        self.low = golden["input/feeder/randint_low"][mine]
        self.high = golden["input/feeder/randint_high"][mine]
        self.choice_rows = golden["input/feeder/choice"]
        self.at = 0

    def _next(self, *kinds: str) -> int:
        assert self.at < len(self.kinds), "more draws than the reference made"
        kind = self.kinds[self.at]
        assert kind in kinds, f"draw {self.at}: we drew {kinds}, the reference {kind}"
        self.at += 1
        return self.at - 1

    def random(self) -> float:
        return float(self.values[self._next(*self.UNIT)])

    def uniform(self, low: float, high: float) -> float:
        assert (low, high) == (-1.0, 1.0)
        return float(self.values[self._next("random.uniform")])

    def integers(self, low: int, high: int) -> int:
        i = self._next("np.random.randint")
        assert (low, high) == (self.low[i], self.high[i]), f"randint bounds {(low, high)}"
        return int(self.values[i])

    def choice(self, n: int, size: int, replace: bool) -> np.ndarray:
        assert (n, size, replace) == (25, 15, False)
        return self.choice_rows[int(self.values[self._next("np.random.choice")])]

    def done(self) -> bool:
        return self.at == len(self.kinds)


def test_crop_resize_with_given_draws(augment: dict[str, np.ndarray]) -> None:
    sequence = augment["input/sequence"]
    diffs = []
    for i, n in enumerate(augment["input/cropresize/num_frames"]):
        length = crop_length(int(n), float(augment["input/cropresize/u"][i]), 0.1, 1.0, 64)
        assert length == augment["expect/cropresize/crop_length"][i]
        assert n - length + 1 == augment["expect/cropresize/randint_high"][i]
        out = crop_resize(sequence[:, :n], int(augment["input/cropresize/start"][i]), length, 64)
        diffs.append(assert_forward(out, augment["expect/cropresize/output"][i], f"case {i}"))
    REPORT["cropresize"] = max(diffs)


def test_shear_with_given_draws(augment: dict[str, np.ndarray]) -> None:
    diffs = []
    for i, draws in enumerate(augment["input/shear/draws"]):
        matrix = shear_matrix(draws)
        assert_exact(matrix.astype(np.float32), augment["input/shear/matrix"][i], "S")
        out = shear(augment["input/x"], matrix)
        diffs.append(assert_forward(out, augment["expect/shear/output"][i], f"shear {i}"))
    REPORT["shear"] = max(diffs)


def test_joint_corruption_both_branches(augment: dict[str, np.ndarray]) -> None:
    x = augment["input/x"]
    zero = corrupt_joints(x, augment["input/corruption_zero/joints"], None)
    assert_exact(zero, augment["expect/corruption_zero/output"], "zero branch")
    matrix = augment["input/corruption_mix/draws"].astype(np.float64).reshape(3, 3)
    assert_exact(matrix.astype(np.float32), augment["input/corruption_mix/matrix"], "C")
    mix = corrupt_joints(x, augment["input/corruption_mix/joints"], matrix)
    REPORT["corruption_mix"] = assert_forward(mix, augment["expect/corruption_mix/output"], "mix")
    # C^T, not C: the transposed matrix misses the golden.
    wrong = corrupt_joints(x, augment["input/corruption_mix/joints"], matrix.T)
    assert np.abs(wrong - augment["expect/corruption_mix/output"]).max() > 1e-2


def test_the_published_pipeline_replays_the_reference_feeder(
        augment: dict[str, np.ndarray]) -> None:
    """cmd/ntu60's ``data.augment`` (crop-resize with the 300-frame cap, then shear or
    corruption) on the two stored clips, driven by the recorded draws: both views of both clips.
    Clip 1 (350 frames) gets 50 more frames of garbage beyond the stored 300: the cap drops them,
    as the reference's feeder does."""
    cfg = resolve_run_config("cmd", CMD, "cmd/ntu60")
    pipeline = build_augment(cfg.data.augment)
    diffs = []
    for clip, n in enumerate(augment["input/feeder/num_frame"]):
        stored = augment["input/feeder/data"][clip]
        x = stored[:, :n]
        if n > stored.shape[1]:
            extra = np.full((3, n - stored.shape[1], 25, 2), 1e3, np.float32)
            x = np.concatenate([stored, extra], axis=1)
        draws = RecordedDraws(augment, clip)
        for view in (1, 2):
            out = pipeline(x, draws)  # type: ignore[arg-type]
            diffs.append(assert_forward(out, augment[f"expect/feeder/view{view}"][clip],
                                        f"clip {clip} view {view}"))
        assert draws.done(), "fewer draws than the reference made"
    REPORT["feeder"] = max(diffs)


def recorded_draws(augment: dict[str, np.ndarray], pipeline: Any
                   ) -> tuple[list[np.ndarray], dict[int, list[Any]]]:
    """The two stored clips (clip 1 padded past its stored 300 frames) and each clip's recorded
    draws, view 1 then view 2, as ``pipeline.draw`` takes them."""
    clips, draws = [], {1: [], 2: []}
    for clip, n in enumerate(augment["input/feeder/num_frame"]):
        stored = augment["input/feeder/data"][clip]
        extra = np.full((3, max(n - stored.shape[1], 0), 25, 2), 1e3, np.float32)
        clips.append(np.concatenate([stored, extra], axis=1)[:, :n])
        recorded = RecordedDraws(augment, clip)
        for view in (1, 2):
            draws[view].append(pipeline.draw(clips[-1].shape, recorded))
        assert recorded.done(), "fewer draws than the reference made"
    return clips, draws


def test_the_published_pipeline_replays_the_reference_feeder_batched(
        augment: dict[str, np.ndarray]) -> None:
    """The same replay through the data loader's path: each clip's recorded draws (view 1, then
    view 2), then the arithmetic for both clips at once (``apply_batch``)."""
    pipeline = build_augment(resolve_run_config("cmd", CMD, "cmd/ntu60").data.augment)
    clips, draws = recorded_draws(augment, pipeline)
    for view in (1, 2):
        out = pipeline.apply_batch(Clips.from_list(clips), draws[view]).dense()
        for clip in range(len(clips)):
            assert_forward(out[clip], augment[f"expect/feeder/view{view}"][clip],
                           f"batched clip {clip} view {view}")


def test_the_published_pipeline_replays_the_reference_feeder_in_the_kernel(
        augment: dict[str, np.ndarray]) -> None:
    """The same replay through the training loader's default path: the recorded draws stacked
    (``stack``), then both clips rendered by the numba kernel (``FusedViews``)."""
    pipeline = build_augment(resolve_run_config("cmd", CMD, "cmd/ntu60").data.augment)
    clips, draws = recorded_draws(augment, pipeline)
    source = np.ascontiguousarray(np.concatenate(clips, axis=1).transpose(1, 0, 2, 3))
    lengths = np.array([c.shape[1] for c in clips])
    fused = FusedViews(pipeline)
    diffs = []
    for view in (1, 2):
        out = np.empty((len(clips), 3, 64, 25, 2), np.float32)
        fused.render_draws(source, np.arange(len(source)), lengths,
                           pipeline.stack(draws[view]), out)
        for clip in range(len(clips)):
            diffs.append(assert_forward(out[clip], augment[f"expect/feeder/view{view}"][clip],
                                        f"kernel clip {clip} view {view}"))
    REPORT["feeder, kernel"] = max(diffs)


def test_downstream_view(eval_view: dict[str, np.ndarray]) -> None:
    data, frames = eval_view["input/data"], eval_view["input/num_frame"]
    assert (float(eval_view["config/l_ratio"]), int(eval_view["config/output_frames"]),
            int(eval_view["config/max_frames"])) == pytest.approx((0.95, 64, 300))
    diffs = []
    for i, n in enumerate(frames):
        used = int(eval_view["expect/frames_used"][i])
        start = int((1.0 - 0.95) * used / 2)
        assert (start, used - 2 * start) == (eval_view["expect/crop_start"][i],
                                             eval_view["expect/crop_length"][i])
        out = cmd_eval_view(data[i], int(n))
        diffs.append(assert_forward(out, eval_view["expect/output"][i], f"clip {i}"))
        # What the data loader holds: the clip's own frames (350 for the last one).
        clip = data[i][:, :n] if n <= data.shape[2] else np.concatenate(
            [data[i], np.full((3, n - data.shape[2], 25, 2), 1e3, np.float32)], axis=1)
        assert np.array_equal(CMDEvalView()(clip), out)
    REPORT["eval_view"] = max(diffs)


def test_reference_runs_evaluate_on_the_centre_crop() -> None:
    """``skeltrain embed``, the KNN monitor and fine-tuning take the run's evaluation view: CMD's
    centre crop in the published (reference) configs, the whole-sequence resize in paper mode."""
    cfg = resolve_run_config("cmd", CMD, "cmd/ntu60")
    assert cfg.model.fidelity == "reference"
    assert isinstance(Run(RunDir("unused"), cfg).evaluation_view(), CMDEvalView)
    paper = resolve_run_config("cmd", CMD, "cmd/ntu60", ["model.fidelity=paper"])
    assert not isinstance(Run(RunDir("unused"), paper).evaluation_view(), CMDEvalView)
