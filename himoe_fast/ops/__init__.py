"""Functional ops with backend dispatch.

``masked_ntxent(z, present, temperature, backend)``: ``"torch"`` is the readable reference in
:mod:`himoe_fast.ops.ntxent`; ``"ext"`` is the tiled C++/CUDA operator; ``"auto"`` picks the
extension when it is available and the torch reference otherwise.
"""

from __future__ import annotations

import torch

from .ntxent import masked_ntxent_torch

BACKENDS = ("auto", "ext", "torch")


def masked_ntxent(z: torch.Tensor, present: torch.Tensor, temperature: float = 0.1,
                  backend: str = "auto") -> torch.Tensor:
    """Masked NT-Xent over all modality pairs (DESIGN.md section 3).

    z: ``[M, N, d]``, present: bool ``[M, N]``, temperature ``tau > 0`` -> scalar.
    """
    if backend not in BACKENDS:
        raise ValueError(f"masked_ntxent: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "ext":
        raise NotImplementedError("masked_ntxent: the C++/CUDA extension backend is not built yet; "
                                  "use backend='torch'")
    return masked_ntxent_torch(z, present, temperature)


__all__ = ["masked_ntxent", "masked_ntxent_torch", "BACKENDS"]
