"""Fast swap-in for Hi-MoE (DESIGN.md section 7): same parameters, same numbers, faster.

    from himoe_fast.fast import to_fast, to_reference
    fast = to_fast(model, backend="auto")      # "auto" | "triton" | "torch"
    model.load_state_dict(fast.state_dict())   # state dicts are interchangeable

Submodules: ``model`` (FastHiMoE, to_fast, to_reference), ``encoders``, ``experts`` (Modality Expert
Bank: batched torch path + dispatch to ``himoe_fast.kernels.modality_experts``), ``stages`` (Fuse,
heads), ``router`` (DA-router), ``parity`` and ``bench`` (used by ``himoe-fast parity`` / ``bench``).
Importing this package does not import triton.
"""

from .experts import modality_bank
from .model import FastHiMoE, to_fast, to_reference

__all__ = ["FastHiMoE", "to_fast", "to_reference", "modality_bank"]
