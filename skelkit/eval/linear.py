"""Linear probe on frozen features (DESIGN.md §5; I²MD §4.3.1).

A single fully connected layer trained with cross-entropy by SGD (momentum 0.9, no weight decay
unless asked) with a step schedule (x0.1 at each milestone), fitted on the train group only and
scored on the test group. All randomness (initialisation, shuffling) comes from one seeded
generator, so a seed fixes the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = 80
    lr: float = 0.1
    milestones: tuple[int, ...] = (50, 70)
    gamma: float = 0.1
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive epochs, got {self.milestones}")


@dataclass(frozen=True)
class LinearProbeResult:
    top1: float
    top5: float
    train_top1: float
    n_train: int
    n_test: int
    config: LinearProbeConfig
    final_loss: float
    predictions: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float | int | list[int]]:
        return {
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
        }


def parse_milestones(text: str) -> tuple[int, ...]:
    """'50,70' -> (50, 70); an empty string means no learning-rate drop."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"milestones must be comma-separated integers, got {text!r}") from None


def fit_linear_classifier(
    train_features: np.ndarray,
    train_label: np.ndarray,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    *,
    device: str | torch.device = "cpu",
) -> tuple[nn.Linear, float]:
    """Train the probe on the train group; return it and the mean loss of its last epoch."""
    device = torch.device(device)
    x_train = torch.as_tensor(np.asarray(train_features), dtype=torch.float32).to(device)
    y_train = torch.as_tensor(np.asarray(train_label), dtype=torch.int64).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    classifier = _seeded_linear(x_train.shape[1], num_classes, generator).to(device)
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.milestones), gamma=config.gamma
    )
    loss_fn = nn.CrossEntropyLoss()
    epoch_loss = float("nan")
    for _ in range(config.epochs):
        order = torch.randperm(x_train.shape[0], generator=generator).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, x_train.shape[0], config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = loss_fn(classifier(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * batch.numel()
        epoch_loss = float(total) / x_train.shape[0]
        schedule.step()
    return classifier, epoch_loss


def train_linear_probe(
    train_features: np.ndarray,
    train_label: np.ndarray,
    test_features: np.ndarray,
    test_label: np.ndarray,
    config: LinearProbeConfig = LinearProbeConfig(),
    *,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> LinearProbeResult:
    """Fit a linear classifier on the train group only; report top-1/top-5 on the test group."""
    device = torch.device(device)
    if num_classes is None:
        num_classes = int(max(np.max(train_label), np.max(test_label))) + 1
    classifier, final_loss = fit_linear_classifier(
        train_features, train_label, num_classes, config, device=device
    )
    test_ranking = predict_ranking(classifier, test_features, top=5, device=device)
    truth = torch.as_tensor(np.asarray(test_label), dtype=torch.int64).unsqueeze(1)
    hits = test_ranking == truth
    train_ranking = predict_ranking(classifier, train_features, top=1, device=device)
    train_truth = torch.as_tensor(np.asarray(train_label), dtype=torch.int64)
    return LinearProbeResult(
        top1=float(hits[:, 0].float().mean()),
        top5=float(hits.any(dim=1).float().mean()),
        train_top1=float((train_ranking[:, 0] == train_truth).float().mean()),
        n_train=len(train_label),
        n_test=len(test_label),
        config=config,
        final_loss=final_loss,
        predictions=test_ranking[:, 0].numpy(),
    )


def _seeded_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    # Same uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as nn.Linear's default, but drawn from our
    # generator so the global RNG state (and other code touching it) cannot change the result.
    layer = nn.Linear(in_features, out_features)
    bound = 1.0 / np.sqrt(in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator))
        layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator))
    return layer


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


def milestones_text(milestones: Sequence[int]) -> str:
    return ",".join(str(m) for m in milestones)
