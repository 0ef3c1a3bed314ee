"""Linear probe on frozen features (I²MD §4.3.1; CrosSCLR §4.2) with train-side standardisation.

One fully connected layer trained with cross-entropy by SGD (momentum 0.9, no weight decay unless
asked) on a step schedule (x0.1 at each milestone), fitted on the train side only and scored on
the test side. By default every feature dimension is first standardised with the train side's
mean and standard deviation (``skelkit.eval.features``): without it, features with a large offset
and a tiny spread leave a plain-SGD probe at chance (issue 13). The authors' recipes
(``skelkit.eval.recipes``) switch it off, as their scripts feed raw features.

Training is written once for two kinds of input: features held in memory (an embedding file, raw
joints) and features re-encoded every epoch from augmented views (CMD's recipe); both hand
``train_probe`` a function that yields an epoch's (features, labels) batches. All randomness of
the probe (initialisation, shuffling) comes from one seeded generator, so a seed fixes the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from skelkit.eval.features import FeatureStats, feature_stats

BEST_LABEL = "best over evaluations (selected on the test split)"

Batches = Callable[[int], Iterable[tuple[Tensor, Tensor]]]
"""epoch -> that epoch's (features (B, D) float32, labels (B,) int64) batches, on the device."""
Scorer = Callable[[nn.Module], tuple[float, float]]
"""probe -> (top-1, top-5) on the test side."""


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = 80
    lr: float = 0.1
    milestones: tuple[int, ...] = (50, 70)
    gamma: float = 0.1
    batch_size: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    seed: int = 0
    standardize: bool = True
    """Standardise every dimension with the train side's mean and standard deviation."""
    init_std: float | None = None
    """None: nn.Linear's uniform(+-1/sqrt(D)); a number s: weights N(0, s^2), zero bias."""
    drop_last: bool = False
    eval_every: int = 0
    """Score the test side every this many epochs and after the last; 0: after the last only."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive epochs, got {self.milestones}")
        if self.init_std is not None and self.init_std <= 0:
            raise ValueError(f"init std must be > 0, got {self.init_std}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the test side is scored after (1-based) ``epoch``."""
        if epoch == self.epochs:
            return True
        return self.eval_every > 0 and epoch % self.eval_every == 0


@dataclass(frozen=True)
class Evaluation:
    epoch: int
    top1: float
    top5: float


@dataclass(frozen=True)
class LinearProbeResult:
    top1: float
    """Final epoch's test top-1."""
    top5: float
    train_top1: float
    n_train: int
    n_test: int
    config: LinearProbeConfig
    final_loss: float
    evaluations: tuple[Evaluation, ...] = ()
    feature_check: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    @property
    def best(self) -> Evaluation | None:
        """The best test top-1 over periodic evaluations (first on ties); None without them."""
        if self.config.eval_every <= 0 or not self.evaluations:
            return None
        return max(self.evaluations, key=lambda e: (e.top1, -e.epoch))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "top1": self.top1,
            "top5": self.top5,
            "train_top1": self.train_top1,
            "final_loss": self.final_loss,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "epochs": self.config.epochs,
            "lr": self.config.lr,
            "milestones": list(self.config.milestones),
            "batch_size": self.config.batch_size,
            "weight_decay": self.config.weight_decay,
            "seed": self.config.seed,
            "standardized": self.config.standardize,
            "init_std": self.config.init_std,
        }
        if self.recipe is not None:
            out["recipe"] = self.recipe
        best = self.best
        if best is not None:
            out.update(best_top1=best.top1, best_epoch=best.epoch, best_note=BEST_LABEL,
                       evaluated_epochs=[e.epoch for e in self.evaluations])
        out.update(self.feature_check)
        return out


def progress_bar(epochs: int, desc: str, enabled: bool) -> Any:
    """An epoch bar for a probe (stderr); a disabled one when ``enabled`` is False."""
    return tqdm(total=epochs, desc=desc, unit="epoch", disable=not enabled, dynamic_ncols=True)


