"""K-nearest-neighbour classification of frozen embeddings on cosine similarity (docs/design.md §5.10).

The similarity matrix is never built whole: test rows are processed in chunks, and within a test
chunk the train rows are scanned in chunks while a running top-k (and a running best similarity
per class) is kept, so memory is O(test_chunk x (train_chunk + k + classes)) for any N.

Class ranking (for top-1 and top-5): classes are ordered by their vote among the k neighbours
(a count, or with ``weighted`` the sum of exp(sim / T) as in InstDisc / MoCo's weighted KNN), ties
and classes without votes by the similarity of their nearest train sample. With k = 1 this is
exactly "the class of the nearest neighbour" for top-1 (I²MD §4.3.2) and ranks the remaining
classes by their nearest member for top-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class KnnResult:
    top1: float
    top5: float
    k: int
    weighted: bool
    temperature: float
    n_train: int
    n_test: int
    predictions: np.ndarray
    """(n_test,) int64: the top-1 class of each test sample."""

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "k": self.k,
            "weighted": self.weighted,
            "temperature": self.temperature,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def knn_class_ranking(
    train_embedding: np.ndarray | torch.Tensor,
    train_label: np.ndarray | torch.Tensor,
    test_embedding: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    k: int = 1,
    weighted: bool = False,
    temperature: float = 0.1,
    top: int = 5,
    test_chunk: int = 1024,
    train_chunk: int = 16384,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Return (n_test, min(top, num_classes)) int64 class indices, best first."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = torch.device(device)
    train = _unit_rows(torch.as_tensor(train_embedding), device)
    labels = torch.as_tensor(train_label, dtype=torch.int64).to(device)
    test = torch.as_tensor(test_embedding)
    k = min(k, train.shape[0])
    top = min(top, num_classes)
    rankings = []
    for start in range(0, test.shape[0], test_chunk):
        queries = _unit_rows(test[start : start + test_chunk], device)
        top_sim, top_label, nearest_per_class = _scan_train(
            queries, train, labels, k=k, num_classes=num_classes, train_chunk=train_chunk
        )
        if weighted:
            votes_per_neighbour = torch.exp(top_sim / temperature)
        else:
            votes_per_neighbour = torch.ones_like(top_sim)
        votes = torch.zeros(queries.shape[0], num_classes, dtype=top_sim.dtype, device=device)
        votes.scatter_add_(1, top_label, votes_per_neighbour)
        rankings.append(_rank_lexicographic(votes, nearest_per_class)[:, :top].cpu())
    return torch.cat(rankings)


def knn_evaluate(
    train_embedding: np.ndarray,
    train_label: np.ndarray,
    test_embedding: np.ndarray,
    test_label: np.ndarray,
    *,
    k: int = 1,
    weighted: bool = False,
    temperature: float = 0.1,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    test_chunk: int = 1024,
    train_chunk: int = 16384,
) -> KnnResult:
    """Top-1 / top-5 accuracy (fractions in [0, 1]) of KNN on cosine similarity."""
    if num_classes is None:
        num_classes = int(max(np.max(train_label), np.max(test_label))) + 1
    ranking = knn_class_ranking(
        train_embedding,
        train_label,
        test_embedding,
        num_classes=num_classes,
        k=k,
        weighted=weighted,
        temperature=temperature,
        device=device,
        test_chunk=test_chunk,
        train_chunk=train_chunk,
    )
    truth = torch.as_tensor(np.asarray(test_label), dtype=torch.int64).unsqueeze(1)
    hits = ranking == truth
    return KnnResult(
        top1=float(hits[:, 0].float().mean()),
        top5=float(hits[:, :5].any(dim=1).float().mean()),
        k=min(k, len(train_label)),
        weighted=weighted,
        temperature=temperature,
        n_train=len(train_label),
        n_test=len(test_label),
        predictions=ranking[:, 0].numpy(),
    )


def _unit_rows(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device=device, dtype=torch.float32)
    return torch.nn.functional.normalize(x, dim=1)


def _scan_train(
    queries: torch.Tensor,
    train: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int,
    num_classes: int,
    train_chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running top-k over train chunks; returns (sims, labels) of the k nearest and per-class max."""
    n_query = queries.shape[0]
    best_sim = torch.full((n_query, 0), -float("inf"), device=queries.device)
    best_label = torch.zeros((n_query, 0), dtype=torch.int64, device=queries.device)
    # Cosine similarity lies in [-1, 1]; -2 marks "no train sample of this class seen yet".
    nearest_per_class = torch.full((n_query, num_classes), -2.0, device=queries.device)
    for start in range(0, train.shape[0], train_chunk):
        chunk_labels = labels[start : start + train_chunk]
        sim = queries @ train[start : start + train_chunk].T
        nearest_per_class.scatter_reduce_(
            1, chunk_labels.expand(n_query, -1), sim, reduce="amax", include_self=True
        )
        chunk_sim, chunk_index = torch.topk(sim, min(k, sim.shape[1]), dim=1)
        candidate_sim = torch.cat([best_sim, chunk_sim], dim=1)
        candidate_label = torch.cat([best_label, chunk_labels[chunk_index]], dim=1)
        # Earlier chunks come first among the candidates and the sort is stable, so a tie
        # between chunks goes to the lower train index.
        best_sim, order = torch.sort(candidate_sim, dim=1, descending=True, stable=True)
        best_sim, order = best_sim[:, :k], order[:, :k]
        best_label = torch.gather(candidate_label, 1, order)
    return best_sim, best_label, nearest_per_class


def _rank_lexicographic(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Order classes by ``primary`` descending, ties by ``secondary`` descending."""
    by_secondary = torch.argsort(secondary, dim=1, descending=True, stable=True)
    primary_sorted = torch.gather(primary, 1, by_secondary)
    by_primary = torch.argsort(primary_sorted, dim=1, descending=True, stable=True)
    return torch.gather(by_secondary, 1, by_primary)
