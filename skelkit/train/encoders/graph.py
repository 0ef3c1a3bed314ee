"""Skeleton graphs for GCN encoders, built from a layout's edges (never a hard-coded joint table,
except the one NTU-25 fact the authors' ST-GCN graph has: see ``reference_edges``).

ST-GCN's spatial configuration partitioning (Yan et al., 2018): the 1-hop neighbourhood of each
joint is split by distance to the graph centre into root (same distance, including the joint
itself), centripetal (closer) and centrifugal (farther) subsets, each column-normalised.

Two constructions (the ``graph`` argument of the GCN encoders):

- ``layout``: the layout's edges, true hop distances, [root, closer, farther] as the paper reads.
- ``reference``: what ``net/utils/graph.py`` of the CrosSCLR/IKEM code (the golden ``stgcn.npz``)
  actually builds: hop distances computed only up to max_hop = 1 (inf beyond), so every link
  between two joints that are not next to the centre compares inf == inf; partitions
  [self, source farther-or-equal, source closer]. On NTU-25 its edges are the reference's hand
  chains (``reference_edges``); on any other layout the same construction runs on the layout's
  own edges and centre (the hand chains are an NTU-25 fact, the cut-off is the code's rule).
"""

from __future__ import annotations

import numpy as np

from skelkit.store.layout import NTU25, Layout

GRAPHS = ("layout", "reference")

# The 'ntu-rgb+d' edges of the reference ST-GCN graph (1-based, net/utils/graph.py of
# desehuileng0o0/IKEM, lines 3-121; golden README, stgcn.npz): the store's tree, except that the
# hands chain 22 -> 23 -> 8 and 24 -> 25 -> 12 (the store: 22 -> 8, 23 -> 8, 24 -> 12, 25 -> 12).
_REFERENCE_NTU_EDGES = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
)
REFERENCE_MAX_HOP = 1


def hop_distance(num_joints: int, edges: tuple[tuple[int, int], ...],
                 max_hop: int | None = None) -> np.ndarray:
    """(V, V) shortest-path lengths in hops over the undirected edges; inf where unreachable or,
    with ``max_hop``, farther than ``max_hop`` hops."""
    dist = np.full((num_joints, num_joints), np.inf)
    np.fill_diagonal(dist, 0.0)
    neighbours: list[list[int]] = [[] for _ in range(num_joints)]
    for a, b in edges:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError(f"edge ({a}, {b}) out of range for {num_joints} joints")
        neighbours[a].append(b)
        neighbours[b].append(a)
    limit = num_joints if max_hop is None else max_hop
    for source in range(num_joints):  # breadth-first search from every joint
        frontier, d = [source], 0
        while frontier and d < limit:
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


def is_ntu25(layout: Layout) -> bool:
    """The NTU RGB+D 25-joint layout (by its joint names, whatever the layout is called)."""
    return layout.joint_names == NTU25.joint_names


def reference_edges(layout: Layout) -> tuple[tuple[int, int], ...]:
    """The reference graph's edges (0-based): its NTU-25 table on NTU-25, else the layout's."""
    if is_ntu25(layout):
        return tuple((a - 1, b - 1) for a, b in _REFERENCE_NTU_EDGES)
    return layout.edges


def reference_partitions(layout: Layout) -> np.ndarray:
    """(3, V, V) float32 adjacency as the reference's Graph(strategy='spatial') builds it.

    A[0] holds the self links; a link from source j to target i goes to A[1] when
    dist(j, centre) == dist(i, centre) or dist(j) > dist(i), else to A[2], with the distances cut
    at max_hop = 1. On NTU-25 A[2] holds exactly 8 entries (21->2, 21->3, 21->5, 21->9, 2->1,
    3->4, 5->6, 9->10, 1-based): only joints next to the centre have a finite distance to it.
    """
    v = layout.num_joints
    center = graph_center(layout)
    dist = hop_distance(v, reference_edges(layout), max_hop=REFERENCE_MAX_HOP)
    normalised = _column_normalise((dist <= REFERENCE_MAX_HOP).astype(np.float64))
    to_center = dist[:, center]
    self_links, inward, outward = (np.zeros((v, v)) for _ in range(3))
    for i in range(v):
        for j in range(v):
            if dist[j, i] == 0:
                self_links[j, i] = normalised[j, i]
            elif dist[j, i] == 1:
                if to_center[j] == to_center[i] or to_center[j] > to_center[i]:
                    inward[j, i] = normalised[j, i]
                else:
                    outward[j, i] = normalised[j, i]
    return np.stack([self_links, inward, outward]).astype(np.float32)


def build_adjacency(layout: Layout, graph: str = "layout") -> np.ndarray:
    """The (3, V, V) partitions of ``graph`` (one of ``GRAPHS``) on ``layout``."""
    if graph == "layout":
        return spatial_partitions(layout)
    if graph == "reference":
        return reference_partitions(layout)
    raise ValueError(f"graph: one of {', '.join(GRAPHS)}, got {graph!r}")
