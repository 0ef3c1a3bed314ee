"""Fine-tuning, semi-supervised and transfer evaluation, and the supervised-from-scratch baseline.

The query encoder of one modality of a pre-trained run plus a new linear classifier are trained
together with cross-entropy on the train side of a protocol, then scored on its test side. The
settings come from a named recipe (``skelkit/eval/finetune_recipes.py``: the papers' fine-tune,
semi-supervised and transfer protocols, and the supervised baseline), any of them overridable.

Choices the papers leave open, made here:

- Inputs are the un-augmented views the embedding export uses (``SkeletonDataset`` in ``embed``
  mode with the run's evaluation view: sequence methods get the whole valid sequence resized to
  the run's window, CMD in reference fidelity its centre crop, fixed-length methods the store's
  50 frames), unless the recipe crops: ``train_crop`` draws a random
  temporal crop every epoch (CMD's fine-tune feeder) and ``test_centre_crop`` scores the centre
  crop. ``augment=True`` uses the run's own pre-training augmentation (its first view) instead.
  The derived modality comes from the method's ``derive_input``, the same path ``embed`` takes.
- Semi-supervised subsets (``subset="stratified"``) keep ``round(fraction * n_c)`` samples of
  every class c, at least one; ``subset="uniform"`` draws ``int(fraction * N)`` samples without
  regard to class, as CMD's feeder does. Repeat r draws its subset, its classifier
  initialisation and its shuffling from ``(seed, r)``. The std over repeats is the sample std
  (ddof = 1), as ``skeleval report`` computes it.
- Transfer means the store is another dataset than the one the run was pre-trained on; the
  classifier always has as many outputs as the fine-tuning store has classes. The layouts must
  be the same, since the encoder's input and graph are built from it.
- ``scratch`` builds the same method from the same seed and skips the checkpoint: the supervised
  baseline ("w/o pre-training" in I²MD Table 3).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from skelkit.errors import one_line
from skelkit.eval.errors import EvalInputError
from skelkit.store.reader import Store, StoreError, open_store
from skelkit.train.runs import (
    CheckpointState,
    Run,
    batches,
    centre_crop,
    open_run,
    resolve_device,
    temporal_crop,
)
from skelkit.train.runs import (
    side_dataset as run_side_dataset,
)

SUBSETS = ("stratified", "uniform")
CLASSIFIER_INITS = ("uniform", "normal")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning protocol. The defaults are I²MD's fine-tune recipe (``i2md``)."""

    epochs: int = 80
    lr: float = 0.01
    milestones: tuple[int, ...] = (50, 70)
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int | None = None
    """None: the run's own ``engine.batch_size``."""
    label_fraction: float = 1.0
    subset: str = "stratified"
    repeats: int = 1
    seed: int = 0
    augment: bool = False
    train_crop: tuple[float, float] | None = None
    """Random temporal crop of ratio U[lo, hi] of the valid sequence (at least the run's window
    in frames, CMD's floor), resized to the window, redrawn every epoch; sequence methods only."""
    test_centre_crop: float | None = None
    """Score the centre ``ratio`` of the valid sequence, resized to the window (CMD: 0.95)."""
    classifier_init: str = "uniform"
    """uniform: nn.Linear's own U(+-1/sqrt(fan_in)); normal: N(0, 0.01) weights, zero bias."""
    num_workers: int = 0
    recipe: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive epochs, got {self.milestones}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label fraction must lie in (0, 1], got {self.label_fraction}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.num_workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.num_workers}")
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")
        if self.classifier_init not in CLASSIFIER_INITS:
            raise ValueError(f"classifier init must be one of {CLASSIFIER_INITS}, "
                             f"got {self.classifier_init!r}")
        if self.train_crop is not None:
            lo, hi = self.train_crop
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"train crop must be 0 < lo <= hi <= 1, got {self.train_crop}")
        if self.test_centre_crop is not None and not 0.0 < self.test_centre_crop <= 1.0:
            raise ValueError(f"test centre crop must lie in (0, 1], got {self.test_centre_crop}")
        if self.augment and self.train_crop is not None:
            raise ValueError("augment and train crop exclude each other (both set the train view)")


