"""ST-GCN with ``graph: reference`` equals the authors' encoder (golden ``stgcn.npz``): graph,
features, logits, every gradient and the BatchNorm statistics, in eval mode, in train mode and
in train mode with the reference's dropout masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skelkit.store.layout import KINECT20, NTU25
from skelkit.train.encoders.graph import (
    build_adjacency,
    hop_distance,
    reference_edges,
    reference_partitions,
)
from skelkit.train.encoders.stgcn import STGCN
from skelkit.train.importers.ikem import encoder_path
from tests.golden.ikem_helpers import (
    assert_exact,
    assert_forward,
    assert_grad,
    group,
    load_golden,
    no_grad_names,
    print_max_diffs,
    replay_dropout,
    tensors,
)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("stgcn")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print_max_diffs("stgcn.npz", ("stgcn", "graph"))


def _model(golden: dict[str, np.ndarray], dropout: float, graph: str = "reference"
           ) -> tuple[STGCN, nn.Linear]:
    """Our encoder + the reference's fc head, loaded with the golden weights."""
    hidden, width = int(golden["config/hidden_dim"]), int(golden["config/hidden_channels"])
    encoder = STGCN(3, NTU25, 2, channel_multiplier=width / 64, hidden_dim=hidden,
                    dropout=dropout, graph=graph)
    fc = nn.Linear(hidden, int(golden["config/num_class"]))
    weights = tensors(group(golden, "weights/"))
    fc.load_state_dict({k[3:]: v for k, v in weights.items() if k.startswith("fc.")})
    state = {encoder_path(k): v for k, v in weights.items() if not k.startswith("fc.")}
    if graph != "reference":
        state["adjacency"] = encoder.adjacency
    encoder.load_state_dict(state)
    return encoder, fc


def _ours(name: str) -> str:
    """A golden (reference) parameter name -> ours, fc kept as the test's head."""
    return name if name.startswith("fc.") else encoder_path(name)


def test_graph_is_the_reference_graph(golden):
    a = reference_partitions(NTU25)
    assert_exact("graph A", a, golden["expect/graph/A"])
    assert_exact("graph A", a, golden["weights/A"])
    assert_exact("graph hop_dis", hop_distance(25, reference_edges(NTU25), max_hop=1),
                 golden["expect/graph/hop_dis"].astype(np.float64))
    links = sorted(map(tuple, golden["expect/graph/edges"][25:].tolist()))
    assert sorted(reference_edges(NTU25)) == links
    assert int(golden["config/graph/center"]) == 20
    # The facts the README states: A[2] holds 8 entries, A[1] 40, A[0] the 25 self links.
    assert [(a[k] > 0).sum() for k in range(3)] == [25, 40, 8]
    # The layout construction differs: it would fail the comparisons below.
    assert not np.allclose(build_adjacency(NTU25, "layout"), a, atol=0.1)


def test_reference_graph_on_another_layout_uses_its_edges_with_the_cut():
    """Rule: the hand chains are an NTU-25 fact; elsewhere the layout's own edges and centre
    go through the reference construction (distances cut at 1 hop)."""
    a = reference_partitions(KINECT20)
    assert a.shape == (3, 20, 20)
    assert np.allclose(a.sum(axis=(0, 1)), 1.0)
    assert (a[0] > 0).sum() == 20
    links = {(j, i) for k in (1, 2) for j, i in zip(*np.nonzero(a[k]), strict=True)}
    assert links == {(a_, b_) for a_, b_ in KINECT20.edges} | {(b_, a_) for a_, b_ in
                                                               KINECT20.edges}
    # Only links touching the centre's neighbourhood have finite distances: the rest is
    # inf == inf and lands in A[1], so A[2] holds just the outward links of the centre's star.
    centre = 1  # shoulder_center, the kinect20 root
    star = {v for edge in KINECT20.edges if centre in edge for v in edge}
    outward = {(int(j), int(i)) for j, i in zip(*np.nonzero(a[2]), strict=True)}
    assert outward and all(j in star for j, _ in outward)


@pytest.mark.parametrize("case", ["eval", "train", "train_dropout"])
def test_features_logits_gradients_and_batchnorm(golden, case):
    torch.manual_seed(0)
    encoder, fc = _model(golden, dropout=0.5 if case == "train_dropout" else 0.0)
    if case == "train_dropout":
        masks = tensors(group(golden, "input/train_dropout/dropout_mask/"))
        replay_dropout(encoder, {encoder_path(k): v for k, v in masks.items()})
    x = torch.from_numpy(golden["input/x"])
    encoder.train(case != "eval")
    fc.train(case != "eval")
    feature = encoder(x)
    logits = fc(feature)
    expect = group(golden, f"expect/{case}/")
    assert_forward(f"stgcn {case} feature", feature, expect["feature"])
    assert_forward(f"stgcn {case} logits", logits, expect["logits"])
    if case == "eval":
        return
    (logits * torch.from_numpy(golden["input/grad_weight"])).sum().backward()
    params = {**{_ours(f"fc.{n}"): p for n, p in fc.named_parameters()},
              **dict(encoder.named_parameters())}
    grads = {k[len("grad/"):]: v for k, v in expect.items() if k.startswith("grad/")}
    assert {_ours(k) for k in grads} == set(params)
    for name, want in grads.items():
        assert_grad(f"stgcn {case} grad", name, params[_ours(name)].grad, want)
    assert not no_grad_names(encoder.named_parameters())
    state = encoder.state_dict()
    after = {k[len("after/"):]: v for k, v in expect.items() if k.startswith("after/")}
    for name, want in after.items():
        if name.endswith("num_batches_tracked"):
            assert_exact(f"stgcn {case} after", state[_ours(name)], want)
        else:
            assert_forward(f"stgcn {case} after: {name}", state[_ours(name)], want)


def test_layout_graph_or_missing_dropout_would_fail(golden):
    """The comparisons above can fail: the paper-mode graph and dropout off change the numbers
    far beyond the tolerance."""
    x = torch.from_numpy(golden["input/x"])
    layout_encoder, fc = _model(golden, dropout=0.0, graph="layout")
    layout_encoder.eval()
    diff = (fc(layout_encoder(x)) - torch.from_numpy(golden["expect/eval/logits"])).abs().max()
    assert diff > 1e-3
    encoder, fc = _model(golden, dropout=0.0)
    encoder.train()
    diff = (fc(encoder(x)) - torch.from_numpy(golden["expect/train_dropout/logits"])).abs().max()
    assert diff > 1e-3
