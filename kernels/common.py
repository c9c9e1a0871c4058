"""Device helpers shared by the Triton kernels (``@triton.jit`` functions, fp32 in and out)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def gelu(x):
    """Exact (erf) GELU, as ``F.gelu``: ``0.5 x (1 + erf(x / sqrt 2))``."""
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def gelu_grad(x):
    """``d gelu / dx = Phi(x) + x phi(x)``."""
    cdf = 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))
    pdf = tl.exp(-0.5 * x * x) * 0.3989422804014327
    return cdf + x * pdf