@dataclass
class FinetuneInputs:
    """A checked run, checkpoint and store: everything the repeats share."""

    run: Run
    store: Store
    protocol: str
    modality: str
    checkpoint: CheckpointState | None = field(repr=False)
    pretrain_dataset: str
    transfer: bool
    num_classes: int

    @property
    def scratch(self) -> bool:
        return self.checkpoint is None

    @property
    def run_dir(self) -> Path:
        return self.run.dir.path

    @property
    def run_config(self) -> Any:
        return self.run.config

    @property
    def sequence(self) -> bool:
        """Whether the method reads raw sequences (which crops can cut), not fixed 50 frames."""
        return self.run.input_kind == "sequence"


@dataclass(frozen=True)
class FinetuneResult:
    top1: float
    top5: float
    top1_std: float | None
    top5_std: float | None
    runs: list[tuple[float, float]]
    n_train: int
    n_train_available: int
    n_test: int
    num_classes: int
    transfer: bool
    scratch: bool
    config: FinetuneConfig
    batch_size: int
    provenance: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"top1": self.top1, "top5": self.top5}
        if self.config.repeats > 1:
            out.update(top1_std=self.top1_std, top5_std=self.top5_std,
                       top1_runs=[r[0] for r in self.runs], top5_runs=[r[1] for r in self.runs])
        out.update(
            epochs=self.config.epochs, label_fraction=self.config.label_fraction,
            repeats=self.config.repeats, n_train=self.n_train,
            n_train_available=self.n_train_available, n_test=self.n_test,
            num_classes=self.num_classes, transfer=self.transfer, scratch=self.scratch,
            lr=self.config.lr, milestones=list(self.config.milestones),
            batch_size=self.batch_size, weight_decay=self.config.weight_decay,
            momentum=self.config.momentum, nesterov=self.config.nesterov,
            subset=self.config.subset, seed=self.config.seed, augment=self.config.augment,
            train_crop=list(self.config.train_crop) if self.config.train_crop else None,
            test_centre_crop=self.config.test_centre_crop,
            classifier_init=self.config.classifier_init, recipe=self.config.recipe,
        )
        return out


# --- subsets ----------------------------------------------------------------------------------


def stratified_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions keeping ``round(fraction * n_c)`` (at least one) samples of each class."""
    labels = np.asarray(labels)
    if fraction >= 1.0:
        return np.arange(len(labels), dtype=np.int64)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        keep = max(1, int(np.floor(fraction * len(members) + 0.5)))
        chosen.append(rng.choice(members, size=min(keep, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def uniform_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``int(fraction * N)`` samples (at least one) drawn without regard to
    class, as CMD's semi-supervised feeder draws them (``random_select_data``)."""
    n = len(labels)
    if fraction >= 1.0:
        return np.arange(n, dtype=np.int64)
    keep = max(1, int(n * fraction))
    return np.sort(rng.permutation(n)[:keep]).astype(np.int64)


def label_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator,
                 how: str = "stratified") -> np.ndarray:
    if how == "uniform":
        return uniform_subset(labels, fraction, rng)
    return stratified_subset(labels, fraction, rng)


def repeat_seed(seed: int, repeat: int) -> int:
    """The torch seed of one repeat, derived from (seed, repeat) so repeats never share it."""
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


def subset_rng(seed: int, repeat: int) -> np.random.Generator:
    return np.random.default_rng([seed, repeat, 1])


# --- inputs -----------------------------------------------------------------------------------


