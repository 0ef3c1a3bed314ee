"""I²MD: CMD plus intra-modal mutual distillation on a GCN-Transformer (I²MD Sections 3.3-3.4).

Per modality the instance-level branch (IDB) is CMD's MoCo branch; its queue stores (key, hidden)
pairs. The cluster-level branch (CDB) shares every weight with the IDB and adds the encoder's
cross-attention blocks, which read the hidden embeddings of the K_d queue entries nearest the
IDB's query (for z*_q) or key (for z*_k): Dynamic Neighbours Aggregation. Per modality

    L_intra = L_SCL (Eq. 1) + L*_SCL (Eq. 7, against a cluster-level queue of z*_k)
              + L_IMD (Eq. 8, CMD's mutual distillation between the IDB and the CDB)      (Eq. 9)
    L_final = sum_m L_intra^m + lambda_1 * L_CMD (Eq. 5 between the IDB embeddings)      (Eq. 10)

Switches for ablations: ``imd: false`` drops the whole cluster branch (CMD on the
GCN-Transformer), ``imd_distill: false`` keeps DNA and L*_SCL but drops Eq. 8, ``cmd: false``
drops L_CMD. Embeddings for evaluation come from the instance branch (no neighbours at test time).

Both views are encoded once by the GCN part; its tokens feed the Transformer twice (without and
with neighbours), which is the weight-sharing branch without a second GCN pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.gcn_transformer import GCNTransformer
from skelkit.train.fidelity import SwitchTable
from skelkit.train.losses.contrastive import info_nce
from skelkit.train.losses.distillation import mutual_distillation
from skelkit.train.methods.base import Encode, MethodConfig, MoCoOutputs
from skelkit.train.methods.cmd import CMD, EVAL_VIEW, CMDConfig, cross_modal_distillation_terms
from skelkit.train.moco import FeatureQueue, MoCoBranch
from skelkit.train.neighbours import retrieve_hidden

ENCODER_NAME = "gcn_transformer"


I2MD_SWITCHES = SwitchTable("i2md", EVAL_VIEW)
"""I²MD has no public code: it stays ``paper``; what it shares with CMD's code (the downstream
view) follows the chosen fidelity. CMD's loss terms have no reference/paper difference."""


@dataclasses.dataclass
class I2MDConfig(CMDConfig):
    SWITCHES: ClassVar[SwitchTable | None] = I2MD_SWITCHES
    encoder: str = ENCODER_NAME
    encoder_args: dict[str, Any] = dataclasses.field(default_factory=lambda: {
        "gcn_widths": [64, 64, 64], "dim": 768, "layers": 6, "heads": 12, "ffn_dim": 3072,
        "dropout": 0.0})
    cmd_weight: float = 0.5
    """lambda_1 of Eq. 10."""
    neighbours: int = 64
    """K_d: queue entries aggregated by the cluster-level branch."""
    imd: bool = True
    """The cluster-level branch: DNA, L*_SCL (Eq. 7) and, with ``imd_distill``, Eq. 8."""
    imd_distill: bool = True
    cmd: bool = True
    """lambda_1 * L_CMD (Eq. 5) between the modalities' instance branches."""

    def validate(self) -> None:
        if self.encoder != ENCODER_NAME:
            raise ValueError(f"encoder: I²MD needs {ENCODER_NAME!r} (its cross-attention "
                             f"aggregates the neighbours), got {self.encoder!r}")
        # CMD's checks, except the encoder registry look-up: this method builds its encoder.
        CMDConfig.validate(dataclasses.replace(self, encoder="bigru"))
        if not 0 < self.neighbours <= self.queue_size:
            raise ValueError(f"neighbours: need 0 < K_d <= queue_size ({self.queue_size}), "
                             f"got {self.neighbours}")
        if self.cmd_weight < 0:
            raise ValueError(f"cmd_weight: must be >= 0, got {self.cmd_weight}")


@dataclass
class I2MDOutputs(MoCoOutputs):
    """The MoCo step's embeddings plus, per modality with the cluster-level branch, the
    cluster-level query z*_q and key z*_k and the cluster bank before this step's enqueue."""

    z_q_star: dict[str, Tensor] = field(default_factory=dict)
    z_k_star: dict[str, Tensor] = field(default_factory=dict)
    cluster_bank: dict[str, Tensor] = field(default_factory=dict)


