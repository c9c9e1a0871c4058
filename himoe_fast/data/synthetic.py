"""Synthetic DEAP and DREAMER recordings in the real file formats.

The files are byte-for-byte the same layout as the real releases (see :mod:`.deap` and
:mod:`.dreamer`), so the real loaders, preprocessing and training run end to end on them. The
signals are generated from a small physiological model so that the ratings are learnable from the
signals, but not trivially:

Affect model
    Every trial has a *felt* state ``(valence, arousal, dominance, liking)`` in ``[-1, 1]``. The
    trials cover the four valence/arousal quadrants like DEAP's stimulus selection; dominance and
    liking correlate with valence. The stored self-rating is the felt state plus report noise on
    the 1-9 (DEAP, two decimals) or integer 1-5 (DREAMER) scale, so no model can be perfect.
    Within a trial the response ramps in after stimulus onset (time constant 4-12 s), its
    intensity fluctuates slowly (< 0.1 Hz) and has two or so "peak moments"; arousal also wanders.
    Subjects differ in reactivity (x0.6-1.4), tonic mood, channel gains, alpha peak frequency,
    heart rate, breathing rate, skin conductance level, temperature, blink rate.

Signals (each driven by the felt state delayed by a modality-specific lag, times a per-subject
jitter of x0.8-1.25, which is the asynchrony the alignment module is meant to absorb; every
coupling weight, lag, subject spread and noise level named below is in the one table of
:mod:`.synthetic_coupling`)
    * EEG (lag 0.2 s): 1/f background + theta/alpha/beta/gamma oscillations whose amplitudes follow
      the affect: frontal alpha asymmetry (left-frontal alpha down / right-frontal alpha up with
      valence), alpha down and beta/gamma up with arousal, temporal gamma up with valence, frontal
      midline theta down with dominance; mixed by volume conduction over the 10-20 positions.
    * EOG (1.0 s): blinks (vEOG) and saccades (hEOG) whose rate rises with arousal.
    * EMG (0.5 s): zygomaticus activity rises with valence (and liking), trapezius with arousal;
      50 Hz line noise on top.
    * GSR (3.0 s, smoothed over 4 s): skin conductance level and phasic responses (rate and size)
      rise with arousal; stored as skin resistance in Ohm like DEAP, so arousal lowers the value.
    * Respiration (2.5 s): breathing rate rises and depth falls with arousal.
    * PPG / ECG (2.0 s, smoothed 2 s): heart rate rises with arousal (and slightly falls with
      valence), with respiratory sinus arrhythmia and HRV noise; pulse amplitude falls with arousal
      (vasoconstriction). DREAMER ECG has PQRST beats, DC offsets, baseline wander and line noise.
    * Temperature (6.0 s, smoothed 12 s): drifts per trial and falls with arousal.
    * Face (optional, 0.8 s): 17 action-unit intensities at 25 fps (AU12/AU6 with valence,
      AU4/AU15 against it, AU1/2/5/25/26 with arousal); about 10% of trials have no recording.
    DEAP's first 3 s (the baseline) have no affective drive; DREAMER's baseline clips neither.

Everything is vectorised numpy/scipy.fft in float32; one full DEAP subject (40 x 40 x 8064) takes
well under a second or two. Each subject is generated from ``SeedSequence([seed, subject])``, so a
subject's data do not depend on how many subjects are written, and files are identical per seed.
Files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.io
import scipy.signal

from ..config import DEAP_EEG_CHANNELS, DREAMER_EEG_CHANNELS
from .cache import atomic_dir, cache_key, cache_root, remove_stale_tmp, staged_files
from .deap import FACE_SUFFIX, atomic_write, save_deap_subject, save_face_features
from .dreamer import dreamer_struct
from .synthetic_coupling import (AFFECT_COUPLING, DRIVE, FACE_AU_COUPLING, FACE_GAIN, FELT_STATE, LATENTS,
                                 MODALITY_LAGS, NOISE, REPORT_NOISE_SD, RESPONSE_SMOOTHING_S, SUBJECT_SPREAD)

#: Bump when the generator's output changes (part of the ensure_synthetic cache key).
GENERATOR_VERSION = 2

#: Text header of the synthetic DREAMER.mat (MAT v5 files start with 116 bytes of free text).
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by himoe-fast (synthetic DREAMER)"

V, A, D, L = (LATENTS.index(n) for n in ("valence", "arousal", "dominance", "liking"))   # latent axis order

#: 17 OpenFace action units and their weights ``[17, 4]`` on (valence, arousal, dominance, liking).
FACE_AUS = tuple(FACE_AU_COUPLING)
_FACE_W = np.array([[FACE_AU_COUPLING[au].get(n, 0.0) for n in LATENTS] for au in FACE_AUS], dtype=np.float32)
FACE_FPS = 25.0


# ------------------------------------------------------------------------------------ noise helpers
def _spectral_noise(rng: np.random.Generator, shape: tuple[int, ...], n: int, fs: float,
                    exponent: float = 0.0, band: tuple[float, float] | None = None) -> np.ndarray:
    """Gaussian noise ``[*shape, n]`` (float32, unit RMS) with power ``~ 1/f**exponent``, optionally
    restricted to ``band`` (Hz, 0.5 Hz cosine edges). Made in the frequency domain, one irfft."""
    nf = n // 2 + 1
    f = np.fft.rfftfreq(n, 1.0 / fs).astype(np.float32)
    gain = np.ones(nf, np.float32)
    if exponent:
        gain /= np.maximum(f, 0.5) ** (exponent / 2)
    if band is not None:
        lo, hi = band
        edge = 0.5
        rise = np.clip((f - (lo - edge)) / (2 * edge), 0, 1) if lo > 0 else np.ones_like(f)
        fall = np.clip(((hi + edge) - f) / (2 * edge), 0, 1)
        gain *= (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    if band is None or band[0] > 0:
        gain[0] = 0.0
    live = np.flatnonzero(gain > 0)          # only draw the bins that pass (band noise is cheap)
    i0, i1 = (int(live[0]), int(live[-1]) + 1) if live.size else (0, 0)
    spec = np.zeros((*shape, nf), np.complex64)
    part = np.empty((*shape, i1 - i0), np.complex64)
    rng.standard_normal(out=part.view(np.float32), dtype=np.float32)
    spec[..., i0:i1] = part * gain[i0:i1]
    x = scipy.fft.irfft(spec, n, axis=-1, workers=1).astype(np.float32, copy=False)
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float32), dtype=np.float64))
    return x / np.float32(rms if rms > 0 else 1.0)


def _delay(x: np.ndarray, k: int) -> np.ndarray:
    """Shift along the last axis by ``k >= 0`` samples (the first value is held)."""
    if k <= 0:
        return x
    y = np.empty_like(x)
    k = min(k, x.shape[-1])
    y[..., k:] = x[..., : x.shape[-1] - k]
    y[..., :k] = x[..., :1]
    return y


def _smooth(x: np.ndarray, fs: float, tau_s: float) -> np.ndarray:
    """First-order low-pass (time constant ``tau_s``) along the last axis, started at steady state."""
    a = float(np.exp(-1.0 / (tau_s * fs)))
    zi = a * x[..., :1]
    y, _ = scipy.signal.lfilter([1.0 - a], [1.0, -a], x, axis=-1, zi=zi)
    return y.astype(np.float32, copy=False)


def _event_train(rng: np.random.Generator, rate: np.ndarray, fs: float, size: np.ndarray,
                 kernel: np.ndarray) -> np.ndarray:
    """Poisson events with time-varying ``rate`` (1/s, ``[..., n]``) and per-event ``size``
    (same shape), each drawn as ``kernel``; returns ``[..., n]``."""
    hits = rng.random(rate.shape, dtype=np.float32) < rate / fs
    impulses = np.where(hits, size, 0.0).astype(np.float32)
    k = kernel.reshape((1,) * (rate.ndim - 1) + (-1,))
    return scipy.signal.fftconvolve(impulses, k, mode="full", axes=-1)[..., : rate.shape[-1]].astype(np.float32)


def _wrapped_bump(phase: np.ndarray, center: float, width: float) -> np.ndarray:
    d = np.mod(phase - center + np.pi, 2 * np.pi) - np.pi
    return np.exp(-0.5 * np.square(d / width))


@lru_cache(maxsize=16)
def _neighbours(channels: tuple[str, ...], sigma_m: float) -> np.ndarray:
    """``[C, C]`` row-normalised Gaussian weights of the other channels on MNE's 10-05 template
    positions (zero diagonal; zeros if a name is unknown)."""
    try:
        import mne

        names = mne.channels.get_builtin_montages()        # template names changed in MNE 1.13
        kind = next(k for k in ("spherical_1005", "colin27_1005", "standard_1005") if k in names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pos = mne.channels.make_standard_montage(kind).get_positions()["ch_pos"]
        xyz = np.stack([pos[c] for c in channels])
    except Exception:  # pragma: no cover - montage names are standard
        return np.zeros((len(channels), len(channels)), np.float32)
    d2 = np.square(xyz[:, None, :] - xyz[None, :, :]).sum(-1)
    k = np.exp(-d2 / (2 * sigma_m**2))
    np.fill_diagonal(k, 0.0)
    return (k / np.maximum(k.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def _volume_conduction(channels: tuple[str, ...]) -> np.ndarray:
    """``[C, C]`` mixing: 60% own source + 40% of the neighbours (sigma 3.5 cm)."""
    return (0.6 * np.eye(len(channels)) + 0.4 * _neighbours(channels, 0.035)).astype(np.float32)


def _regional(rng: np.random.Generator, shape: tuple[int, ...], channels: tuple[str, ...], sd: float) -> np.ndarray:
    """Spatially smooth random field over the channels, ``[*shape, C]`` with per-channel SD ~ ``sd``:
    neighbouring channels share it, so regional contrasts (such as frontal asymmetry) are noisy too."""
    C = len(channels)
    k = 0.3 * np.eye(C) + 0.7 * _neighbours(channels, 0.05)
    z = rng.normal(0.0, 1.0, (*shape, C)) @ k.T
    return (sd * z / np.sqrt(np.square(k).sum(1))).astype(np.float32)


# ------------------------------------------------------------------------------------ affect model
@dataclass
class _Subject:
    reactivity: float
    mood: np.ndarray          # tonic valence/arousal offset [2]
    lag_jitter: dict
    iaf: float                # individual alpha frequency, Hz
    band_gain: np.ndarray     # [4] theta/alpha/beta/gamma
    hr: float                 # resting heart rate, bpm
    resp_rate: float          # Hz
    scl: float                # skin conductance level, uS
    temp: float               # skin temperature, C
    blink_rate: float         # 1/s
    face_bias: np.ndarray     # [17]
    eeg_effects: np.ndarray   # [4 bands, 1, 4 latents] how strongly this subject's EEG shows each effect


def _subject(rng: np.random.Generator) -> _Subject:
    """A subject's traits drawn from ``SUBJECT_SPREAD`` (the draw order is part of the files)."""
    sp = SUBJECT_SPREAD
    return _Subject(
        reactivity=float(rng.uniform(*sp["reactivity"])),
        mood=rng.normal(*sp["mood"][1:], 2).astype(np.float32),
        lag_jitter={k: float(rng.uniform(*sp["lag_jitter"])) for k in MODALITY_LAGS},
        iaf=float(rng.uniform(*sp["alpha_peak_hz"])),
        band_gain=np.exp(rng.normal(*sp["band_gain"][1:], 4)).astype(np.float32),
        hr=float(rng.uniform(*sp["heart_rate_bpm"])),
        resp_rate=float(rng.uniform(*sp["resp_rate_hz"])),
        scl=float(rng.uniform(*sp["skin_conductance_us"])),
        temp=float(rng.uniform(*sp["skin_temp_c"])),
        blink_rate=float(rng.uniform(*sp["blink_rate_hz"])),
        face_bias=rng.normal(*sp["face_bias"][1:], len(FACE_AUS)).astype(np.float32),
        eeg_effects=rng.uniform(*sp["eeg_effect_gain"], (4, 1, 4)).astype(np.float32),
    )


