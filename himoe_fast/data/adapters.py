"""What a data set must provide so that :func:`~himoe_fast.data.prepare_windows` can prepare it.

One :class:`DatasetAdapter` per data set (DEAP in :mod:`.deap`, DREAMER in :mod:`.dreamer`, your own
recordings in :mod:`.recordings`; the registry is :data:`himoe_fast.data.prepare.ADAPTERS`) says

* **discovery**: :meth:`DatasetAdapter.open` finds the input files under ``data_dir`` and checks the
  config against them (modality names and channel counts, targets, the number of subjects);
* **identity**: :meth:`~DatasetAdapter.identity` (the input files' path, size and mtime) and
  :meth:`~DatasetAdapter.key_options` go into the cache key, ``version`` too;
* **modalities**: :meth:`~DatasetAdapter.provided_modalities` lists what the data set can supply;
* **subjects**: :meth:`~DatasetAdapter.iter_subjects` reads, preprocesses and windows one subject at
  a time and yields its :class:`~.windows.SubjectWindows`.

Everything else (argument checks, the cache key and entry, progress, assembling
:class:`~.windows.WindowedData`) is the same for every data set and lives in :mod:`.prepare`.
Data sets cut into trials on a common sample grid (DEAP, DREAMER) derive from :class:`TrialDataset`
and only yield per-subject :class:`~.windows.SubjectTrials`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

from ..config import HiMoEConfig
from ..progress import ProgressCallback
from .errors import DatasetError
from .preprocess import PreprocessConfig, subject_lags
from .windows import WINDOWS_VERSION, SubjectTrials, SubjectWindows, window_trials


@dataclass(frozen=True)
class PrepareRequest:
    """The checked settings of one :func:`~himoe_fast.data.prepare_windows` call.

    Attributes:
        cfg: the model config (modalities, ``window_s``, ``targets``).
        pp: preprocessing settings.
        stride_s: seconds between window starts.
        lags: modality -> fixed lag in seconds (zero lags left out).
        random_lags: modality -> largest extra per-subject lag in seconds (empty: none).
        lag_seed: seed of the per-subject lags.
    """

    cfg: HiMoEConfig
    pp: PreprocessConfig
    stride_s: float
    lags: dict[str, float]
    random_lags: dict[str, float]
    lag_seed: int = 0

    def lags_for(self, subject: int) -> dict[str, float]:
        """The lags of subject ``subject`` (0-based): fixed plus its random draw."""
        return subject_lags(self.lags, self.random_lags, self.lag_seed, subject)


class DatasetAdapter(ABC):
    """One opened data set: its files, identity and subjects (see the module docstring).

    Class attributes:
        name: registry key and cache-folder prefix (``"deap"``).
        title: how messages and progress name it (``"DEAP"``).
        version: version of this data set's reading/windowing code (part of the cache key; bump
            when the output changes).
        random_lags: whether per-subject random lags are applied (False: ``random_lags`` is ignored
            and left out of the cache key, as for recordings folders).

    Instance attributes set by :meth:`open`:
        files: every input file (``meta["files"]``).
        n_subjects: subjects that will be yielded, when known before reading (else None).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    version: ClassVar[int]
    random_lags: ClassVar[bool] = True

    files: list[Path]
    n_subjects: int | None

    @classmethod
    @abstractmethod
    def open(cls, data_dir: Path, cfg: HiMoEConfig, *, subjects: int | None = None,
             face_dir: str | os.PathLike | None = None, strict_rates: bool = False) -> "DatasetAdapter":
        """Find the input files and check ``cfg`` against them (options a data set has no use for
        are ignored). Raises :class:`~.errors.DatasetError` naming the file and what is wrong."""

    @classmethod
    @abstractmethod
    def provided_modalities(cls, data_dir: Path) -> dict[str, tuple[int, float | None]]:
        """modality -> (channels, sampling rate; None where the config decides) the data can supply."""

    @abstractmethod
    def identity(self) -> list[Any]:
        """JSON-able identity of the input files (path, size, mtime; see :func:`~.cache.file_identity`)."""

    def key_options(self) -> dict[str, Any]:
        """Data-set options that change the windows (placed after ``subjects`` in the cache key)."""
        return {}

    def meta_extra(self) -> dict[str, Any]:
        """Entries for ``WindowedData.meta`` besides the common ones (placed after ``files``)."""
        return {}

    @abstractmethod
    def iter_subjects(self, req: PrepareRequest, progress: ProgressCallback | None = None
                      ) -> Iterator[SubjectWindows]:
        """Windows of each subject in order, reporting ``progress(done, total, label)`` per subject."""


class TrialDataset(DatasetAdapter):
    """A data set of trials that all modalities cover from their first sample: subjects are yielded
    as :class:`~.windows.SubjectTrials` and windowed on the common sample grid here."""

    version = WINDOWS_VERSION

    @abstractmethod
    def iter_trials(self, req: PrepareRequest, progress: ProgressCallback | None = None
                    ) -> Iterator[tuple[Path, SubjectTrials]]:
        """Per subject: (the file to name in errors, its preprocessed trials)."""

    def iter_subjects(self, req: PrepareRequest, progress: ProgressCallback | None = None
                      ) -> Iterator[SubjectWindows]:
        for where, trials in self.iter_trials(req, progress):
            yield window_trials(trials, req.cfg, req.stride_s, where)


def label_columns(cfg: HiMoEConfig, known: Sequence[str], where: Path) -> list[int]:
    """Columns of the config's targets among the data set's rated ``known`` targets."""
    cols = []
    for t in cfg.targets:
        if t not in known:
            raise DatasetError(where, f"target {t!r} is not rated in this data set (targets: {', '.join(known)})")
        cols.append(list(known).index(t))
    return cols


__all__ = ["DatasetAdapter", "TrialDataset", "PrepareRequest", "label_columns"]