class I2MD(CMD[I2MDConfig]):
    name: ClassVar[str] = "i2md"
    Config: ClassVar[type[MethodConfig]] = I2MDConfig
    input_kind: ClassVar[str] = "sequence"
    within_log: ClassVar[str] = "intra"  # sum of the per-modality L_intra (Eq. 9)

    def __init__(self, cfg: I2MDConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.cluster_queues = nn.ModuleDict(
            {m: FeatureQueue(cfg.queue_size, cfg.feature_dim) for m in self.modalities}
            if cfg.imd else {})

    def _make_branch(self, encoder: str, encoder_args: dict[str, Any], feature_dim: int,
                     queue_size: int, momentum: float, mlp: bool) -> MoCoBranch:
        # Without the cluster branch the cross-attention blocks would sit unused (and trip DDP).
        args = {"cross_attention": self.cfg.imd, **encoder_args}
        try:
            enc = GCNTransformer(3, self.layout, self.num_bodies, **args)
        except TypeError as exc:
            raise ValueError(f"encoder_args: {exc}") from None
        # The queue keeps the key encoder's hidden embedding h_k beside each key (DNA's values).
        return MoCoBranch(enc, feature_dim, queue_size, momentum, mlp, value_dim=enc.out_dim)

    # --- the three stages of a training step ---------------------------------------------------

    def encode(self, q: Tensor, k: Tensor, gamma: Tensor, epoch: int = 0) -> I2MDOutputs:
        """Both branches of every modality on the two views; momentum update of the key side
        (the shared MoCo step, ``MoCoMethod.moco_encode``). Queues are read (neighbours, banks)
        but not written."""
        cfg = self.cfg
        tokens: dict[tuple[str, str], Tensor] = {}

        def encode(side: str) -> Encode:
            def run(m: str, branch: MoCoBranch, x: Tensor) -> tuple[Tensor, Tensor]:
                # The GCN tokens are kept: the cluster branch reuses them with neighbours.
                encoder: GCNTransformer = getattr(branch, f"encoder_{side}")
                tokens[m, side] = encoder.tokens(x)
                hidden = encoder.transform(tokens[m, side])
                return F.normalize(getattr(branch, f"head_{side}")(hidden), dim=1), hidden
            return run

        moco = self.moco_encode(q, k, gamma, encode_query=encode("q"), encode_key=encode("k"))
        out = I2MDOutputs(**vars(moco))
        if not cfg.imd:
            return out
        for m in self.modalities:  # Dynamic Neighbours Aggregation (Section 3.3.1)
            branch = self.branch(m)
            encoder_q = cast(GCNTransformer, branch.encoder_q)
            encoder_k = cast(GCNTransformer, branch.encoder_k)
            context_q = retrieve_hidden(out.z_q[m], branch.queue, cfg.neighbours)
            out.z_q_star[m] = F.normalize(
                branch.head_q(encoder_q.transform(tokens[m, "q"], context_q)), dim=1)
            with torch.no_grad():
                context_k = retrieve_hidden(out.z_k[m], branch.queue, cfg.neighbours)
                out.z_k_star[m] = F.normalize(
                    branch.head_k(encoder_k.transform(tokens[m, "k"], context_k)), dim=1)
                out.cluster_bank[m] = self.cluster_queues[m].keys.clone()
        return out

    def loss_terms(self, out: MoCoOutputs) -> dict[str, Tensor]:
        """Every named term of Eq. 9-10 (``scl/m``, ``scl*/m``, ``imd/m``, ``md/a->b``)."""
        cfg = self.cfg
        terms: dict[str, Tensor] = {}
        for m in self.modalities:
            terms[f"scl/{m}"] = info_nce(out.z_q[m], out.z_k[m], out.bank[m],  # I²MD Eq. 1
                                         cfg.temperature)
            if isinstance(out, I2MDOutputs) and m in out.z_q_star:
                z_q_star, z_k_star = out.z_q_star[m], out.z_k_star[m]
                # I²MD Eq. 7: cluster-level InfoNCE against the cluster-level queue.
                terms[f"scl*/{m}"] = info_nce(z_q_star, z_k_star, out.cluster_bank[m],
                                              cfg.temperature)
                if cfg.imd_distill:
                    # I²MD Eq. 8: KL(p(z*_k) || p(z_q)) + KL(p(z_k) || p(z*_q)), CMD's term with
                    # the IDB and the CDB as the two entities (index-aligned queues).
                    terms[f"imd/{m}"] = mutual_distillation(
                        out.z_k[m], out.z_q[m], out.bank[m], z_k_star, z_q_star,
                        out.cluster_bank[m], cfg.topk, cfg.teacher_temperature,
                        cfg.student_temperature)
        if cfg.cmd:  # I²MD Eq. 4-5 between the modalities' instance branches
            terms.update(cross_modal_distillation_terms(out.z_k, out.z_q, out.bank, cfg))
        return terms

    def enqueue(self, encoded: MoCoOutputs) -> None:
        self.moco_enqueue(encoded)
        if isinstance(encoded, I2MDOutputs):
            for m, z_k_star in encoded.z_k_star.items():
                self.cluster_queues[m].enqueue(z_k_star)
