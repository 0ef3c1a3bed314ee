"""The authors' cross-view loss (``cross_view_reference``) equals their code on given embeddings
(golden ``crossview_loss.npz``): logits and masks of the 30 directed pairs, per-sample terms,
the gradient of each term into BOTH views (no stop-gradient on the mining view), per-view
losses, the total and its gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelkit.train.importers.ikem import MODALITY_LETTER, MODALITY_SUFFIX
from skelkit.train.losses.crossview import cross_view_mining, cross_view_reference
from tests.golden.ikem_helpers import (
    REFERENCE_NAME,
    SIX,
    assert_exact,
    assert_forward,
    assert_grad,
    load_golden,
    print_max_diffs,
)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("crossview_loss")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print_max_diffs("crossview_loss.npz", "crossview")


def _inputs(golden):
    """Leaf queries (before the reference's L2 normalisation), unit keys, banks (K, D)."""
    raw = [torch.from_numpy(golden[f"input/q/{REFERENCE_NAME[m]}"]).requires_grad_() for m in SIX]
    keys = [F.normalize(torch.from_numpy(golden[f"input/k/{REFERENCE_NAME[m]}"]), dim=1)
            for m in SIX]
    banks = [torch.from_numpy(golden[f"input/queue{MODALITY_SUFFIX[m]}"]).t() for m in SIX]
    return raw, keys, banks


def _run(golden):
    raw, keys, banks = _inputs(golden)
    queries = [F.normalize(q, dim=1) for q in raw]
    losses, masks = cross_view_reference(queries, keys, banks, int(golden["config/topk"]),
                                         float(golden["config/T"]),
                                         context=bool(golden["config/context"]))
    return raw, losses, masks


def test_logits_masks_terms_and_losses(golden):
    _, losses, masks = _run(golden)
    for u, mu in enumerate(SIX):
        lu = MODALITY_LETTER[mu]
        assert_exact(f"crossview mask: {lu}", masks[u], golden[f"expect/mask/{lu}"])
        for i, mv in enumerate(m for m in SIX if m != mu):
            pair = lu + MODALITY_LETTER[mv]
            assert_forward(f"crossview logits: {pair}", losses[u].logits[i],
                           golden[f"expect/logits/{pair}"])
            assert_forward(f"crossview term: {pair}", losses[u].terms[i],
                           golden[f"expect/term/{pair}"])
        assert_forward(f"crossview view_loss: {mu}", losses[u].loss,
                       golden[f"expect/view_loss/{REFERENCE_NAME[mu]}"])
    total = sum(loss.loss for loss in losses)
    assert_forward("crossview total", total, golden["expect/total"])


def test_total_gradient_into_every_view(golden):
    raw, losses, _ = _run(golden)
    sum(loss.loss for loss in losses).backward()
    for m, q in zip(SIX, raw, strict=True):
        assert_grad("crossview grad", m, q.grad, golden[f"expect/grad/{REFERENCE_NAME[m]}"])


@pytest.mark.parametrize("u", range(6))
def test_each_term_trains_both_views(golden, u):
    mu = SIX[u]
    for i, mv in enumerate(m for m in SIX if m != mu):
        raw, losses, _ = _run(golden)
        losses[u].terms[i].mean().backward()
        pair = MODALITY_LETTER[mu] + MODALITY_LETTER[mv]
        v = SIX.index(mv)
        for side, index in ((mu, u), (mv, v)):
            want = golden[f"expect/term_grad/{pair}/{REFERENCE_NAME[side]}"]
            assert_grad("crossview term_grad", f"{pair}/{side}", raw[index].grad, want)
        # Only views u and v are in a term.
        assert all(raw[w].grad is None for w in range(6) if w not in (u, v))
        assert raw[v].grad.abs().max() > 1e-3  # the mining view does learn from it


def test_paper_form_is_the_printed_equation_not_the_codes(golden):
    """Eq. 6 as printed gives 2.494 for mean(term_jm) where the code gives 9.755 (README)."""
    raw, keys, banks = _inputs(golden)
    queries = [F.normalize(q, dim=1) for q in raw]
    paper = cross_view_mining(queries[0], keys[0], banks[0], queries[1], banks[1], k=1,
                              temperature=float(golden["config/T"]))
    assert paper.item() == pytest.approx(2.494, abs=1e-3)
    assert float(golden["expect/term/jm"].mean()) == pytest.approx(9.755, abs=1e-3)