def open_finetune_inputs(run_dir: str | Path, store_path: str | Path, protocol: str, *,
                         modality: str = "joint", checkpoint: str | Path | None = None,
                         scratch: bool = False) -> FinetuneInputs:
    """Check the run, its checkpoint (unless ``scratch``), the store and the protocol."""
    run = open_run(run_dir)
    cfg = run.config
    store = _open(store_path)
    try:
        store.split(protocol)
    except (StoreError, KeyError, ValueError) as err:
        message = str(err) if str(store_path) in str(err) else f"{store_path}: {err}"
        raise EvalInputError(one_line(message)) from None
    if modality not in run.modalities:
        raise EvalInputError(f"{run.dir.path}: modality {modality!r} was not trained by "
                             f"{cfg.method}; trained: {', '.join(run.modalities)}")
    pretrain_store = _open_quietly(cfg.data.store)
    if pretrain_store is not None and pretrain_store.layout.name != store.layout.name:
        raise EvalInputError(f"{store_path}: store layout {store.layout.name} does not match "
                             f"the run's {pretrain_store.layout.name}")
    if pretrain_store is not None:
        pretrain_dataset = pretrain_store.dataset
    else:
        # The pre-training store may live elsewhere; its file stem is the dataset users name.
        pretrain_dataset = Path(str(cfg.data.store or "").rstrip("/")).name.removesuffix(".zarr")
    labels = store.samples["label"].to_numpy(np.int64)
    return FinetuneInputs(
        run=run, store=store, protocol=protocol, modality=modality,
        checkpoint=None if scratch else run.checkpoint(checkpoint),
        pretrain_dataset=pretrain_dataset, transfer=store.dataset != pretrain_dataset,
        num_classes=int(labels.max()) + 1 if len(labels) else 0,
    )


def _open(path: str | Path) -> Store:
    if not Path(path).exists():
        raise EvalInputError(f"{path}: no such store")
    try:
        return open_store(path)
    except StoreError as err:
        raise EvalInputError(one_line(err)) from None


def _open_quietly(path: str | None) -> Store | None:
    if not path or not Path(path).exists():
        return None
    try:
        return open_store(path)
    except StoreError:
        return None


# --- the model --------------------------------------------------------------------------------


class FinetuneModel(nn.Module):
    """The method's query encoder of one modality and a new linear classifier.

    The whole method is kept (registered, so ``.to`` moves what ``derive_input`` may use), but only
    ``trainable_parameters`` are optimised: projection heads, key encoders and queues stay idle.
    """

    def __init__(self, method: nn.Module, modality: str, num_classes: int,
                 generator: torch.Generator, classifier_init: str = "uniform") -> None:
        super().__init__()
        self.method = method
        self.modality = modality
        self.encoder = method.encoder(modality)
        self.classifier = nn.Linear(self.encoder.out_dim, num_classes)
        with torch.no_grad():
            if classifier_init == "normal":  # CMD's fine-tune scripts: fc ~ N(0, 0.01), bias 0
                self.classifier.weight.normal_(0.0, 0.01, generator=generator)
                self.classifier.bias.zero_()
            else:  # nn.Linear's own uniform(+-1/sqrt(fan_in)), from the repeat's generator
                bound = 1.0 / float(np.sqrt(self.encoder.out_dim))
                self.classifier.weight.uniform_(-bound, bound, generator=generator)
                self.classifier.bias.uniform_(-bound, bound, generator=generator)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.classifier.parameters()]

    def forward(self, x: Tensor, gamma: Tensor) -> Tensor:
        return self.classifier(self.encoder(self.method.derive_input(x, gamma, self.modality)))


def build_finetune_model(inputs: FinetuneInputs, seed: int,
                         classifier_init: str = "uniform") -> FinetuneModel:
    """The method from the run's config (weights from the checkpoint unless scratch) + classifier."""
    torch.manual_seed(seed)  # the random initialisation of --scratch (and of unused parts)
    method = inputs.run.build(inputs.store, inputs.checkpoint)
    generator = torch.Generator().manual_seed(seed)
    try:
        return FinetuneModel(method, inputs.modality, inputs.num_classes, generator,
                             classifier_init)
    except ValueError as err:  # the method has no encoder for this modality
        raise EvalInputError(one_line(f"{inputs.run_dir}: {err}")) from None


# --- data -------------------------------------------------------------------------------------


class _Positions(torch.utils.data.Dataset):
    """A subset of a SkeletonDataset's positions; keeps its batched ``__getitems__`` and the
    ``(position, epoch)`` keys of the epoch sampler."""

    def __init__(self, dataset: Any, positions: np.ndarray) -> None:
        self.dataset, self.positions = dataset, np.asarray(positions, np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[Any]) -> list[dict[str, Any]]:
        mapped = []
        for key in keys:
            if isinstance(key, tuple | list):
                mapped.append((int(self.positions[int(key[0])]), int(key[1])))
            else:
                mapped.append(int(self.positions[int(key)]))
        return self.dataset.__getitems__(mapped)


