"""Features of a run's frozen encoder, computed from the store (``skeleval knn|linear --run``).

A recipe that trains the probe on augmented views (CMD's random crops, redrawn every epoch)
cannot work from an embedding file; it needs the run's encoder and the store. The encoder is
built from the run's config, loaded from its checkpoint and kept in eval mode (BatchNorm
statistics frozen, as the authors' scripts do), and never receives a gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from skelkit.eval.errors import EmbeddingSplit, EvalInputError
from skelkit.eval.finetune import (
    FinetuneInputs,
    build_finetune_model,
    open_finetune_inputs,
    provenance,
)
from skelkit.eval.linear import (
    Batches,
    LinearProbeConfig,
    LinearProbeResult,
    progress_bar,
    train_linear_probe,
)
from skelkit.eval.recipes import Recipe
from skelkit.train.runs import (
    batches,
    centre_crop,
    encode_side,
    load_run_config,
    side_dataset,
    side_loader,
    temporal_crop,
)


@dataclass
class FrozenEncoder:
    """A run's method in eval mode on ``device``, the checked run/store inputs, and a modality."""

    inputs: FinetuneInputs
    method: nn.Module
    device: torch.device
    batch_size: int
    workers: int

    @property
    def modality(self) -> str:
        return self.inputs.modality

    @property
    def input_kind(self) -> str:
        return str(self.method.input_kind)

    @property
    def window(self) -> int:
        return int(self.inputs.run_config.data.window)

    def encode(self, x: Tensor, gamma: Tensor) -> Tensor:
        """(N, D) float32 features of joints (N, 3, T, V, M), without gradient."""
        with torch.no_grad():
            return self.method.embed(x.to(self.device), gamma.to(self.device),
                                     self.modality).float()


def open_frozen_encoder(run_dir: str | Path, store: str | Path | None, protocol: str | None, *,
                        modality: str = "joint", checkpoint: str | None = None,
                        device: torch.device, batch_size: int | None = None,
                        workers: int = 0) -> FrozenEncoder:
    """The run's checkpointed encoder; ``store``/``protocol`` default to the run's own."""
    if store is None or protocol is None:
        cfg = load_run_config(run_dir)
        store = store if store is not None else cfg.data.store
        protocol = protocol if protocol is not None else cfg.data.protocol
    inputs = open_finetune_inputs(run_dir, store, protocol, modality=modality,
                                  checkpoint=checkpoint)
    method = build_finetune_model(inputs, seed=0).method.to(device).eval()
    for parameter in method.parameters():
        parameter.requires_grad_(False)
    return FrozenEncoder(inputs=inputs, method=method, device=device,
                         batch_size=batch_size or inputs.run_config.engine.embed_batch_size,
                         workers=workers)


def evaluation_view(encoder: FrozenEncoder, recipe: Recipe | None = None) -> Any:
    """The un-augmented view both sides are encoded under: the recipe's centre crop where it
    names one (CMD's scripts: ``cmd_eval_view``, ratio 0.95), else the run's own evaluation view
    (``skeltrain embed``'s: CMD's centre crop in reference fidelity, the whole valid sequence
    resized to the window in paper fidelity, the stored 50 frames for fixed-length methods)."""
    if recipe is not None and recipe.test_centre_crop and encoder.input_kind == "sequence":
        return centre_crop(recipe.test_centre_crop, encoder.window)
    return encoder.inputs.run.evaluation_view()


