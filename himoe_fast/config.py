"""Model configuration: :class:`ModalitySpec`, :class:`HiMoEConfig` and the DEAP / DREAMER presets.

The config is the single source of truth for shapes. Everything downstream (encoders, expert banks,
data pipeline, CLI) reads sizes from here, so data flows one way: config -> data -> model -> training.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import ModalityError

ENCODER_KINDS = ("eeg", "signal", "features")
ROUTERS = ("dot", "cosine", "diff")
ROUTINGS = ("soft", "uniform", "top1", "top1_st")
TASKS = ("regression", "binary")
EXPERT_INITS = ("scaled", "torch")  # FFN experts' initialisation (himoe_fast.model.experts.init_expert_ffn_)
TEMPORAL_MODES = ("none", "align", "align+context")   # see himoe_fast.model.temporal

# --------------------------------------------------------------------------------------------------
# Dataset channel maps (used by the presets here and by the loaders in himoe_fast.data).
# --------------------------------------------------------------------------------------------------

#: DEAP ``data_preprocessed_python`` channel order (Koelstra et al. 2012), 128 Hz.
DEAP_EEG_CHANNELS = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz",
    "Pz", "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8",
    "PO4", "O2",
)
DEAP_SFREQ = 128.0
DEAP_TARGETS = ("valence", "arousal", "dominance", "liking")

#: modality name -> (channel indices into the 40 DEAP channels, encoder kind)
DEAP_MODALITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "eeg": (tuple(range(32)), "eeg"),
    "eog": ((32, 33), "signal"),          # hEOG, vEOG
    "emg": ((34, 35), "signal"),          # zygomaticus, trapezius EMG
    "gsr": ((36,), "signal"),             # galvanic skin response (= EDA)
    "resp": ((37,), "signal"),            # respiration belt
    "ppg": ((38,), "signal"),             # plethysmograph
    "temp": ((39,), "signal"),            # skin temperature
    "pps": (tuple(range(32, 40)), "signal"),  # all 8 peripheral channels as one modality
}
MODALITY_ALIASES = {"eda": "gsr"}

#: Optional DEAP facial features (see himoe_fast.data.deap for the accepted file layout).
DEAP_FACE_FEATURES = 17   # e.g. OpenFace action-unit intensities
DEAP_FACE_FPS = 25.0

DREAMER_EEG_CHANNELS = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4",
                        "F8", "AF4")
DREAMER_TARGETS = ("valence", "arousal", "dominance")
#: modality name -> (channels, sampling rate, encoder kind)
DREAMER_MODALITIES: dict[str, tuple[int, float, str]] = {
    "eeg": (14, 128.0, "eeg"),
    "ecg": (2, 256.0, "signal"),
}

#: Default modalities of the presets: every distinct DEAP modality (the paper's Fig. 1 setting
#: without face, which needs user-supplied feature files).
DEAP_DEFAULT_MODALITIES = ("eeg", "eog", "emg", "gsr", "resp", "ppg", "temp")


def canonical_modality(name: str) -> str:
    """Resolve aliases (``eda`` -> ``gsr``)."""
    return MODALITY_ALIASES.get(name, name)


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality.

    Args:
        name: modality name (``eeg``, ``gsr``, ...); unique within a config.
        channels: number of channels ``C_m`` (for ``features``: features per frame).
        sfreq: sampling rate in Hz (for ``features``: frames per second).
        kind: encoder kind, one of ``eeg`` | ``signal`` | ``features``.
    """

    name: str
    channels: int
    sfreq: float
    kind: str = "signal"

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"modality {self.name!r}: kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if int(self.channels) < 1:
            raise ValueError(f"modality {self.name!r}: channels must be >= 1, got {self.channels}")
        if not 0 < float(self.sfreq) < math.inf:          # rejects NaN and inf too
            raise ValueError(f"modality {self.name!r}: sfreq must be a finite number > 0, got {self.sfreq}")

    def samples(self, window_s: float) -> int:
        """Samples per window, ``S_m = round(window_s * sfreq_m)``."""
        return int(round(window_s * self.sfreq))


