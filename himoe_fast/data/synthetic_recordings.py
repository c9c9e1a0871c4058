"""Synthetic recordings in the recordings-folder layout (:mod:`.recordings`), from the same
physiological generator as the synthetic DEAP/DREAMER files (:mod:`.synthetic`).

Per subject, ``n_recordings`` recordings of ``recording_s`` seconds, each written as three FIF files
with their own rates and start times::

    DIR/recordings.json                  {"channels": {"Pleth": "ppg"}, "targets": [...], "scale": [1, 9]}
    DIR/sub-01/rec-01/eeg_raw.fif        32 EEG (DEAP 10-20 names) + hEOG, vEOG       128 Hz, starts at 0
                      physio_raw.fif     GSR, Resp, Pleth (type bio), Temp             64 Hz, starts 0.5-3 s late
                      emg_raw.fif        zygomaticus, trapezius EMG                    256 Hz, starts 0.25 s late
                      ratings.csv        time, valence, arousal at 4 Hz (continuous)

Real gaps: in every subject's recording 1 the GSR channel has a 4 s run of NaN; recording 2 has a
3 s ``BAD_motion`` annotation on the EEG file; the EMG device of recording 3 stops 5 s early; the
ratings of recording 4 have a 5 s unlabelled stretch (empty cells), and ratings start at 1 s.

Continuous ratings follow the same affective drive that the signals follow (the felt state times a
ramp, slow fluctuations and peaks), seen by the rater with a 1 s delay, plus report noise, on 1-9.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..config import DEAP_EEG_CHANNELS
from .cache import atomic_dir
from .synthetic import (V, A, _breathing, _delay, _drive, _eeg, _emg, _eog, _felt_states, _gsr_ohm, _ppg, _rng,
                        _smooth, _subject, _temperature)
from .synthetic_coupling import REPORT_NOISE_SD

BASE_FS = 256.0
RATING_FS = 4.0
TARGETS = ("valence", "arousal")


def _raw(data: np.ndarray, names: list[str], types: list[str], sfreq: float, start: dt.datetime):
    import mne

    info = mne.create_info(names, sfreq, types, verbose="error")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_meas_date(start)
    return raw


def _ratings_csv(drive: np.ndarray, rng: np.random.Generator, dur: float, gap: bool) -> str:
    """Continuous valence/arousal ratings at 4 Hz from the drive ``[2, n]`` at BASE_FS."""
    seen = _smooth(_delay(drive, int(BASE_FS)), BASE_FS, 1.0)                       # 1 s delay, smoothed
    t = np.arange(1.0, dur - 0.25, 1.0 / RATING_FS)
    idx = np.minimum(np.round(t * BASE_FS).astype(int), seen.shape[-1] - 1)
    noise = rng.normal(0.0, REPORT_NOISE_SD["recordings"], (2, t.size))
    val = np.clip(5.0 + 3.5 * np.clip(seen[:, idx], -1.1, 1.1) + noise, 1.0, 9.0)
    lines = ["time," + ",".join(TARGETS)]
    for i, ti in enumerate(t):
        if gap and dur * 0.4 <= ti < dur * 0.4 + 5.0:
            lines.append(f"{ti:.3f},,")
        else:
            lines.append(f"{ti:.3f},{val[0, i]:.3f},{val[1, i]:.3f}")
    return "\n".join(lines) + "\n"


def _write_subject(folder: Path, seed: int, subject: int, n_recordings: int, recording_s: float) -> None:
    import mne

    rng = _rng(seed, 20_000 + subject)
    subj = _subject(rng)
    felt = _felt_states(rng, n_recordings)
    n = int(round(recording_s * BASE_FS))
    drive = _drive(rng, felt, subj, n, BASE_FS, onset_s=2.0)                    # [R, 4, n] at 256 Hz
    d128, d64 = drive[..., ::2], drive[..., ::4]
    day = dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone.utc) + dt.timedelta(days=subject)
    eeg = _eeg(rng, d128, subj, 128.0, DEAP_EEG_CHANNELS) * 1e-6                   # volts, as MNE stores
    eog = _eog(rng, d128, subj, 128.0) * 1e-6
    emg = _emg(rng, drive, subj, BASE_FS) * 1e-6
    gsr = _gsr_ohm(rng, d64, subj, 64.0)
    belt, resp_phase = _breathing(rng, d64, subj, 64.0)
    ppg = _ppg(rng, d64, subj, 64.0, resp_phase)
    temp = _temperature(rng, d64, subj, 64.0)
    for r in range(n_recordings):
        rec = folder / f"rec-{r + 1:02d}"
        rec.mkdir(parents=True)
        start = day + dt.timedelta(hours=r, microseconds=int(rng.integers(0, 10**6)))
        raw = _raw(np.concatenate([eeg[r], eog[r]]), [*DEAP_EEG_CHANNELS, "hEOG", "vEOG"],
                   ["eeg"] * 32 + ["eog"] * 2, 128.0, start)
        if r % 4 == 1:
            raw.set_annotations(mne.Annotations([recording_s * 0.5], [3.0], ["BAD_motion"], orig_time=start))
        raw.save(rec / "eeg_raw.fif", verbose="error")
        late = float(rng.uniform(0.5, 3.0))                                         # physio starts late
        k = int(round(late * 64.0))
        phys = np.stack([gsr[r], belt[r], ppg[r], temp[r]])[:, k:].astype(np.float64)
        if r % 4 == 0:
            g0 = int(recording_s * 0.3 * 64.0)
            phys[0, g0:g0 + int(4 * 64)] = np.nan                                   # GSR dropout
        _raw(phys, ["GSR", "Resp", "Pleth", "Temp"], ["gsr", "resp", "bio", "temperature"], 64.0,
             start + dt.timedelta(seconds=k / 64.0)).save(rec / "physio_raw.fif", verbose="error")
        k_emg = int(0.25 * BASE_FS)
        stop = n - (int(5 * BASE_FS) if r % 4 == 2 else 0)                          # EMG stops early
        _raw(emg[r][:, k_emg:stop].astype(np.float64), ["EMG_zyg", "EMG_trap"], ["emg", "emg"], BASE_FS,
             start + dt.timedelta(seconds=k_emg / BASE_FS)).save(rec / "emg_raw.fif", verbose="error")
        (rec / "ratings.csv").write_text(_ratings_csv(drive[r, [V, A]], rng, recording_s, gap=r % 4 == 3))


def write_synthetic_recordings(out_dir: str | os.PathLike, n_subjects: int = 3, seed: int = 0, *,
                               n_recordings: int = 4, recording_s: float = 60.0) -> Path:
    """Write a synthetic recordings folder (layout in the module docstring) and return it.

    The folder is built under a temporary name and renamed into place, so a failure leaves nothing.
    ``out_dir`` must not exist yet or be empty.
    """
    if n_subjects < 1 or n_recordings < 1:
        raise ValueError("n_subjects and n_recordings must be >= 1")
    if recording_s < 20.0:
        raise ValueError(f"recording_s must be >= 20 s (gaps and late starts need room), got {recording_s}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder")
    if out.is_dir():
        out.rmdir()
    with atomic_dir(out) as tmp:
        (tmp / "recordings.json").write_text(json.dumps(
            {"channels": {"Pleth": "ppg"}, "targets": list(TARGETS), "scale": [1, 9]}, indent=1) + "\n")
        for s in range(n_subjects):
            _write_subject(tmp / f"sub-{s + 1:02d}", seed, s, n_recordings, recording_s)
    return out


def ensure_synthetic_recordings(root: str | os.PathLike, n_subjects: int = 3, seed: int = 0, **options) -> Path:
    """Write once into ``root`` (reused when it exists)."""
    root = Path(root)
    if root.is_dir() and any(root.iterdir()):
        return root
    shutil.rmtree(root, ignore_errors=True)
    return write_synthetic_recordings(root, n_subjects, seed, **options)


__all__ = ["write_synthetic_recordings", "ensure_synthetic_recordings"]