def _felt_states(rng: np.random.Generator, n_trials: int) -> np.ndarray:
    """``[n_trials, 4]`` felt (valence, arousal, dominance, liking) in [-1, 1], quadrant design."""
    fs = FELT_STATE
    quadrants = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float32) * fs["quadrant"]
    q = quadrants[rng.permutation(np.arange(n_trials) % 4)]
    v = np.clip(q[:, 0] + rng.normal(0, fs["quadrant_sd"], n_trials), -1, 1)
    a = np.clip(q[:, 1] + rng.normal(0, fs["quadrant_sd"], n_trials), -1, 1)
    d = np.clip(fs["dominance_from_valence"] * v + fs["dominance_from_arousal"] * a
                + rng.normal(0, fs["dominance_sd"], n_trials), -1, 1)
    lk = np.clip(fs["liking_from_valence"] * v + fs["liking_from_arousal"] * a
                 + rng.normal(0, fs["liking_sd"], n_trials), -1, 1)
    return np.stack([v, a, d, lk], 1).astype(np.float32)


def _drive(rng: np.random.Generator, felt: np.ndarray, subj: _Subject, n: int, fs: float,
           onset_s: float) -> np.ndarray:
    """Affective drive over time, ``[n_trials, 4, n]``: zero before onset, then a ramp-in with slow
    fluctuations and a few peaks, scaled by the felt state and the subject's reactivity."""
    n_trials = felt.shape[0]
    t = np.arange(n, dtype=np.float32) / np.float32(fs)
    after = np.clip(t - onset_s, 0.0, None)[None, :]
    tau = rng.uniform(*DRIVE["ramp_tau_s"], (n_trials, 1)).astype(np.float32)
    ramp = (1.0 - np.exp(-after / tau)) * (after > 0)
    slow = _spectral_noise(rng, (n_trials, 2), n, fs, band=(0.0, 0.1))
    dur = max(n / fs - onset_s, 1.0)
    centers = onset_s + rng.uniform(0.2, 0.9, (n_trials, 2, 1)) * dur
    widths = rng.uniform(*DRIVE["peak_width_s"], (n_trials, 2, 1))
    peaks = np.exp(-0.5 * np.square((t[None, None, :] - centers) / widths)).sum(1).astype(np.float32)
    intensity = ramp * (1.0 + DRIVE["slow"] * slow[:, 0] + DRIVE["peaks"] * peaks)
    drive = felt[:, :, None] * (subj.reactivity * intensity)[:, None, :]
    drive[:, A] += DRIVE["arousal_wander"] * ramp * slow[:, 1]              # arousal wanders on its own
    drive[:, :2] += subj.mood[None, :, None]              # tonic mood (also in the baseline)
    return drive.astype(np.float32)


