"""Functional ops with backend dispatch.

``masked_ntxent(z, present, temperature, backend)``: ``"torch"`` is the readable reference in
:mod:`himoe_fast.ops.ntxent`; ``"ext"`` is the tiled C++/CUDA operator
``torch.ops.himoe_fast.masked_ntxent`` (defined at import by :mod:`himoe_fast.ops.library`, its kernels
built on first use, see :mod:`himoe_fast.ops.ext`);
``"auto"`` uses the extension when it has a kernel for the tensor's dtype and device and the torch
reference otherwise. When the extension cannot be built (no compiler), ``"ext"`` and ``"auto"`` fall
back to the torch reference with a one-time warning.
"""

from __future__ import annotations

import torch

from . import library  # defines torch.ops.himoe_fast.* (schemas, fake kernels, autograd)
from .ntxent import masked_ntxent_torch

BACKENDS = ("auto", "ext", "torch")


def masked_ntxent(z: torch.Tensor, present: torch.Tensor, temperature: float = 0.1,
                  backend: str = "auto") -> torch.Tensor:
    """Masked NT-Xent over all modality pairs (DESIGN.md section 3).

    z: ``[M, N, d]``, present: bool ``[M, N]``, temperature ``tau > 0`` -> scalar.
    """
    if backend not in BACKENDS:
        raise ValueError(f"masked_ntxent: backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "torch":
        if z.dim() != 3 or present.shape != z.shape[:2]:
            raise ValueError(f"masked_ntxent: expected z [M, N, d] and present [M, N], got {tuple(z.shape)} "
                             f"and {tuple(present.shape)}")
        from . import ext

        if ext.ext_available():
            why_not = ext.supports(z)
            if why_not is None:
                present = present.to(device=z.device, dtype=torch.bool)
                return torch.ops.himoe_fast.masked_ntxent(z, present, float(temperature))
            if backend == "ext":
                raise ValueError(f"masked_ntxent: backend='ext' has no kernel for this input: {why_not}")
    return masked_ntxent_torch(z, present, temperature)


__all__ = ["masked_ntxent", "masked_ntxent_torch", "BACKENDS", "library"]
