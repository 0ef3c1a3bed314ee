"""Torch twins of the modality derivations in ``skelkit/prep/kernels/modalities.py`` (docs/design.md §3.5).

Same maths as the numba kernels, batched over samples and on any device, so training modalities
can be derived from augmented joints on the fly. Tensors are (N, 3, T, V, M); ``gamma`` is the
per-sample time scale (N,) that divides every temporal difference (None: no scaling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from skelkit.store.layout import Layout, TorsoNormal
from skelkit.store.schema import MODALITIES as MODALITY_NAMES

_EPS = 1e-12  # the golden README's unit(x) = x / max(|x|, 1e-12)


def _unit(v: Tensor, dim: int = 1) -> Tensor:
    return v / v.norm(dim=dim, keepdim=True).clamp_min(_EPS)


def _cross(u: Tensor, w: Tensor) -> Tensor:
    """Cross product over dim 1 by plain products: a self-cross is exactly zero here, whereas
    torch.linalg.cross leaves float32 residue that unit() would blow up to a unit vector.
    Where no self-cross can occur (the torso normal) and where the authors' residue is part of
    what their encoder reads (the raw hinge axis), ``torch.linalg.cross`` is used instead: it
    is the reference's arithmetic, bit for bit (golden ikem_step encoder inputs)."""
    u0, u1, u2 = u.unbind(1)
    w0, w1, w2 = w.unbind(1)
    return torch.stack([u1 * w2 - u2 * w1, u2 * w0 - u0 * w2, u0 * w1 - u1 * w0], dim=1)


def _per_sample(gamma: Tensor | None, x: Tensor) -> Tensor | float:
    if gamma is None:
        return 1.0
    gamma = torch.as_tensor(gamma, dtype=x.dtype, device=x.device)
    if gamma.ndim != 1 or gamma.shape[0] != x.shape[0]:
        raise ValueError(f"gamma must have shape ({x.shape[0]},), got {tuple(gamma.shape)}")
    return gamma.view(-1, 1, 1, 1, 1)


def temporal_difference(x: Tensor, gamma: Tensor | None = None) -> Tensor:
    """d_t = (x_{t+1} - x_t) / gamma; zero in the last frame (no frame past it)."""
    if x.ndim != 5:
        raise ValueError(f"expected (N, C, T, V, M), got shape {tuple(x.shape)}")
    out = torch.zeros_like(x)
    out[:, :, :-1] = (x[:, :, 1:] - x[:, :, :-1]) / _per_sample(gamma, x)
    return out


def acceleration(x: Tensor, gamma: Tensor | None = None) -> Tensor:
    """a_t = (m_{t+1} - m_t) / gamma; zero in the last two frames, where m_{t+1} would be the
    zero-padded last motion frame (docs/design.md §3.5: zero where the formula runs past the end)."""
    out = temporal_difference(temporal_difference(x, gamma), gamma)
    out[:, :, -2:] = 0
    return out


def bones(x: Tensor, parents: Sequence[int], torso_normal: TorsoNormal | None = None) -> Tensor:
    """b_v = x_v - x_parent(v); the root's self-loop bone is zero unless replaced by the torso
    normal unit((b_a - b_c) x (b_b - b_c))."""
    _check(x)
    if len(parents) != x.shape[3]:
        raise ValueError(f"{len(parents)} parents for {x.shape[3]} joints")
    idx = torch.as_tensor(list(parents), device=x.device, dtype=torch.long)
    b = x - x.index_select(3, idx)
    if torso_normal is not None:
        tn = torso_normal
        u = b[:, :, :, tn.a] - b[:, :, :, tn.c]
        w = b[:, :, :, tn.b] - b[:, :, :, tn.c]
        b = b.clone()
        b[:, :, :, tn.joint] = _unit(torch.linalg.cross(u, w, dim=1))
    return b


def hinge_axis(b: Tensor, hinges: Sequence[tuple[int, int]], unit: bool = True) -> Tensor:
    """r_v = unit(b_v x b_w) for each hinge (v, w); the raw cross product with ``unit=False``
    (what IKEM's model feeds its rotation-axis encoder, net/crossclr_6views.py). A self-paired
    hinge (NTU joint 21) is exactly zero in the unit axis; the raw one keeps torch's rounding
    residue (|value| ~1e-8) as the reference does: its encoder amplifies it measurably (the
    train-mode BatchNorms of a freshly initialised ST-GCN work where var << eps)."""
    v_idx, w_idx = _hinge_indices(hinges, b.device)
    b_v, b_w = b.index_select(3, v_idx), b.index_select(3, w_idx)
    if not unit:
        return torch.linalg.cross(b_v, b_w, dim=1)
    return _unit(_cross(b_v, b_w))


def hinge_angle(b: Tensor, hinges: Sequence[tuple[int, int]]) -> Tensor:
    """theta = atan2(|u x u'|, u . u') of the unit bones of each hinge, (N, T, V, M)."""
    v_idx, w_idx = _hinge_indices(hinges, b.device)
    u = _unit(b.index_select(3, v_idx))
    u2 = _unit(b.index_select(3, w_idx))
    return torch.atan2(_cross(u, u2).norm(dim=1), (u * u2).sum(dim=1))


def angular_velocity(b: Tensor, hinges: Sequence[tuple[int, int]],
                     gamma: Tensor | None = None) -> Tensor:
    """w_t = r_t (theta_{t+1} - theta_t) / gamma; zero in the last frame."""
    theta = hinge_angle(b, hinges).unsqueeze(1)
    return hinge_axis(b, hinges) * temporal_difference(theta, gamma)


def derive(x: Tensor, modality: str, gamma: Tensor | None, layout: Layout,
           unit_axis: bool = True) -> Tensor:
    """One modality (N, 3, T, V, M) from joints (N, 3, T, V, M), the layout's bone tree.
    ``unit_axis=False`` gives the raw hinge axis b_v x b_w for ``axis`` (the store keeps the unit
    axis; angular velocity always uses the unit one)."""
    if x.shape[3] != layout.num_joints:
        raise ValueError(f"joints have V={x.shape[3]}, layout {layout.name} has {layout.num_joints}")
    if modality == "joint":
        return x
    if modality == "motion":
        return temporal_difference(x, gamma)
    if modality == "acceleration":
        return acceleration(x, gamma)
    b = bones(x, layout.parents, layout.torso_normal)
    if modality == "bone":
        return b
    if modality == "axis":
        return hinge_axis(b, layout.hinges, unit=unit_axis)
    if modality == "angular_velocity":
        return angular_velocity(b, layout.hinges, gamma)
    raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITY_NAMES)}")


def _hinge_indices(hinges: Sequence[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    v = torch.as_tensor([h[0] for h in hinges], device=device, dtype=torch.long)
    w = torch.as_tensor([h[1] for h in hinges], device=device, dtype=torch.long)
    return v, w


def _check(x: Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"expected (N, 3, T, V, M) joints, got shape {tuple(x.shape)}")
