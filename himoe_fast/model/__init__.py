"""Reference Hi-MoE model: one module per part of the paper's architecture."""

from .encoders import EEGEncoder, FeaturesEncoder, ModalityEncoder, SignalEncoder, build_encoders
from .experts import ModalityExpertBank, expert_ffn, gate_weights
from .fuse import AttentionFuse, masked_softmax
from .heads import TargetHeads
from .himoe import HiMoE, HiMoEOutput, emotion_loss
from .router import EmotionExpertBank

__all__ = [
    "AttentionFuse", "EEGEncoder", "EmotionExpertBank", "FeaturesEncoder", "HiMoE", "HiMoEOutput",
    "ModalityEncoder", "ModalityExpertBank", "SignalEncoder", "TargetHeads", "build_encoders",
    "emotion_loss", "expert_ffn", "gate_weights", "masked_softmax",
]