def parse_milestones(text: str) -> tuple[int, ...]:
    """'50,70' -> (50, 70); an empty string means no learning-rate drop."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"milestones must be comma-separated integers, got {text!r}") from None


class LinearProbe(nn.Module):
    """z = (x - shift) * inv_scale (fixed, from the train side), then one linear layer."""

    def __init__(self, in_features: int, num_classes: int, generator: torch.Generator, *,
                 stats: FeatureStats | None = None, init_std: float | None = None) -> None:
        super().__init__()
        if stats is None:
            shift, inv_scale = np.zeros(in_features, np.float32), np.ones(in_features, np.float32)
        else:
            shift, inv_scale = stats.shift_and_inverse_scale()
        self.register_buffer("shift", torch.as_tensor(shift))
        self.register_buffer("inv_scale", torch.as_tensor(inv_scale))
        self.linear = nn.Linear(in_features, num_classes)
        # Drawn from the probe's own generator, so nothing else touching the global RNG can
        # change the result.
        with torch.no_grad():
            if init_std is None:  # nn.Linear's default bound
                bound = 1.0 / np.sqrt(in_features)
                self.linear.weight.uniform_(-bound, bound, generator=generator)
                self.linear.bias.uniform_(-bound, bound, generator=generator)
            else:  # CMD: N(0, 0.01); CrosSCLR: N(0, 0.02); zero bias in both
                self.linear.weight.normal_(0.0, init_std, generator=generator)
                self.linear.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.linear((x - self.shift) * self.inv_scale)


def new_probe(in_features: int, num_classes: int, config: LinearProbeConfig,
              generator: torch.Generator, stats: FeatureStats | None) -> LinearProbe:
    """The probe a config asks for; ``stats`` are used only when it standardises."""
    return LinearProbe(in_features, num_classes, generator,
                       stats=stats if config.standardize else None, init_std=config.init_std)


def train_probe(probe: LinearProbe, batches: Batches, config: LinearProbeConfig, *,
                evaluate: Scorer | None = None, progress: Any = None
                ) -> tuple[float, tuple[Evaluation, ...]]:
    """SGD on the probe's linear layer; returns the last epoch's mean loss and the evaluations."""
    optimizer = torch.optim.SGD(probe.linear.parameters(), lr=config.lr,
                                momentum=config.momentum, nesterov=config.nesterov,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.milestones), gamma=config.gamma)
    loss_fn = nn.CrossEntropyLoss()
    evaluations: list[Evaluation] = []
    epoch_loss = float("nan")
    for epoch in range(config.epochs):
        total, seen = 0.0, 0
        for x, y in batches(epoch):
            loss = loss_fn(probe(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
        epoch_loss = total / max(seen, 1)
        schedule.step()
        if evaluate is not None and config.evaluates_after(epoch + 1):
            evaluations.append(Evaluation(epoch + 1, *evaluate(probe)))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{epoch_loss:.4f}")
    return epoch_loss, tuple(evaluations)


def memory_batches(features: np.ndarray, labels: np.ndarray, config: LinearProbeConfig,
                   generator: torch.Generator, device: torch.device) -> Batches:
    """Shuffled batches of in-memory features, one fresh order per epoch from ``generator``."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32).to(device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)

    def epoch_batches(_epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        stop = x.shape[0]
        if config.drop_last and stop >= config.batch_size:
            stop -= stop % config.batch_size
        for start in range(0, stop, config.batch_size):
            batch = order[start:start + config.batch_size]
            yield x[batch], y[batch]

    return epoch_batches


def fit_linear_classifier(
    train_features: np.ndarray,
    train_label: np.ndarray,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    *,
    device: str | torch.device = "cpu",
    evaluate: Scorer | None = None,
    stats: FeatureStats | None = None,
) -> tuple[LinearProbe, float]:
    """Train the probe on the train side; return it and the mean loss of its last epoch."""
    probe, loss, _ = _fit(train_features, train_label, num_classes, config,
                          device=torch.device(device), evaluate=evaluate, stats=stats)
    return probe, loss


def _fit(train_features: np.ndarray, train_label: np.ndarray, num_classes: int,
         config: LinearProbeConfig, *, device: torch.device, evaluate: Scorer | None,
         stats: FeatureStats | None, batches: Batches | None = None, progress: Any = None
         ) -> tuple[LinearProbe, float, tuple[Evaluation, ...]]:
    if config.standardize and stats is None:
        stats = feature_stats(train_features)
    generator = torch.Generator().manual_seed(config.seed)
    probe = new_probe(np.asarray(train_features).shape[1], num_classes, config, generator,
                      stats).to(device)
    if batches is None:
        batches = memory_batches(train_features, train_label, config, generator, device)
    loss, evaluations = train_probe(probe, batches, config, evaluate=evaluate, progress=progress)
    return probe, loss, evaluations


def train_linear_probe(
    train_features: np.ndarray,
    train_label: np.ndarray,
    test_features: np.ndarray,
    test_label: np.ndarray,
    config: LinearProbeConfig = LinearProbeConfig(),
    *,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    recipe: str | None = None,
    batches: Batches | None = None,
    progress: Any = None,
) -> LinearProbeResult:
    """Fit a linear classifier on the train side only; report top-1/top-5 on the test side.

    ``batches`` replaces the shuffled batches of ``train_features`` (e.g. features of views
    redrawn every epoch); the train features then serve for the statistics and train top-1.
    """
    device = torch.device(device)
    if num_classes is None:
        num_classes = int(max(np.max(train_label), np.max(test_label))) + 1
    stats = feature_stats(train_features)

    def evaluate(probe: nn.Module) -> tuple[float, float]:
        return score(predict_ranking(probe, test_features, top=5, device=device), test_label)

    probe, final_loss, evaluations = _fit(train_features, train_label, num_classes, config,
                                          device=device, evaluate=evaluate, stats=stats,
                                          batches=batches, progress=progress)
    return probe_result(probe, config, final_loss, evaluations,
                        train=(train_features, train_label), test=(test_features, test_label),
                        stats=stats, recipe=recipe, device=device)


def probe_result(probe: nn.Module, config: LinearProbeConfig, final_loss: float,
                 evaluations: tuple[Evaluation, ...], *, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], stats: FeatureStats,
                 recipe: str | None, device: torch.device) -> LinearProbeResult:
    """The result of a trained probe scored on (un-augmented) train and test features."""
    test_ranking = predict_ranking(probe, test[0], top=5, device=device)
    top1, top5 = score(test_ranking, test[1])
    train_top1, _ = score(predict_ranking(probe, train[0], top=1, device=device), train[1])
    return LinearProbeResult(
        top1=top1, top5=top5, train_top1=train_top1, n_train=len(train[1]), n_test=len(test[1]),
        config=config, final_loss=final_loss, evaluations=evaluations,
        feature_check=stats.summary(), recipe=recipe,
        predictions=test_ranking[:, 0].numpy())


def score(ranking: Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 and top-5 (fractions) of a (N, k) class ranking against the true labels."""
    truth = torch.as_tensor(np.asarray(labels), dtype=torch.int64).unsqueeze(1)
    hits = ranking == truth
    return float(hits[:, 0].float().mean()), float(hits[:, :5].any(dim=1).float().mean())


@torch.no_grad()
def predict_ranking(
    classifier: nn.Module,
    features: np.ndarray,
    *,
    top: int,
    device: str | torch.device = "cpu",
    chunk: int = 8192,
) -> torch.Tensor:
    """(N, top) int64 classes ordered by logit, best first."""
    out = []
    for start in range(0, len(features), chunk):
        x = torch.as_tensor(np.asarray(features[start : start + chunk]), dtype=torch.float32)
        logits = classifier(x.to(device))
        out.append(torch.topk(logits, min(top, logits.shape[1]), dim=1).indices.cpu())
    return torch.cat(out)