def _lagged(drive: np.ndarray, family: str, subj: _Subject, fs: float) -> np.ndarray:
    """The drive as signal ``family`` sees it: delayed by its (jittered) lag, smoothed where the
    coupling table gives the family a response time constant."""
    x = _delay(drive, int(round(MODALITY_LAGS[family] * subj.lag_jitter[family] * fs)))
    tau_s = RESPONSE_SMOOTHING_S.get(family)
    return _smooth(x, fs, tau_s) if tau_s else x


# ------------------------------------------------------------------------------------ signal models
_BANDS = ("theta", "alpha", "beta", "gamma")


def _eeg_weights(channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Band base amplitudes ``[4, C]`` and affect weights ``[4, C, 4]`` (log-amplitude per unit)."""
    idx = {c: i for i, c in enumerate(channels)}
    pick = lambda names: [idx[c] for c in names if c in idx]  # noqa: E731
    left_front = pick(("Fp1", "AF3", "F3", "F7", "FC5"))
    right_front = pick(("Fp2", "AF4", "F4", "F8", "FC6"))
    posterior = pick(("P3", "P7", "PO3", "O1", "Oz", "Pz", "P4", "P8", "PO4", "O2"))
    temporal = pick(("T7", "T8", "CP5", "CP6", "FC5", "FC6", "P7", "P8"))
    midline = pick(("Fz", "FC1", "FC2", "Cz", "AF3", "AF4", "F3", "F4"))
    C = len(channels)
    base = np.array([[0.8] * C, [1.0] * C, [0.5] * C, [0.25] * C], np.float32)
    base[1, posterior] += 1.0
    base[0, midline] += 0.4
    w = np.zeros((4, C, 4), np.float32)
    c = AFFECT_COUPLING
    w[1, :, A] = c["eeg_alpha"]["arousal"]
    w[1, left_front, V] = c["eeg_alpha_left_frontal"]["valence"]
    w[1, right_front, V] = c["eeg_alpha_right_frontal"]["valence"]
    w[0, midline, A] = c["eeg_theta_midline"]["arousal"]
    w[0, midline, D] = c["eeg_theta_midline"]["dominance"]
    w[2, :, A] = c["eeg_beta"]["arousal"]
    w[3, :, A] = c["eeg_gamma"]["arousal"]
    w[3, temporal, V] = c["eeg_gamma_temporal"]["valence"]
    return base, w


def _eeg(rng, drive, subj, fs, channels) -> np.ndarray:
    """EEG in uV, ``[n_trials, C, n]``."""
    n_trials, _, n = drive.shape
    C = len(channels)
    lat = _lagged(drive, "eeg", subj, fs)
    base, w = _eeg_weights(channels)
    w = w * subj.eeg_effects
    # nuisance: per-trial band levels (shared and per channel) and slow within-trial level drifts,
    # i.e. state changes unrelated to the ratings
    nuisance = (rng.normal(0.0, NOISE["eeg_trial_band_sd"], (n_trials, 4, 1))
                + _regional(rng, (n_trials, 4), tuple(channels), NOISE["eeg_regional_sd"])
                )[..., None].astype(np.float32)                                            # [t, 4, C, 1]
    drift = NOISE["eeg_drift"] * _spectral_noise(rng, (n_trials, 4), n, fs, band=(0.0, 0.05))
    bands = {"theta": (4.0, 7.5), "alpha": (subj.iaf - 1.5, subj.iaf + 1.5), "beta": (14.0, 30.0),
             "gamma": (30.0, 45.0)}
    gains = np.exp(rng.normal(0.0, NOISE["eeg_channel_gain_sd"], C)).astype(np.float32)
    x = _spectral_noise(rng, (n_trials, C), n, fs, exponent=1.0) * NOISE["eeg_background"]
    for b, name in enumerate(_BANDS):
        log_amp = np.tensordot(lat, w[b], axes=([1], [1])).transpose(0, 2, 1)        # [t, C, n]
        env = np.exp(log_amp + nuisance[:, b] + drift[:, b, None, :])
        env *= (base[b] * subj.band_gain[b])[None, :, None]
        x += env * _spectral_noise(rng, (n_trials, C), n, fs, band=bands[name])
    x = np.tensordot(_volume_conduction(tuple(channels)), x, axes=([1], [1])).transpose(1, 0, 2)
    return x * (8.0 * gains)[None, :, None]


def _eog(rng, drive, subj, fs) -> np.ndarray:
    """hEOG, vEOG in uV, ``[n_trials, 2, n]``."""
    n_trials, _, n = drive.shape
    a = _lagged(drive, "eog", subj, fs)[:, A]
    kt = np.arange(int(0.5 * fs), dtype=np.float32) / fs
    blink = np.exp(-0.5 * np.square((kt - 0.15) / 0.05))
    veog = _event_train(rng, subj.blink_rate * np.exp(AFFECT_COUPLING["eog_blink_rate"]["arousal"] * a), fs,
                        rng.normal(150.0, 30.0, a.shape).astype(np.float32), blink)
    steps = _event_train(rng, 0.8 * np.exp(AFFECT_COUPLING["eog_saccade_rate"]["arousal"] * a), fs,
                         rng.normal(0.0, 30.0, a.shape).astype(np.float32), np.ones(1, np.float32))
    heog = scipy.signal.lfilter([1.0], [1.0, -0.995], steps, axis=-1).astype(np.float32)
    drift = _spectral_noise(rng, (n_trials, 2), n, fs, exponent=2.0) * 10.0
    return np.stack([heog, veog], 1) + drift + 3.0 * _spectral_noise(rng, (n_trials, 2), n, fs, exponent=1.0)


def _emg(rng, drive, subj, fs) -> np.ndarray:
    """Zygomaticus, trapezius EMG in uV, ``[n_trials, 2, n]``."""
    n_trials, _, n = drive.shape
    lat = _lagged(drive, "emg", subj, fs)
    zyg, trap = AFFECT_COUPLING["emg_zygomaticus"], AFFECT_COUPLING["emg_trapezius"]
    env = np.stack([np.exp(zyg["valence"] * lat[:, V] + zyg["liking"] * lat[:, L]),
                    np.exp(trap["arousal"] * lat[:, A] + trap["dominance"] * lat[:, D])], 1)
    carrier = _spectral_noise(rng, (n_trials, 2), n, fs, band=(20.0, min(60.0, fs / 2 - 1)))
    t = np.arange(n, dtype=np.float32) / fs
    line = 1.0 * np.sin(2 * np.pi * 50.0 * t[None, None, :] + rng.uniform(0, 2 * np.pi, (n_trials, 2, 1)))
    return 3.0 * env * carrier + line.astype(np.float32) + _spectral_noise(rng, (n_trials, 2), n, fs, exponent=1.0)


def _gsr_ohm(rng, drive, subj, fs) -> np.ndarray:
    """Skin resistance in Ohm, ``[n_trials, n]`` (conductance rises with arousal)."""
    n_trials, _, n = drive.shape
    a = _lagged(drive, "gsr", subj, fs)[:, A]
    kt = np.arange(int(15 * fs), dtype=np.float32) / fs
    scr = np.exp(-kt / 2.0) - np.exp(-kt / 0.75)
    scr /= scr.max()
    sizes = (0.06 * subj.scl * np.exp(rng.normal(0.0, 0.4, a.shape))
             * np.exp(AFFECT_COUPLING["gsr_response_size"]["arousal"] * a)).astype(np.float32)
    phasic = _event_train(rng, 0.04 * np.exp(AFFECT_COUPLING["gsr_response_rate"]["arousal"] * a), fs, sizes, scr)
    drift = 0.03 * subj.scl * _spectral_noise(rng, (n_trials,), n, fs, exponent=2.0)
    conductance = subj.scl * np.exp(AFFECT_COUPLING["gsr_level"]["arousal"] * a) + phasic + drift             # uS
    return 1e6 / np.maximum(conductance, 0.2 * subj.scl)


def _breathing(rng, drive, subj, fs) -> tuple[np.ndarray, np.ndarray]:
    """(respiration belt signal, respiration phase), both ``[n_trials, n]``."""
    n_trials, _, n = drive.shape
    a = _lagged(drive, "resp", subj, fs)[:, A]
    rate = (subj.resp_rate * np.exp(AFFECT_COUPLING["resp_rate"]["arousal"] * a)
            + 0.02 * _spectral_noise(rng, (n_trials,), n, fs, band=(0.0, 0.1)))
    phase = 2 * np.pi * np.cumsum(rate, axis=-1, dtype=np.float64) / fs + rng.uniform(0, 2 * np.pi, (n_trials, 1))
    depth = 400.0 * np.exp(AFFECT_COUPLING["resp_depth"]["arousal"] * a)
    belt = depth * (np.sin(phase) + 0.25 * np.sin(2 * phase + 0.8))
    belt += 80.0 * _spectral_noise(rng, (n_trials,), n, fs, exponent=2.0) + 10.0 * rng.standard_normal((n_trials, n))
    return belt.astype(np.float32), phase.astype(np.float32)


def _cardiac_phase(rng, drive, subj, fs, resp_phase) -> tuple[np.ndarray, np.ndarray]:
    """(cardiac phase in radians, arousal seen by the heart), ``[n_trials, n]`` each."""
    n_trials, _, n = drive.shape
    lat = _lagged(drive, "heart", subj, fs)
    bpm = AFFECT_COUPLING["heart_rate_bpm"]
    hr = (subj.hr + bpm["arousal"] * lat[:, A] + bpm["valence"] * lat[:, V] + 3.0 * np.sin(resp_phase)
          + 2.0 * _spectral_noise(rng, (n_trials,), n, fs, band=(0.0, 0.15)))
    phase = 2 * np.pi * np.cumsum(hr / 60.0, axis=-1, dtype=np.float64) / fs + rng.uniform(0, 2 * np.pi, (n_trials, 1))
    return phase, lat[:, A]


def _ppg(rng, drive, subj, fs, resp_phase) -> np.ndarray:
    n_trials, _, n = drive.shape
    phase, a = _cardiac_phase(rng, drive, subj, fs, resp_phase)
    pulse = _wrapped_bump(phase, 1.2, 0.35) + 0.45 * _wrapped_bump(phase, 2.6, 0.4)
    amp = 1000.0 * np.exp(AFFECT_COUPLING["ppg_amplitude"]["arousal"] * a)
    out = amp * pulse + 150.0 * np.sin(resp_phase) + 20.0 * rng.standard_normal((n_trials, n))
    return out.astype(np.float32)


def _ecg(rng, drive, subj, fs, resp_phase) -> np.ndarray:
    """Two ECG leads with DC offsets, wander and 50 Hz, ``[n_trials, 2, n]``."""
    n_trials, _, n = drive.shape
    phase, _ = _cardiac_phase(rng, drive, subj, fs, resp_phase)
    waves = ((-0.9, 0.12, 0.15), (-0.12, 0.04, -0.12), (0.0, 0.05, 1.0), (0.12, 0.04, -0.25), (1.4, 0.25, 0.3))
    beat = sum(amp * _wrapped_bump(phase, np.pi + c, w) for c, w, amp in waves)
    leads = np.stack([beat, 0.7 * beat], 1) * 400.0
    t = np.arange(n, dtype=np.float32) / fs
    offsets = rng.normal(2000.0, 150.0, (n_trials, 2, 1))
    line = 8.0 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi, (n_trials, 2, 1)))
    wander = 60.0 * np.sin(resp_phase)[:, None, :]
    noise = 8.0 * _spectral_noise(rng, (n_trials, 2), n, fs, exponent=1.0)
    return (leads + offsets + line + wander + noise).astype(np.float32)


def _temperature(rng, drive, subj, fs) -> np.ndarray:
    n_trials, _, n = drive.shape
    a = _lagged(drive, "temp", subj, fs)[:, A]
    t = np.arange(n, dtype=np.float32) / fs
    slope = rng.normal(0.0, 0.15, (n_trials, 1)) / 60.0
    out = (subj.temp + slope * t + AFFECT_COUPLING["temp_c"]["arousal"] * a
           + 0.02 * _spectral_noise(rng, (n_trials,), n, fs, exponent=2.0))
    return (out + 0.003 * rng.standard_normal((n_trials, n))).astype(np.float32)


def _face(rng, drive, subj, fs, missing_p: float = NOISE["face_missing_p"]) -> list[np.ndarray | None]:
    """Per trial ``[n_frames, 17]`` AU intensities at 25 fps (``None`` = not recorded)."""
    n_trials, _, n = drive.shape
    lat = _lagged(drive, "face", subj, fs)
    frames = np.arange(int(n / fs * FACE_FPS))
    lat = lat[:, :, np.minimum(np.round(frames / FACE_FPS * fs).astype(int), n - 1)]     # [n_trials, 4, F]
    z = subj.face_bias[None, :, None] + FACE_GAIN * np.einsum("jk,tkf->tjf", _FACE_W, lat)
    au = np.logaddexp(0.0, z) + NOISE["face_au_sd"] * rng.standard_normal(z.shape)
    au = np.clip(au, 0.0, 5.0).transpose(0, 2, 1).astype(np.float64)
    recorded = rng.random(n_trials) >= missing_p
    return [au[k] if recorded[k] else None for k in range(n_trials)]


# ------------------------------------------------------------------------------------ subjects
def _rng(seed: int, subject: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(subject)]))


def synthetic_deap_subject(seed: int, subject: int, *, n_trials: int = 40, trial_s: float = 63.0,
                           face: bool = False) -> tuple[np.ndarray, np.ndarray, list | None]:
    """One synthetic DEAP subject.

    Returns:
        ``data`` float64 ``[n_trials, 40, round(trial_s * 128)]`` (first 3 s baseline), ``labels``
        float64 ``[n_trials, 4]`` on 1-9 with two decimals, and the per-trial face arrays (or None).
    """
    if trial_s <= 3.0:
        raise ValueError(f"trial_s must exceed the 3 s baseline, got {trial_s}")
    fs = 128.0
    n = int(round(trial_s * fs))
    rng = _rng(seed, subject)
    subj = _subject(rng)
    felt = _felt_states(rng, n_trials)
    report = np.clip(felt + rng.normal(0.0, REPORT_NOISE_SD["deap"], felt.shape), -1, 1)
    labels = np.round(np.clip(5.0 + 4.0 * report, 1.0, 9.0), 2).astype(np.float64)
    drive = _drive(rng, felt, subj, n, fs, onset_s=3.0)

    data = np.empty((n_trials, 40, n), np.float64)
    data[:, :32] = _eeg(rng, drive, subj, fs, DEAP_EEG_CHANNELS)
    data[:, 32:34] = _eog(rng, drive, subj, fs)
    data[:, 34:36] = _emg(rng, drive, subj, fs)
    data[:, 36] = _gsr_ohm(rng, drive, subj, fs)
    belt, resp_phase = _breathing(rng, drive, subj, fs)
    data[:, 37] = belt
    data[:, 38] = _ppg(rng, drive, subj, fs, resp_phase)
    data[:, 39] = _temperature(rng, drive, subj, fs)
    faces = _face(rng, drive, subj, fs) if face else None
    return data, labels, faces


def write_synthetic_deap(out_dir: str | os.PathLike, n_subjects: int = 32, seed: int = 0, *,
                         n_trials: int = 40, trial_s: float = 63.0,
                         face_dir: str | os.PathLike | None = None) -> Path:
    """Write ``out_dir/s01.dat`` ... in DEAP's ``data_preprocessed_python`` format.

    Args:
        out_dir: folder to write into (created).
        n_subjects: number of subject files.
        seed: generator seed; the same seed writes identical files.
        n_trials, trial_s: trials per subject and seconds per trial including the 3 s baseline;
            the defaults (40, 63 s -> ``[40, 40, 8064]``) are DEAP's. Smaller values are for tests.
        face_dir: also write face features, ``face_dir/sNN_face.npz`` (17 AUs at 25 fps, ~10% of
            trials missing), in their own folder as :mod:`.deap` documents.

    Files are staged beside the folders and moved in when all are written, so ``out_dir`` never
    holds a temporary or partial file.

    Returns:
        ``out_dir`` as a Path.
    """
    if n_subjects < 1 or n_trials < 1:
        raise ValueError("n_subjects and n_trials must be >= 1")
    out = Path(out_dir)
    face = face_dir is not None
    apart = face and Path(face_dir).resolve() != out.resolve()     # the earlier layout puts both in one folder
    with staged_files(out) as data_tmp, (staged_files(face_dir) if apart else nullcontext(data_tmp)) as face_tmp:
        for s in range(n_subjects):
            data, labels, faces = synthetic_deap_subject(seed, s, n_trials=n_trials, trial_s=trial_s, face=face)
            save_deap_subject(data_tmp / f"s{s + 1:02d}.dat", data, labels)
            if faces is not None:
                save_face_features(face_tmp / f"s{s + 1:02d}{FACE_SUFFIX}", faces, FACE_FPS)
    return out


def synthetic_face_dir(deap_dir: str | os.PathLike) -> Path:
    """The face-feature folder of a synthetic DEAP set written by :func:`ensure_synthetic` with
    ``face=True`` (``<entry>/deap`` holds the subject files, ``<entry>/face`` the face features)."""
    return Path(deap_dir).parent / "face"


def synthetic_dreamer_subject(seed: int, subject: int, *, n_trials: int = 18,
                              clip_s: tuple[float, float] = (60.0, 120.0), baseline_s: float = 61.0) -> dict:
    """One synthetic DREAMER subject as plain arrays (time-major like the .mat file).

    Returns:
        dict with ``eeg``/``eeg_baseline`` (lists of ``[n, 14]`` at 128 Hz), ``ecg``/``ecg_baseline``
        (lists of ``[n, 2]`` at 256 Hz), ``scores`` ``[n_trials, 3]`` integers 1-5, ``age``, ``gender``.
    """
    rng = _rng(seed, 10_000 + subject)
    subj = _subject(rng)
    felt = _felt_states(rng, n_trials)
    report = np.clip(felt[:, :3] + rng.normal(0.0, REPORT_NOISE_SD["dreamer"], (n_trials, 3)), -1, 1)
    scores = np.clip(np.round(3.0 + 2.0 * report), 1, 5).astype(np.float64)
    lengths = rng.uniform(clip_s[0], clip_s[1], n_trials)
    out: dict = {"scores": scores, "age": int(rng.integers(22, 34)), "gender": ("male", "female")[int(rng.integers(2))]}
    for part, dur, f in (("", float(lengths.max()), felt), ("_baseline", baseline_s, np.zeros_like(felt))):
        channels: dict[str, np.ndarray] = {}
        for name, fs in (("eeg", 128.0), ("ecg", 256.0)):
            n = int(round(dur * fs))
            drive = _drive(rng, f, subj, n, fs, onset_s=0.0)
            if name == "eeg":
                x = _eeg(rng, drive, subj, fs, DREAMER_EEG_CHANNELS)
                x += rng.normal(4200.0, 80.0, (n_trials, 14, 1)).astype(np.float32)       # Emotiv DC offset
                t = np.arange(n, dtype=np.float32) / fs
                x += 3.0 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi, (n_trials, 14, 1))).astype(np.float32)
            else:
                _, resp_phase = _breathing(rng, drive, subj, fs)
                x = _ecg(rng, drive, subj, fs, resp_phase)
            keep = np.round((lengths if part == "" else np.full(n_trials, baseline_s)) * fs).astype(int)
            channels[name] = [np.ascontiguousarray(x[k, :, : keep[k]].T, dtype=np.float64) for k in range(n_trials)]
        out["eeg" + part], out["ecg" + part] = channels["eeg"], channels["ecg"]
    return out


def write_synthetic_dreamer(path: str | os.PathLike, n_subjects: int = 23, seed: int = 0, *,
                            n_trials: int = 18, clip_s: tuple[float, float] = (60.0, 120.0),
                            baseline_s: float = 61.0) -> Path:
    """Write a ``DREAMER.mat`` with the real nested layout (``scipy.io.savemat``, MATLAB v5).

    Args:
        path: the .mat file to write (parent folders are created).
        n_subjects: entries of ``DREAMER.Data``.
        seed: generator seed; the same seed writes identical files.
        n_trials: clips per subject (DREAMER: 18).
        clip_s: range of clip lengths in seconds (real clips: 65-393 s; shorter by default to keep
            the file small; the layout is the same).
        baseline_s: length of every baseline clip (DREAMER: 61 s).
    """
    if n_subjects < 1 or n_trials < 1:
        raise ValueError("n_subjects and n_trials must be >= 1")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    subjects = [synthetic_dreamer_subject(seed, s, n_trials=n_trials, clip_s=clip_s, baseline_s=baseline_s)
                for s in range(n_subjects)]
    struct = dreamer_struct(subjects)

    def write(f) -> None:
        scipy.io.savemat(f, {"DREAMER": struct}, do_compression=False, oned_as="column")
        # savemat stamps its 116-byte text header with the platform and the write time; a fixed text
        # makes the file identical per seed (MATLAB and scipy only show this text, they never parse it)
        f.seek(0)
        f.write(MAT_HEADER_TEXT.ljust(116, b" "))
        f.seek(0, os.SEEK_END)

    return atomic_write(p, write)


def ensure_synthetic(kind: str = "deap", n_subjects: int = 8, seed: int = 0,
                     root: str | os.PathLike | None = None, **options) -> Path:
    """Write a synthetic data set once into the cache and return it.

    Args:
        kind: ``"deap"`` or ``"dreamer"``.
        n_subjects, seed: as for the writers.
        root: cache root (default ``$HIMOE_FAST_CACHE`` or ``~/.cache/himoe-fast``).
        **options: extra writer keywords (``n_trials``, ``trial_s``...), and ``face=True`` (DEAP):
            also write face features, into :func:`synthetic_face_dir` of the returned folder.

    Returns:
        the DEAP folder (``.../s01.dat`` ...) or the ``DREAMER.mat`` path. The folder
        ``<root>/synthetic/<kind>-n<N>-seed<S>-g<generator version>[-<options hash>]`` is built under
        a temporary name and renamed into place, so concurrent callers never see half a data set.
    """
    if kind not in ("deap", "dreamer"):
        raise ValueError(f"kind must be 'deap' or 'dreamer', got {kind!r}")
    face = bool(options.pop("face", False))
    if face and kind != "deap":
        raise ValueError("face features exist for DEAP only")
    name = f"{kind}-n{int(n_subjects)}-seed{int(seed)}-g{GENERATOR_VERSION}"
    if options or face:       # face entries: subject files and face features in two folders
        name += "-" + cache_key({**options, **({"face": True, "layout": "face-folder"} if face else {})}, 10)
    base = cache_root(root) / "synthetic"
    final = base / name
    target = final / "DREAMER.mat" if kind == "dreamer" else final / "deap" if face else final
    if final.is_dir():
        return target
    remove_stale_tmp(base)
    with atomic_dir(final) as tmp:
        if kind == "deap" and face:
            write_synthetic_deap(tmp / "deap", n_subjects, seed, face_dir=tmp / "face", **options)
        elif kind == "deap":
            write_synthetic_deap(tmp, n_subjects, seed, **options)
        else:
            write_synthetic_dreamer(tmp / "DREAMER.mat", n_subjects, seed, **options)
    return target


__all__ = ["write_synthetic_deap", "write_synthetic_dreamer", "ensure_synthetic", "synthetic_deap_subject",
           "synthetic_face_dir",
           "synthetic_dreamer_subject", "GENERATOR_VERSION", "MODALITY_LAGS", "FACE_AUS", "FACE_FPS"]
