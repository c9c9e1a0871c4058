"""Data layer: DEAP / DREAMER readers, synthetic recordings in their formats, MNE preprocessing,
windows, cache, missing-modality simulation, protocols and the PyTorch data path.

Data flow::

    sNN.dat / DREAMER.mat --load_*--> arrays --prepare_windows (filter, resample, lag, baseline,
    z-score, windows, cache)--> WindowedData --make_splits--> Split --make_loader--> batches
    (inputs {name: [B, T, C, S]}, present [B, T, M], labels [B, T, n_t], label_mask [B, T, n_t])

Module map: :mod:`.errors` (DatasetError), :mod:`.adapters` (what a data set provides to
prepare_windows: discovery, identity, modalities, subjects), :mod:`.deap`, :mod:`.dreamer` (readers,
file layouts and their adapters), :mod:`.recordings` (your own MNE-readable recordings with
per-trial or continuous ratings, and their adapter), :mod:`.prepare` (prepare_windows, the adapter
registry), :mod:`.cache` (cache root, keys, atomic folders, window entries), :mod:`.preprocess`
(filter table, baseline, standardisation, lags), :mod:`.windows` (WindowedData, trial windowing),
:mod:`.synthetic` (generator) with its coupling table :mod:`.synthetic_coupling`,
:mod:`.synthetic_recordings`, :mod:`.missing`, :mod:`.protocols`, :mod:`.dataset`.
"""

from .cache import cache_root
from .dataset import SequenceDataset, collate_batch, make_loader
from .deap import DeapSubject, load_deap_subject, load_face_features
from .dreamer import DreamerSubject, load_dreamer
from .errors import DatasetError
from .missing import draw_present
from .prepare import prepare_windows
from .preprocess import DEFAULT_FILTERS, FilterSpec, PreprocessConfig
from .protocols import Split, make_splits
from .recordings import prepare_recordings, recordings_config, scan_recordings
from .synthetic import ensure_synthetic, synthetic_face_dir, write_synthetic_deap, write_synthetic_dreamer
from .synthetic_recordings import write_synthetic_recordings
from .windows import WindowedData, make_sequences

__all__ = [
    "DatasetError", "load_deap_subject", "load_dreamer", "load_face_features", "DeapSubject", "DreamerSubject",
    "write_synthetic_deap", "write_synthetic_dreamer", "ensure_synthetic", "synthetic_face_dir", "cache_root",
    "prepare_windows", "PreprocessConfig", "FilterSpec", "DEFAULT_FILTERS",
    "WindowedData", "make_sequences", "Split", "make_splits",
    "SequenceDataset", "collate_batch", "make_loader", "draw_present",
    "scan_recordings", "recordings_config", "prepare_recordings", "write_synthetic_recordings",
]