def view_augment(inputs: FinetuneInputs, side: str, config: FinetuneConfig) -> Any:
    """The transform of one side's samples; None: the embedding export's un-augmented view."""
    window = inputs.run.window
    if side == "train" and config.augment:
        return inputs.run.train_augment()
    if side == "train" and config.train_crop is not None and inputs.sequence:
        lo, hi = config.train_crop
        return temporal_crop(window, lo, hi, min_frames=window)
    return None


def unaugmented_view(inputs: FinetuneInputs, side: str, config: FinetuneConfig) -> Any:
    """The un-augmented view: the recipe's centre crop (CMD's test feeder) on the test side of a
    sequence method, otherwise the run's own embedding view."""
    if side == "test" and config.test_centre_crop is not None and inputs.sequence:
        return centre_crop(config.test_centre_crop, inputs.run.window)
    return inputs.run.evaluation_view()


def side_dataset(inputs: FinetuneInputs, side: str, *, config: FinetuneConfig, seed: int) -> Any:
    """One side under its fine-tuning view ("train" mode draws a view per (sample, epoch) when
    the side is augmented; its "q" is used)."""
    return run_side_dataset(inputs.store.path, inputs.protocol, side, kind=inputs.run.input_kind,
                            window=inputs.run.window, seed=seed,
                            augment=view_augment(inputs, side, config),
                            view=unaugmented_view(inputs, side, config))


def _loader(dataset: Any, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
            inputs: FinetuneInputs, workers: int, device: torch.device) -> tuple[Any, Any]:
    return batches(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                   drop_last=drop_last, num_workers=workers,
                   start_method=inputs.run_config.data.start_method,
                   pin_memory=device.type == "cuda")


def _inputs_of(batch: dict[str, Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    x = batch["x"] if "x" in batch else batch["q"]
    return x.to(device, non_blocking=True), batch["gamma"].to(device, non_blocking=True)


# --- training and scoring ---------------------------------------------------------------------


def train_finetune_model(model: FinetuneModel, inputs: FinetuneInputs, positions: np.ndarray,
                         config: FinetuneConfig, *, seed: int, device: torch.device,
                         bar: Any = None) -> float:
    """Fine-tune encoder + classifier on the given train-side positions; the last epoch's loss."""
    dataset = side_dataset(inputs, "train", config=config, seed=seed)
    subset = _Positions(dataset, positions)
    batch_size = config.batch_size or inputs.run_config.engine.batch_size
    # A lone trailing sample would make BatchNorm over (N, C) features fail in train mode.
    drop_last = len(subset) % batch_size == 1 and len(subset) > 1
    loader, sampler = _loader(subset, batch_size=batch_size, shuffle=True, seed=seed,
                              drop_last=drop_last, inputs=inputs, workers=config.num_workers,
                              device=device)
    model.to(device)
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=config.nesterov)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones),
                                                    gamma=config.gamma)
    loss_fn = nn.CrossEntropyLoss()
    epoch_loss = float("nan")
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        model.train()
        total, seen = torch.zeros(()), 0
        for batch in loader:
            x, gamma = _inputs_of(batch, device)
            target = batch["label"].to(device)
            loss = loss_fn(model(x, gamma), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().cpu() * len(target)
            seen += len(target)
        schedule.step()
        epoch_loss = float(total) / max(seen, 1)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:g}")
    return epoch_loss


@torch.no_grad()
def evaluate_finetune_model(model: FinetuneModel, inputs: FinetuneInputs, *, batch_size: int,
                            device: torch.device, workers: int = 0,
                            config: FinetuneConfig = FinetuneConfig()) -> tuple[float, float, int]:
    """Top-1 and top-5 (fractions) of the test side, and its size."""
    dataset = side_dataset(inputs, "test", config=config, seed=0)
    loader, _ = _loader(dataset, batch_size=batch_size, shuffle=False, seed=0, drop_last=False,
                        inputs=inputs, workers=workers, device=device)
    model.to(device).eval()
    hits1 = hits5 = count = 0
    for batch in loader:
        x, gamma = _inputs_of(batch, device)
        logits = model(x, gamma).float().cpu()
        target = batch["label"]
        ranking = torch.topk(logits, min(5, logits.shape[1]), dim=1).indices
        hits = ranking == target.unsqueeze(1)
        hits1 += int(hits[:, 0].sum())
        hits5 += int(hits.any(dim=1).sum())
        count += len(target)
    if count == 0:
        raise EvalInputError(f"{inputs.store.path}: protocol {inputs.protocol!r} has no test samples")
    return hits1 / count, hits5 / count, count


