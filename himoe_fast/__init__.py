"""himoe-fast: Hi-MoE for multimodal emotion recognition with missing and asynchronous inputs.

Public API (DESIGN.md section 4)::

    from himoe_fast import HiMoEConfig, ModalitySpec, HiMoE, HiMoEOutput
"""

from .config import HiMoEConfig, ModalitySpec
from .model import HiMoE, HiMoEOutput

__version__ = "0.1.0"
__all__ = ["HiMoEConfig", "ModalitySpec", "HiMoE", "HiMoEOutput", "__version__"]
