"""Skeleton graphs for GCN encoders, built from a layout's edges (never a hard-coded joint table).

ST-GCN's spatial configuration partitioning (Yan et al., 2018): the 1-hop neighbourhood of each
joint is split by distance to the graph centre into root (same distance, including the joint
itself), centripetal (closer) and centrifugal (farther) subsets, each column-normalised.
"""

from __future__ import annotations

import numpy as np

from skelkit.store.layout import Layout


def hop_distance(num_joints: int, edges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(V, V) shortest-path lengths in hops over the undirected edges; inf where unreachable."""
    dist = np.full((num_joints, num_joints), np.inf)
    np.fill_diagonal(dist, 0.0)
    neighbours: list[list[int]] = [[] for _ in range(num_joints)]
    for a, b in edges:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError(f"edge ({a}, {b}) out of range for {num_joints} joints")
        neighbours[a].append(b)
        neighbours[b].append(a)
    for source in range(num_joints):  # breadth-first search from every joint
        frontier, d = [source], 0
        while frontier:
            d += 1
            nxt = []
            for v in frontier:
                for w in neighbours[v]:
                    if dist[source, w] == np.inf:
                        dist[source, w] = d
                        nxt.append(w)
            frontier = nxt
    return dist


def graph_center(layout: Layout) -> int:
    """The kinematic root (the one joint that is its own parent; spine_shoulder for NTU, as
    ST-GCN's centre), else the joint of smallest eccentricity (ties: lowest index)."""
    dist = hop_distance(layout.num_joints, layout.edges)
    if np.isinf(dist).any():
        raise ValueError(f"layout {layout.name}: the skeleton graph is not connected")
    roots = [v for v, p in enumerate(layout.parents) if v == p]
    if len(roots) == 1:
        return roots[0]
    return int(np.argmin(dist.max(axis=1)))


def _column_normalise(a: np.ndarray) -> np.ndarray:
    degree = a.sum(axis=0)
    inv = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
    return a * inv[None, :]


def spatial_partitions(layout: Layout, center: int | None = None) -> np.ndarray:
    """(3, V, V) float32 adjacency: [root, centripetal, centrifugal]; A[k, j, i] weights the
    message from joint j to joint i (columns sum to 1 over the three subsets)."""
    v = layout.num_joints
    center = graph_center(layout) if center is None else center
    dist = hop_distance(v, layout.edges)
    normalised = _column_normalise((dist <= 1).astype(np.float64))
    to_center = dist[:, center]
    root, closer, farther = (np.zeros((v, v)) for _ in range(3))
    for i in range(v):
        for j in range(v):
            if dist[j, i] > 1:
                continue
            if to_center[j] == to_center[i]:
                root[j, i] = normalised[j, i]
            elif to_center[j] < to_center[i]:
                closer[j, i] = normalised[j, i]
            else:
                farther[j, i] = normalised[j, i]
    return np.stack([root, closer, farther]).astype(np.float32)
