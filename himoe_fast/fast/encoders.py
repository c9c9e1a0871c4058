"""Fast modality encoders: the reference encoders' parameters, cheaper algebra, fewer launches.

Plan (built once per model from the config, see :func:`plan_encoders`):

* ``eeg`` (:class:`~himoe_fast.model.encoders.EEGEncoder`): the temporal conv ``(1, k_t)`` and the
  depthwise spatial conv ``(C, 1)`` are one linear map with no non-linearity between them, so the
  fast path applies the spatial mix first (``[F1*D, C] @ x``: ``C -> 16`` channels) and then a
  depthwise temporal conv whose filter for output channel ``o`` is the temporal filter ``o // D``.
  Zero 'same' padding commutes with the channel mix, so the numbers are identical up to fp
  reassociation, at ``~C * k_t / (C + k_t)`` times fewer multiply-adds (~ 8x at 32 channels, 128 Hz).
  The rest of the stack runs as 1-D ops (pooling as ``avg_pool1d``, the pointwise conv as a GEMM).
* ``signal`` (:class:`~himoe_fast.model.encoders.SignalEncoder`): every signal modality with the same
  window length and kernel/pool sizes joins one *group*; the group runs as ONE grouped ``conv1d``
  per layer (``groups = G``), with each modality's channels zero-padded to the group's widest (zero
  input channels times zero weight columns add exact zeros, so the numbers do not change), then one
  ``baddbmm`` for the ``G`` projections and one LayerNorm.
* ``features``: the reference layers called functionally (cheap already).

Absent modalities' raw windows are zeroed first, as in :meth:`HiMoE.encode`. Dropout is applied at the
same places with the same rate (different random masks than the reference's, so parity is checked
with dropout off / in eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SignalGroup:
    """Signal-kind modalities that run as one grouped convolution."""

    indices: list[int] = field(default_factory=list)   # modality positions in cfg order
    names: list[str] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    cmax: int = 1


@dataclass
class EncoderPlan:
    eeg: list[int] = field(default_factory=list)
    features: list[int] = field(default_factory=list)
    signal_groups: list[SignalGroup] = field(default_factory=list)


def plan_encoders(cfg, encoders: nn.ModuleDict) -> EncoderPlan:
    """Group the modalities of ``cfg`` by how the fast path runs them."""
    plan = EncoderPlan()
    groups: dict[tuple, SignalGroup] = {}
    for m, spec in enumerate(cfg.modalities):
        net = encoders[spec.name].net
        if spec.kind == "eeg":
            plan.eeg.append(m)
        elif spec.kind == "features":
            plan.features.append(m)
        else:
            key = (spec.samples(cfg.window_s), net.k1, net.p, net.C1, net.C2, net.POOL_OUT)
            grp = groups.setdefault(key, SignalGroup())
            grp.indices.append(m)
            grp.names.append(spec.name)
            grp.channels.append(spec.channels)
            grp.cmax = max(grp.cmax, spec.channels)
    plan.signal_groups = list(groups.values())
    return plan


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if training and p > 0 else x


def eeg_forward(net, x: torch.Tensor) -> torch.Tensor:
    """Reassociated EEGNet. net: :class:`EEGEncoder`; x ``[N, C, S]`` -> ``[N, d]``."""
    F1, D = net.F1, net.D
    p = net.drop.p
    k_t = net.k_t
    ws = net.spatial.weight.reshape(F1 * D, -1)                      # [F1*D, C]
    wt = net.temporal.weight.reshape(F1, 1, k_t).repeat_interleave(D, dim=0)   # [F1*D, 1, k_t]
    y = torch.matmul(ws, x)                                          # [N, F1*D, S]  spatial mix first
    y = F.conv1d(y, wt, padding=k_t // 2, groups=F1 * D)             # depthwise temporal conv
    y = F.avg_pool1d(F.elu(y), net.p1)                               # [N, 16, S/p1]
    y = _dropout(y, p, net.training)
    y = F.conv1d(y, net.depthwise.weight.squeeze(2), padding=net.k_s // 2, groups=F1 * D)
    y = torch.matmul(net.pointwise.weight.reshape(net.F2, F1 * D), y)   # [N, F2, S/p1]
    y = F.adaptive_avg_pool1d(F.elu(y), net.POOL_OUT)                # [N, F2, 8]
    y = _dropout(y, p, net.training)
    return F.layer_norm(F.linear(y.flatten(1), net.proj.weight, net.proj.bias), net.norm.normalized_shape,
                        net.norm.weight, net.norm.bias, net.norm.eps)


def features_forward(net, x: torch.Tensor) -> torch.Tensor:
    """:class:`FeaturesEncoder` (already cheap). x ``[N, C, S]`` -> ``[N, d]``."""
    return net(x)


def signal_group_forward(nets: list, grp: SignalGroup, xs: list[torch.Tensor], training: bool) -> torch.Tensor:
    """G same-shape signal encoders as one grouped conv stack.

    nets: the G :class:`SignalEncoder` modules; xs: G inputs ``[N, C_g, S]`` -> ``[G, N, d]``.
    """
    G, cmax = len(nets), grp.cmax
    n0 = nets[0]
    N, S = xs[0].shape[0], xs[0].shape[-1]
    if all(c == cmax for c in grp.channels):
        xin = torch.cat(xs, dim=1) if G > 1 else xs[0]               # [N, G*cmax, S]
        w1 = torch.cat([n.conv1.weight for n in nets], 0) if G > 1 else n0.conv1.weight
    else:
        xin = torch.cat([F.pad(x, (0, 0, 0, cmax - x.shape[1])) for x in xs], dim=1)
        w1 = torch.cat([F.pad(n.conv1.weight, (0, 0, 0, cmax - n.conv1.weight.shape[1])) for n in nets], 0)
    b1 = torch.cat([n.conv1.bias for n in nets]) if G > 1 else n0.conv1.bias
    h = F.gelu(F.conv1d(xin, w1, b1, padding=n0.k1 // 2, groups=G))      # [N, G*16, S]
    h = F.avg_pool1d(h, n0.p)                                         # [N, G*16, S/p]
    w2 = torch.cat([n.conv2.weight for n in nets], 0) if G > 1 else n0.conv2.weight
    b2 = torch.cat([n.conv2.bias for n in nets]) if G > 1 else n0.conv2.bias
    h = F.adaptive_avg_pool1d(F.gelu(F.conv1d(h, w2, b2, padding=2, groups=G)), n0.POOL_OUT)  # [N, G*32, 4]
    h = _dropout(h, n0.drop.p, training)
    f = n0.C2 * n0.POOL_OUT
    hg = h.reshape(N, G, f).transpose(0, 1)                           # [G, N, 128]
    wp = torch.stack([n.proj.weight for n in nets])                   # [G, d, 128]
    bp = torch.stack([n.proj.bias for n in nets])                     # [G, d]
    y = torch.baddbmm(bp.unsqueeze(1), hg, wp.transpose(1, 2))        # [G, N, d]
    gamma = torch.stack([n.norm.weight for n in nets]).unsqueeze(1)
    beta = torch.stack([n.norm.bias for n in nets]).unsqueeze(1)
    return torch.addcmul(beta, F.layer_norm(y, y.shape[-1:], eps=n0.norm.eps), gamma)


def encode_fast(model, plan: EncoderPlan, inputs, present_mn: torch.Tensor) -> torch.Tensor:
    """All encoders. inputs ``{name: [B, T, C, S]}``, present_mn bool ``[M, N]`` -> Z ``[M, N, d]``."""
    cfg = model.cfg
    out: list[torch.Tensor | None] = [None] * cfg.n_modalities

    def raw(m: int) -> torch.Tensor:
        spec = cfg.modalities[m]
        x = inputs[spec.name]
        B, T, C, S = x.shape
        x = x.reshape(B * T, C, S)
        return torch.where(present_mn[m, :, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))

    for m in plan.eeg:
        out[m] = eeg_forward(model.encoders[cfg.modalities[m].name].net, raw(m))
    for m in plan.features:
        out[m] = features_forward(model.encoders[cfg.modalities[m].name].net, raw(m))
    for grp in plan.signal_groups:
        nets = [model.encoders[n].net for n in grp.names]
        y = signal_group_forward(nets, grp, [raw(m) for m in grp.indices], model.training)
        for j, m in enumerate(grp.indices):
            out[m] = y[j]
    return torch.stack(out, dim=0)                                    # [M, N, d]
