"""Building blocks of the fast encoders against plain torch ops (forward and gradients)."""

import pytest
import torch
import torch.nn.functional as F

from himoe_fast import ModalitySpec
from himoe_fast.fast import encoders as fe
from himoe_fast.model.encoders import EEGEncoder, SignalEncoder

FWD = dict(atol=1e-5, rtol=1e-4)
GRAD = dict(atol=1e-4, rtol=1e-3)


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.mark.parametrize("L,p", [(32, 4), (35, 4), (7, 7), (9, 2)])
@pytest.mark.parametrize("chunk", [1 << 18, 50])
def test_gelu_pool_matches_gelu_then_avg_pool(L, p, chunk):
    h = torch.randn(5, L, 6, requires_grad=True)
    g = torch.randn(5, L // p, 6)
    out = fe.gelu_pool(h, p, chunk_elems=chunk)              # 50: one token per chunk, many chunks
    ref = F.avg_pool1d(F.gelu(h).transpose(1, 2), p).transpose(1, 2)
    torch.testing.assert_close(out, ref, **FWD)
    (gh,) = torch.autograd.grad((out * g).sum(), h)
    (rh,) = torch.autograd.grad((ref * g).sum(), h)
    torch.testing.assert_close(gh, rh, **GRAD)
    with torch.no_grad():
        torch.testing.assert_close(fe.gelu_pool(h, p, chunk_elems=chunk), ref, **FWD)


@pytest.mark.parametrize("S,k", [(32, 9), (17, 5), (8, 3), (5, 7)])
def test_toeplitz_depthwise_conv_matches_conv1d(S, k):
    C, N = 6, 4
    y = torch.randn(N, C, S).transpose(0, 1).requires_grad_(True)      # [C, N, S] strided view
    w = torch.randn(C, k, requires_grad=True)
    out = fe.ToeplitzDepthwiseConv.apply(y, w)
    ref = F.conv1d(y.transpose(0, 1), w.unsqueeze(1), padding=k // 2, groups=C).transpose(0, 1)
    torch.testing.assert_close(out, ref, **FWD)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad((out * g).sum(), [y, w]),
                               torch.autograd.grad((ref * g).sum(), [y, w]), **GRAD)


def test_depthwise_conv_long_window_falls_back():
    y = torch.randn(3, 2, 40)
    w = torch.randn(3, 5)
    ref = F.conv1d(y.transpose(0, 1), w.unsqueeze(1), padding=2, groups=3).transpose(0, 1)
    torch.testing.assert_close(fe.depthwise_conv_cm(y, w, toeplitz_max_s=16), ref, **FWD)


@pytest.mark.parametrize("channels,sfreq", [(32, 128.0), (1, 64.0), (5, 100.0)])
def test_eeg_forward_matches_eeg_encoder(channels, sfreq):
    net = EEGEncoder(ModalitySpec("eeg", channels, sfreq, "eeg"), 1.0, 24, dropout=0.0)
    x = torch.randn(6, channels, int(sfreq))
    ref = net(x)
    out = fe.eeg_forward(net, x)
    torch.testing.assert_close(out, ref, **FWD)
    g = torch.randn_like(ref)
    params = list(net.parameters())
    torch.testing.assert_close(torch.autograd.grad((out * g).sum(), params),
                               torch.autograd.grad((ref * g).sum(), params), **GRAD)


def test_signal_group_matches_separate_encoders():
    specs = [ModalitySpec("a", 1, 64.0), ModalitySpec("b", 3, 64.0), ModalitySpec("c", 2, 64.0)]
    nets = [SignalEncoder(s, 1.0, 16, dropout=0.0) for s in specs]
    grp = fe.SignalGroup(indices=[0, 1, 2], names=["a", "b", "c"], channels=[1, 3, 2])
    xs = [torch.randn(5, s.channels, 64) for s in specs]
    out = fe.signal_group_forward(nets, grp, xs, training=False)
    ref = torch.stack([n(x) for n, x in zip(nets, xs)])
    torch.testing.assert_close(out, ref, **FWD)
    g = torch.randn_like(ref)
    params = [p for n in nets for p in n.parameters()]
    torch.testing.assert_close(torch.autograd.grad((out * g).sum(), params),
                               torch.autograd.grad((ref * g).sum(), params), **GRAD)