def run_finetune(run_dir: str | Path, store_path: str | Path, protocol: str, *,
                 modality: str = "joint", checkpoint: str | Path | None = None,
                 scratch: bool = False, config: FinetuneConfig = FinetuneConfig(),
                 device: str | torch.device = "cpu", progress: bool = False,
                 require_transfer: bool = False) -> FinetuneResult:
    """Fine-tune (or train from scratch) ``config.repeats`` times and score the test side.

    ``require_transfer``: refuse a store of the run's own pre-training dataset."""
    device = resolve_device(device)
    inputs = open_finetune_inputs(run_dir, store_path, protocol, modality=modality,
                                  checkpoint=checkpoint, scratch=scratch)
    if require_transfer and not inputs.transfer:
        raise EvalInputError(f"{store_path}: a transfer recipe needs another dataset than the "
                             f"run's pre-training one ({inputs.pretrain_dataset})")
    train_labels = inputs.store.samples["label"].to_numpy(np.int64)[
        inputs.store.indices(protocol, "train")]
    if len(train_labels) == 0:
        raise EvalInputError(f"{store_path}: protocol {protocol!r} has no train samples")
    _check_views(inputs, config)
    batch_size = config.batch_size or inputs.run_config.engine.batch_size
    runs: list[tuple[float, float]] = []
    n_train = n_test = 0
    with tqdm(total=config.epochs * config.repeats, disable=not progress, unit="epoch",
              desc="scratch" if scratch else "fine-tune", dynamic_ncols=True) as bar:
        for repeat in range(config.repeats):
            seed = repeat_seed(config.seed, repeat)
            positions = label_subset(train_labels, config.label_fraction,
                                     subset_rng(config.seed, repeat), config.subset)
            model = build_finetune_model(inputs, seed, config.classifier_init)
            train_finetune_model(model, inputs, positions, config, seed=seed, device=device,
                                 bar=bar)
            top1, top5, n_test = evaluate_finetune_model(
                model, inputs, batch_size=inputs.run_config.engine.embed_batch_size,
                device=device, workers=config.num_workers, config=config)
            runs.append((top1, top5))
            n_train = len(positions)
    top1s, top5s = [r[0] for r in runs], [r[1] for r in runs]
    many = len(runs) > 1
    return FinetuneResult(
        top1=statistics.fmean(top1s), top5=statistics.fmean(top5s),
        top1_std=statistics.stdev(top1s) if many else None,
        top5_std=statistics.stdev(top5s) if many else None,
        runs=runs, n_train=n_train, n_train_available=len(train_labels), n_test=n_test,
        num_classes=inputs.num_classes, transfer=inputs.transfer, scratch=inputs.scratch,
        config=config, batch_size=batch_size, provenance=provenance(inputs),
    )


def _check_views(inputs: FinetuneInputs, config: FinetuneConfig) -> None:
    """Crops are cut from the valid sequence: a fixed-length method never sees one."""
    cropping = config.train_crop is not None or config.test_centre_crop is not None
    if cropping and not inputs.sequence:
        what = f"recipe {config.recipe}" if config.recipe else "temporal crops"
        raise EvalInputError(f"{inputs.run_dir}: {what} crop the whole sequence, but "
                             f"{inputs.run_config.method} reads the store's fixed-length view")


def provenance(inputs: FinetuneInputs) -> dict[str, Any]:
    """What was fine-tuned, in the keys ``skeleval report`` and the embedding records use."""
    cfg = inputs.run_config
    out: dict[str, Any] = {
        "method": cfg.method,
        "encoder": str(getattr(cfg.model, "encoder", "")),
        "modality": inputs.modality,
        "store": str(Path(inputs.store.path).resolve()),
        "dataset": inputs.store.dataset,
        "pretrain_dataset": inputs.pretrain_dataset,
        "protocol": inputs.protocol,
    }
    if inputs.checkpoint is not None:
        out["checkpoint"] = str(inputs.checkpoint.path.resolve())
        out["epoch"] = inputs.checkpoint.epoch
    return out