def encoded_side(encoder: FrozenEncoder, side: str, view: Any, *, progress: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, names) of one protocol side under ``view``."""
    inputs = encoder.inputs
    loader, dataset = side_loader(
        str(inputs.store.path), inputs.protocol, side, kind=encoder.input_kind,
        window=encoder.window, batch_size=encoder.batch_size, num_workers=encoder.workers,
        start_method=inputs.run_config.data.start_method,
        pin_memory=encoder.device.type == "cuda", view=view)
    features, labels, names = encode_side(encoder.method, loader, dataset, encoder.modality,
                                          encoder.device, progress=progress,
                                          desc=f"encode {side}")
    if len(labels) == 0:
        raise EvalInputError(f"{inputs.store.path}: protocol {inputs.protocol!r} has no "
                             f"{side} samples")
    return features, labels, names


def encoded_split(encoder: FrozenEncoder, recipe: Recipe | None = None, *,
                  progress: bool = False) -> EmbeddingSplit:
    """Both sides under the evaluation view, shaped like an embedding file."""
    view = evaluation_view(encoder, recipe)
    train_x, train_y, _ = encoded_side(encoder, "train", view, progress=progress)
    test_x, test_y, test_names = encoded_side(encoder, "test", view, progress=progress)
    return EmbeddingSplit(path=Path(encoder.inputs.run_dir), train_embedding=train_x,
                          train_label=train_y, test_embedding=test_x, test_label=test_y,
                          test_name=test_names, attrs=run_attrs(encoder))


def run_attrs(encoder: FrozenEncoder) -> dict[str, Any]:
    """What was evaluated, in the keys of embedding files and eval.jsonl records."""
    return {**provenance(encoder.inputs), "source": "run"}


def check_recipe_fits(encoder: FrozenEncoder, recipe: Recipe) -> None:
    """Crops are of raw sequences: a method reading fixed-length inputs cannot take them."""
    if recipe.needs_run and encoder.input_kind != "sequence":
        raise EvalInputError(
            f"{encoder.inputs.run_dir}: recipe {recipe.name} crops raw sequences, but "
            f"{encoder.inputs.run_config.method} reads the store's fixed-length inputs; use "
            "--recipe crossclr or default")


def cropped_train_batches(encoder: FrozenEncoder, recipe: Recipe, config: LinearProbeConfig,
                          *, seed: int) -> Batches:
    """Each epoch: every train sample under a fresh random temporal crop, encoded by the frozen
    encoder, in a shuffled order (both drawn from ``(seed, epoch, sample)``)."""
    if recipe.train_crop is None:
        raise ValueError(f"recipe {recipe.name} trains on the evaluation view, not on crops")
    check_recipe_fits(encoder, recipe)
    low, high = recipe.train_crop
    crop = temporal_crop(encoder.window, low, high,
                         min_frames=recipe.min_crop_frames or encoder.window)
    inputs = encoder.inputs
    dataset = side_dataset(inputs.store.path, inputs.protocol, "train", kind="sequence",
                           augment=crop, window=encoder.window, seed=seed)
    loader, sampler = batches(dataset, batch_size=config.batch_size, shuffle=True, seed=seed,
                              drop_last=config.drop_last, num_workers=encoder.workers,
                              start_method=inputs.run_config.data.start_method,
                              pin_memory=encoder.device.type == "cuda")

    def epoch_batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler.set_epoch(epoch)
        for batch in loader:
            # "q" is the crop of this epoch; the dataset's second view "k" goes unused.
            yield encoder.encode(batch["q"], batch["gamma"]), batch["label"].to(encoder.device)

    return epoch_batches


def probe_run(encoder: FrozenEncoder, recipe: Recipe, config: LinearProbeConfig, *,
              progress: bool = False) -> tuple[LinearProbeResult, EmbeddingSplit]:
    """Train and score the recipe's probe on the run's frozen encoder; also return the
    evaluation-view features it was scored on."""
    check_recipe_fits(encoder, recipe)
    split = encoded_split(encoder, recipe, progress=progress)
    batches = None
    if recipe.needs_run:
        batches = cropped_train_batches(encoder, recipe, config, seed=config.seed)
    with progress_bar(config.epochs, f"linear ({recipe.name})", progress) as bar:
        result = train_linear_probe(
            split.train_embedding, split.train_label, split.test_embedding, split.test_label,
            config, num_classes=encoder.inputs.num_classes, device=encoder.device,
            recipe=recipe.name, batches=batches, progress=bar)
    return result, split
