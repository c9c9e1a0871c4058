"""Fast modality encoders: the reference encoders' parameters, cheaper algebra, fewer launches.

Plan (built once per model from the config, see :func:`plan_encoders`):

* ``eeg`` (:class:`~himoe_fast.model.encoders.EEGEncoder`): the temporal conv ``(1, k_t)`` and the
  depthwise spatial conv ``(C, 1)`` are one linear map with no non-linearity between them, so the
  fast path applies the spatial mix first (a 1x1 conv, ``C -> F1*D = 16`` channels) and then a
  depthwise temporal conv whose filter for output channel ``o`` is the temporal filter ``o // D``.
  Zero 'same' padding commutes with the channel mix, so the numbers are identical up to fp
  reassociation, at ``~C * k_t / (C + k_t)`` times fewer multiply-adds (~ 8x at 32 channels, 128 Hz).
  The stack then runs channel-major (``[16, N, time]``): both depthwise convs (temporal and separable)
  are batched Toeplitz GEMMs (:class:`ToeplitzDepthwiseConv`; oneDNN's depthwise conv with a 33-tap
  kernel is slow), the pointwise conv is one GEMM, pooling is ``avg_pool1d``.
* ``signal`` (:class:`~himoe_fast.model.encoders.SignalEncoder`): every signal modality with the same
  window length and kernel/pool sizes joins one *group*. The stack runs time-major (channels-last):
  the first conv (1-8 input channels, long kernel) per modality -- oneDNN runs such a conv ~3x faster
  alone than as a group of a grouped conv -- each followed by GELU + pooling computed in cache-sized
  token chunks (:class:`GeluPool`); then the pooled outputs (8x smaller) are concatenated and the
  second conv of all G modalities runs as ONE grouped conv (``groups = G``), followed by one chunked
  GELU + pooling, one ``baddbmm`` for the G projections and one LayerNorm.
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

from .backend import no_autocast, unify_dtypes


@dataclass
class SignalGroup:
    """Signal-kind modalities whose encoders run batched (grouped second conv, batched projection)."""

    indices: list[int] = field(default_factory=list)   # modality positions in cfg order
    names: list[str] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)


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
    plan.signal_groups = list(groups.values())
    return plan


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if training and p > 0 else x


def _toeplitz_index(k: int, pad: int, s_in: int, s_out: int, device) -> torch.Tensor:
    """``idx[i, s] = i - s + pad`` where that is a valid tap of a length-``k`` filter, else ``k``."""
    idx = torch.arange(s_in, device=device)[:, None] - torch.arange(s_out, device=device)[None, :] + pad
    return torch.where((idx >= 0) & (idx < k), idx, torch.full_like(idx, k))


class ToeplitzDepthwiseConv(torch.autograd.Function):
    """Depthwise 'same' conv1d as one batched GEMM: ``out[c] = y[c] @ T_c``.

    y: ``[C, N, S]`` (channel-major; any strides with a unit last stride), w: ``[C, k]`` (odd ``k``)
    -> ``[C, N, S]``, where ``T_c[i, s] = w[c, i - s + k//2]`` (zero outside the filter) is the
    ``[S, S]`` Toeplitz matrix of channel ``c``'s filter, zero padding included. For the short windows
    here (``S`` ~ 4 k) the GEMM runs far faster than oneDNN's depthwise conv with a long kernel.
    Backward: ``dy = dout @ T^T``; ``dT = y^T @ dout`` and ``dw[c, j] = sum_{i - s + k//2 = j} dT[c, i, s]``.
    """

    @staticmethod
    def forward(ctx, y, w):
        C, N, S = y.shape
        k = w.shape[1]
        idx = _toeplitz_index(k, k // 2, S, S, y.device).reshape(-1)                 # [S*S]
        w_ext = torch.cat([w, w.new_zeros(C, 1)], dim=1)                             # [C, k+1]
        T = w_ext.index_select(1, idx).view(C, S, S)
        ctx.save_for_backward(y, T, idx)
        ctx.k = k
        return torch.bmm(y, T)

    @staticmethod
    def backward(ctx, dout):
        y, T, idx = ctx.saved_tensors
        C, N, S = y.shape
        dy = dw = None
        if ctx.needs_input_grad[0]:
            dy = torch.bmm(dout, T.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            dT = torch.bmm(y.transpose(1, 2), dout)                                  # [C, S, S]
            dw = dT.new_zeros(C, ctx.k + 1).index_add_(1, idx, dT.reshape(C, S * S))[:, :ctx.k]
        return dy, dw


def depthwise_conv_cm(y: torch.Tensor, w: torch.Tensor, toeplitz_max_s: int | None = None) -> torch.Tensor:
    """Depthwise 'same' conv on channel-major ``y [C, N, S]`` with filters ``w [C, k]`` (odd k).

    Windows of up to ``toeplitz_max_s`` samples (default :data:`TOEPLITZ_MAX_S`) use the Toeplitz GEMM,
    longer ones ``conv1d``."""
    S, k = y.shape[-1], w.shape[-1]
    if S <= (TOEPLITZ_MAX_S if toeplitz_max_s is None else toeplitz_max_s):
        # autocast (the reference's conv1d runs in its dtype) is applied here, once: the Function's
        # backward runs outside autocast and needs both operands in one dtype
        y, w = unify_dtypes("depthwise_conv", ("y", "w"), (y, w), y.device)
        with no_autocast(y.device):
            return ToeplitzDepthwiseConv.apply(y, w)
    out = F.conv1d(y.transpose(0, 1), w.unsqueeze(1), padding=k // 2, groups=w.shape[0])   # long windows
    return out.transpose(0, 1)


#: longest window (samples) for which the Toeplitz-GEMM depthwise conv is used (its work grows as S^2)
TOEPLITZ_MAX_S = 1024


def eeg_forward(net, x: torch.Tensor) -> torch.Tensor:
    """Reassociated EEGNet. net: :class:`EEGEncoder`; x ``[N, C, S]`` -> ``[N, d]``.

    Runs channel-major (``[channels, N, time]``) so that every depthwise conv is one batched GEMM.
    """
    F1, D, F2 = net.F1, net.D, net.F2
    p = net.drop.p
    N = x.shape[0]
    ws = net.spatial.weight.reshape(F1 * D, -1)                              # [F1*D, C]
    wt = net.temporal.weight.reshape(F1, net.k_t).repeat_interleave(D, dim=0)   # [F1*D, k_t]
    y = F.conv1d(x, ws.unsqueeze(-1)).transpose(0, 1)                        # [16, N, S]  spatial mix first
    y = depthwise_conv_cm(y, wt)                                             # temporal conv, per channel
    y = F.avg_pool1d(F.elu(y), net.p1)                                       # [16, N, S/p1]
    y = _dropout(y, p, net.training)
    y = depthwise_conv_cm(y, net.depthwise.weight.reshape(F1 * D, net.k_s))  # separable: depthwise
    s1 = y.shape[-1]
    y = torch.mm(net.pointwise.weight.reshape(F2, F1 * D), y.reshape(F1 * D, N * s1)).view(F2, N, s1)
    y = F.adaptive_avg_pool1d(F.elu(y), net.POOL_OUT)                        # [F2, N, 8]
    y = _dropout(y, p, net.training)
    flat = y.transpose(0, 1).reshape(N, F2 * net.POOL_OUT)                   # reference flatten order (f, t)
    return F.layer_norm(F.linear(flat, net.proj.weight, net.proj.bias), net.norm.normalized_shape,
                        net.norm.weight, net.norm.bias, net.norm.eps)


def features_forward(net, x: torch.Tensor) -> torch.Tensor:
    """:class:`FeaturesEncoder` (already cheap). x ``[N, C, S]`` -> ``[N, d]``."""
    return net(x)


class GeluPool(torch.autograd.Function):
    """``AvgPool(p)`` over the time axis of ``gelu(h)``, ``h`` time-major ``[N, L, C]`` -> ``[N, L // p, C]``.

    Same numbers as ``mean(gelu(h).unflatten(1, (L // p, p)), 2)``, computed in token chunks of about
    :data:`CHUNK_ELEMS` elements: the ``[N, L, C]``-sized GELU output and its gradient then never exist
    as whole tensors (they would be the largest temporaries of the encoders), so the work stays in cache
    and no large buffer is allocated and page-faulted per step. Only ``h`` is kept for backward; the
    backward writes ``gelu'(h) * grad / p`` straight into the input gradient, chunk by chunk.
    """

    @staticmethod
    def forward(ctx, h, p: int, chunk_elems: int):
        N, L, C = h.shape
        L1 = L // p
        out = h.new_empty((N, L1, C))
        step = _chunk_rows(h, L * C, chunk_elems)
        for n0 in range(0, N, step):
            hc = h[n0:n0 + step, : L1 * p]
            torch.mean(F.gelu(hc).view(hc.shape[0], L1, p, C), 2, out=out[n0:n0 + step])
        ctx.save_for_backward(h)
        ctx.p, ctx.chunk_elems = p, chunk_elems
        return out

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        p = ctx.p
        N, L, C = h.shape
        L1 = L // p
        exact = L1 * p == L
        dh = h.new_empty(h.shape) if exact else h.new_zeros(h.shape)
        grad = grad / p
        step = _chunk_rows(h, L * C, ctx.chunk_elems)
        buf = h.new_empty((min(step, N), L1, p, C))
        for n0 in range(0, N, step):
            nc = min(step, N - n0)
            g = buf[:nc]
            g.copy_(grad[n0:n0 + nc].unsqueeze(2).expand(nc, L1, p, C))   # materialised: a broadcast
            hc = h[n0:n0 + nc, : L1 * p].reshape(nc, L1, p, C)             # operand would be unvectorised
            if exact:
                torch.ops.aten.gelu_backward.grad_input(g, hc, grad_input=dh[n0:n0 + nc].view(nc, L1, p, C))
            else:
                torch.ops.aten.gelu_backward.grad_input(g, hc, grad_input=g)
                dh[n0:n0 + nc, : L1 * p] = g.view(nc, L1 * p, C)
        return dh, None, None


#: target size (elements) of the token chunks of :class:`GeluPool` on CPU (~1 MiB of fp32)
CHUNK_ELEMS = 1 << 18


def _chunk_rows(h: torch.Tensor, per_row: int, chunk_elems: int) -> int:
    """Tokens per chunk: cache-sized on CPU; one chunk on GPUs (no cache to win, launches to lose)."""
    if h.device.type != "cpu":
        return max(1, h.shape[0])
    return max(1, chunk_elems // max(1, per_row))


def gelu_pool(h: torch.Tensor, p: int, chunk_elems: int = CHUNK_ELEMS) -> torch.Tensor:
    """``AvgPool1d(p)`` (floor mode) of ``gelu(h)`` over dim 1 of a time-major ``[N, L, C]`` tensor
    (backward in token chunks of about ``chunk_elems`` elements on CPU, :class:`GeluPool`)."""
    if torch.is_grad_enabled() and h.requires_grad:
        return GeluPool.apply(h, p, chunk_elems)
    return _pool_last(F.gelu(h), p)


def _pool_last(h: torch.Tensor, p: int) -> torch.Tensor:
    """``AvgPool1d(p)`` (floor mode) over dim 1 of a time-major ``[N, L, C]`` tensor -> ``[N, L // p, C]``."""
    N, L, C = h.shape
    L1 = L // p
    if L1 * p != L:
        h = h[:, : L1 * p]
    return h.reshape(N, L1, p, C).mean(2)


def _adaptive_pool_last(h: torch.Tensor, out: int) -> torch.Tensor:
    """``AdaptiveAvgPool1d(out)`` over dim 1 of ``[N, L, C]`` -> ``[N, out, C]``."""
    N, L, C = h.shape
    if L % out == 0:
        return h.reshape(N, out, L // out, C).mean(2)
    return F.adaptive_avg_pool1d(h.transpose(1, 2), out).transpose(1, 2)


def _conv_cl(h_nlc: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: int, groups: int) -> torch.Tensor:
    """Grouped 'same' conv1d on a time-major ``[N, L, Cin]`` tensor, as a channels-last conv2d
    (oneDNN's fast path for few channels) -> time-major ``[N, L, Cout]``."""
    x4 = h_nlc.transpose(1, 2).unsqueeze(2)                                  # [N, Cin, 1, L] (NHWC memory)
    x4 = x4.contiguous(memory_format=torch.channels_last)                   # no copy when already NHWC
    y = F.conv2d(x4, w.unsqueeze(2), b, padding=(0, pad), groups=groups)    # [N, Cout, 1, L]
    # channels-last output -> a free view; with one input channel the layouts coincide and oneDNN may
    # answer in NCHW, whose transposed view would make every later elementwise op stride badly
    return y.squeeze(2).transpose(1, 2).contiguous()                         # [N, L, Cout]


def signal_group_forward(nets: list, grp: SignalGroup, xs: list[torch.Tensor], training: bool) -> torch.Tensor:
    """G same-shape signal encoders, time-major (channels-last) throughout (see the module docstring).

    nets: the G :class:`SignalEncoder` modules; xs: G inputs ``[N, C_g, S]`` -> ``[G, N, d]``.
    """
    G = len(nets)
    n0 = nets[0]
    N = xs[0].shape[0]

    def cat(ts, dim=0):
        return torch.cat(ts, dim) if len(ts) > 1 else ts[0]

    # first conv: one small channels-last conv per modality. oneDNN runs a conv with 1-2 input
    # channels ~3x faster alone than as one group of a grouped conv (measured on the 2-core CPU: 6
    # modalities fwd+bwd 3.1 ms vs 9.3 ms), and no channel padding is needed; GELU + pooling shrink the
    # output 8x before the modalities are concatenated for the grouped second conv.
    pooled = [gelu_pool(_conv_cl(x.transpose(1, 2), n.conv1.weight, n.conv1.bias, n.k1 // 2, 1), n.p)
              for n, x in zip(nets, xs)]                                                   # [N, S/p, 16] each
    h = cat(pooled, 2)                                                                     # [N, S/p, G*16]
    h = _conv_cl(h, cat([n.conv2.weight for n in nets]), cat([n.conv2.bias for n in nets]), 2, G)  # [N, S/p, G*32]
    L2 = h.shape[1]
    h = gelu_pool(h, L2 // n0.POOL_OUT) if L2 % n0.POOL_OUT == 0 else \
        _adaptive_pool_last(F.gelu(h), n0.POOL_OUT)                                               # [N, 4, G*32]
    h = _dropout(h, n0.drop.p, training)
    P, C2 = n0.POOL_OUT, n0.C2
    hg = h.reshape(N, P, G, C2).permute(2, 0, 1, 3).reshape(G, N, P * C2)   # [G, N, (t, c)]
    # the reference flattens (c, t): permute the projection weights' columns instead of the data
    wp = torch.stack([n.proj.weight for n in nets]).view(G, -1, C2, P).transpose(2, 3).reshape(G, -1, P * C2)
    bp = torch.stack([n.proj.bias for n in nets])                                                   # [G, d]
    y = torch.baddbmm(bp.unsqueeze(1), hg, wp.transpose(1, 2))                                      # [G, N, d]
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