@dataclass
class HiMoEConfig:
    """Hyper-parameters of Hi-MoE (DESIGN.md section 3). Defaults follow the paper where it is explicit.

    Shapes used in docstrings: batch ``B``, windows per sample ``T``, modalities ``M``, width
    ``d = d_model``, modality experts ``K``, emotion experts ``L``, expert hidden width ``h``,
    router projection width ``r``.
    """

    modalities: Sequence[ModalitySpec] = field(default_factory=list)
    window_s: float = 1.0
    d_model: int = 128
    n_modality_experts: int = 4          # K
    expert_hidden: int = 256             # h
    n_emotion_experts: int = 8           # L
    router: str = "dot"                  # DA-router similarity: dot | cosine | diff
    routing: str = "soft"                # modality-bank gate: soft | uniform | top1 | top1_st
    emotion_bank: bool = True            # False = "w/o Emotion Expert Bank" ablation
    targets: Sequence[str] = DEAP_TARGETS
    task: str = "regression"             # regression | binary
    temperature: float = 0.1             # NT-Xent tau (Eq. 1)
    align_weight: float = 0.1            # lambda of Eq. 8; 0 = "w/o alignment" ablation
    router_dim: int = 64                 # r, DA-router projection width
    fuse_dim: int = 0                    # width of the Fuse attention (0 = d_model)
    lam_init: float = 0.2                # differential router lambda_init
    cosine_scale_init: float = 10.0      # learnable scale s of the cosine router
    expert_init: str = "scaled"          # FFN experts' init: scaled | torch (see model.experts.init_expert_ffn_)
    label_range: tuple[float, float] = (1.0, 9.0)   # rating scale (DEAP 1-9, DREAMER 1-5)
    threshold: float = 5.0               # binary task: high = label >= threshold
    dropout: float = 0.1                 # encoder dropout (train mode only)
    dataset: str = "custom"              # which preset built it (informational)
    # ---- asynchrony (this project's design, not the paper's; "none" is the paper-literal model)
    temporal: str = "none"               # none | align | align+context (himoe_fast.model.temporal)
    causal: bool = False                 # temporal stages see only past windows (streaming)
    max_shift: int = 6                   # D: the lag aligner's largest shift, in windows

    def __post_init__(self) -> None:
        self.modalities = tuple(
            m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in self.modalities
        )
        self.targets = tuple(self.targets)
        self.label_range = tuple(float(v) for v in self.label_range)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        if not self.modalities:
            raise ValueError("HiMoEConfig needs at least one modality")
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise ModalityError(f"duplicate modality names: {names}")
        if self.router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {self.router!r}")
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {self.temporal!r}")
        if int(self.max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")
        if self.expert_init not in EXPERT_INITS:
            raise ValueError(f"expert_init must be one of {EXPERT_INITS}, got {self.expert_init!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.targets:
            raise ValueError("at least one target is needed")
        for key in ("d_model", "n_modality_experts", "expert_hidden", "n_emotion_experts", "router_dim"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.d_model < 2:
            raise ValueError("d_model must be >= 2 (heads use d_model // 2)")
        if not 0 < self.temperature < math.inf:           # range checks written so that NaN fails them
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not 0 <= self.align_weight < math.inf:
            raise ValueError(f"align_weight must be a finite number >= 0, got {self.align_weight}")
        if not 0 < self.window_s < math.inf:
            raise ValueError(f"window_s must be a finite number > 0, got {self.window_s}")
        for m in self.modalities:
            if m.samples(self.window_s) < 16:
                raise ValueError(
                    f"modality {m.name!r}: a window of {self.window_s}s at {m.sfreq} Hz has "
                    f"{m.samples(self.window_s)} samples; encoders need at least 16"
                )

    # ------------------------------------------------------------------ derived
    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)

    def replace(self, **overrides: Any) -> "HiMoEConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **overrides)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modalities"] = [dataclasses.asdict(m) for m in self.modalities]
        d["targets"] = list(self.targets)
        d["label_range"] = list(self.label_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HiMoEConfig":
        d = dict(d)
        d["modalities"] = [ModalitySpec(**m) for m in d.get("modalities", [])]
        # configs written before the field existed trained with nn.Linear's init: keep their runs exact
        d.setdefault("expert_init", "torch")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # ------------------------------------------------------------------ presets
    @classmethod
    def deap(cls, modalities: Iterable[str] = DEAP_DEFAULT_MODALITIES, **overrides: Any) -> "HiMoEConfig":
        """DEAP preset: 128 Hz, targets valence/arousal/dominance/liking on 1-9, threshold 5.

        ``modalities`` are names from ``DEAP_MODALITIES`` (plus ``face`` and the alias ``eda``).
        """
        specs = []
        for raw in modalities:
            name = canonical_modality(raw)
            if name == "face":
                specs.append(ModalitySpec("face", DEAP_FACE_FEATURES, DEAP_FACE_FPS, "features"))
            elif name in DEAP_MODALITIES:
                idx, kind = DEAP_MODALITIES[name]
                specs.append(ModalitySpec(name, len(idx), DEAP_SFREQ, kind))
            else:
                known = sorted([*DEAP_MODALITIES, "face", *MODALITY_ALIASES])
                raise ModalityError(f"unknown DEAP modality {raw!r}; known: {', '.join(known)}")
        base = dict(modalities=specs, targets=DEAP_TARGETS, label_range=(1.0, 9.0), threshold=5.0,
                    dataset="deap")
        base.update(overrides)
        return cls(**base)

    @classmethod
    def dreamer(cls, modalities: Iterable[str] = ("eeg", "ecg"), **overrides: Any) -> "HiMoEConfig":
        """DREAMER preset: EEG 14 ch at 128 Hz, ECG 2 ch at 256 Hz, targets V/A/D on 1-5, threshold 3."""
        specs = []
        for name in modalities:
            if name not in DREAMER_MODALITIES:
                raise ModalityError(f"unknown DREAMER modality {name!r}; known: {', '.join(DREAMER_MODALITIES)}")
            ch, sf, kind = DREAMER_MODALITIES[name]
            specs.append(ModalitySpec(name, ch, sf, kind))
        base = dict(modalities=specs, targets=DREAMER_TARGETS, label_range=(1.0, 5.0), threshold=3.0,
                    dataset="dreamer")
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny(cls, modalities: Iterable[str] | None = None, **overrides: Any) -> "HiMoEConfig":
        """A small preset for quick checks (parity, bench, self-check): four modalities, one of each
        encoder kind plus a second signal, d=40, 3 modality experts, 5 emotion experts. Fast
        everywhere, also under the Triton interpreter."""
        specs = [ModalitySpec("eeg", channels=5, sfreq=32, kind="eeg"),
                 ModalitySpec("gsr", channels=1, sfreq=16, kind="signal"),
                 ModalitySpec("resp", channels=2, sfreq=16, kind="signal"),
                 ModalitySpec("face", channels=3, sfreq=20, kind="features")]
        if modalities is not None:
            wanted = list(modalities)
            unknown = set(wanted) - {m.name for m in specs}
            if unknown:
                raise ModalityError(f"unknown tiny modality {sorted(unknown)}; known: "
                                    f"{', '.join(m.name for m in specs)}")
            specs = [m for m in specs if m.name in wanted]
        base = dict(modalities=specs, window_s=1.0, d_model=40, n_modality_experts=3, expert_hidden=72,
                    n_emotion_experts=5, router_dim=8, targets=("valence", "arousal"))
        base.update(overrides)
        return cls(**base)


#: names accepted by :func:`preset_config` (and the CLI's ``--preset``)
PRESETS = ("deap", "dreamer", "tiny")


def preset_config(preset: str = "deap", modalities: Iterable[str] | None = None, **overrides: Any) -> HiMoEConfig:
    """The config of a preset (``deap`` | ``dreamer`` | ``tiny``) with optional modalities and overrides."""
    factories = {"deap": HiMoEConfig.deap, "dreamer": HiMoEConfig.dreamer, "tiny": HiMoEConfig.tiny}
    if preset not in factories:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    modalities = list(modalities) if modalities else None
    if modalities is None and preset != "tiny":
        return factories[preset](**overrides)
    return factories[preset](modalities, **overrides)
