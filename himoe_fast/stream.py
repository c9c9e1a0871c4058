"""Streaming inference: feed samples per modality as they arrive, get one prediction per window.

:class:`StreamPredictor` takes chunks of samples of each modality with their timestamps (each
modality at its own rate and timing; one may start late, stop early or never come) and emits one
:class:`StreamPrediction` per completed window, with the present-mask it used.

Timing
    Time 0 is ``t0`` (default: the timestamp of the first sample pushed). Sample ``i`` of modality
    ``m`` at time ``t`` lands on grid index ``g = round((t - t0) * sfreq_m)``; window ``w`` covers
    grid indices ``[round(w * stride * sfreq_m), ... + S_m)`` of every modality, as offline.
    A window is *complete* when every modality has delivered samples up to its end, or when the
    newest sample of any modality is ``max_delay_s`` past its end: a modality that is late by more
    than that, stopped or never started is absent there, so no window ever waits longer than
    ``max_delay_s`` for a missing modality. A modality is present in a window when at least
    :data:`~himoe_fast.data.recordings.MIN_COVERAGE` of its samples arrived and are finite.

Causal preprocessing (:class:`CausalFilter`)
    The offline pipeline filters whole recordings forwards and backwards and z-scores with a
    subject's statistics, which a stream cannot do. Here each modality goes through a causal
    Butterworth filter (order 4, sections) with the same pass band and notch as the offline filter
    table (:mod:`himoe_fast.data.preprocess`), started at steady state on the first sample, then a
    running z-score per channel over everything received up to the window's end (a per-user
    calibration that converges to the subject statistics), clipped like offline. Samples that are
    NaN are fed to the filter as the last finite value and count as unrecorded.

Causal model use
    The prediction for window ``t`` is the model's output at the last position of the sequence of
    the (up to) ``T`` windows ending at ``t`` -- the definition of :mod:`himoe_fast.predict`; a model
    without temporal stage needs only window ``t`` itself.

Memory is constant: per modality a ring of ``capacity_s`` seconds of samples and running sums;
``T`` windows of context. :meth:`StreamPredictor.reset` forgets everything.
:func:`predict_signals` runs the very same windowing and preprocessing offline over whole arrays
(and batches the model), so a stream and an offline run agree window for window.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.signal
import torch

from .config import ModalitySpec
from .data.preprocess import PreprocessConfig
from .data.recordings import MIN_COVERAGE
from .predict import LoadedModels, windows_independent

#: Largest piece of a chunk handled at once (seconds); windows are completed between pieces.
PIECE_S = 0.5


# ------------------------------------------------------------------------------------------ filter
def causal_sos(spec: ModalitySpec, pp: PreprocessConfig, order: int = 4) -> np.ndarray | None:
    """Second-order sections of the causal counterpart of the modality's offline filter (or None)."""
    f = pp.filter_for(spec.name, spec.kind)
    fs = spec.sfreq
    nyq = fs / 2.0
    lo = f.l_freq if f.l_freq is not None and f.l_freq > 0 else None
    hi = f.h_freq if f.h_freq is not None and f.h_freq < nyq else None
    parts = []
    if lo is not None and hi is not None:
        parts.append(scipy.signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos"))
    elif lo is not None:
        parts.append(scipy.signal.butter(order, lo, btype="highpass", fs=fs, output="sos"))
    elif hi is not None:
        parts.append(scipy.signal.butter(order, hi, btype="lowpass", fs=fs, output="sos"))
    if f.notch_applies(pp.line_freq, fs):
        b, a = scipy.signal.iirnotch(pp.line_freq, 30.0, fs=fs)
        parts.append(scipy.signal.tf2sos(b, a))
    return np.concatenate(parts) if parts else None


class CausalFilter:
    """Stateful causal filter of one modality: ``filter(x [C, n], valid [n]) -> y [C, n]`` (float64).

    Chunking does not change the output: filtering ``x`` in one call or in pieces gives the same
    samples. Unrecorded samples are replaced by the last recorded value before filtering.
    """

    def __init__(self, spec: ModalitySpec, pp: PreprocessConfig | None = None):
        self.spec = spec
        self.sos = causal_sos(spec, pp or PreprocessConfig())
        self.reset()

    def reset(self) -> None:
        self.zi: np.ndarray | None = None          # [C, n_sections, 2] once started
        self.last: np.ndarray | None = None        # last recorded input value per channel

    def filter(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        C, n = x.shape
        if n == 0:
            return x.copy()
        if self.last is None:
            if not valid.any():
                return np.zeros_like(x)            # nothing recorded yet: nothing to filter
            first = int(np.argmax(valid))
            self.last = x[:, first].copy()
        # hold the last recorded value over unrecorded samples (vectorised forward fill)
        pos = np.where(valid, np.arange(n), -1)
        np.maximum.accumulate(pos, out=pos)
        held = np.where(pos >= 0, x[:, np.maximum(pos, 0)], self.last[:, None])
        self.last = held[:, -1].copy()
        if self.sos is None:
            return held
        if self.zi is None:                        # steady state at the first value: no start transient
            zi0 = scipy.signal.sosfilt_zi(self.sos)                                    # [n_sections, 2]
            self.zi = zi0[None] * held[:, :1, None]
        y, self.zi = scipy.signal.sosfilt(self.sos, held, axis=-1, zi=self.zi.transpose(1, 0, 2))
        self.zi = self.zi.transpose(1, 0, 2)
        return y


# ------------------------------------------------------------------------------------------ buffer
class _Ring:
    """Samples of one modality on its time grid: filtered values, recorded flags and running sums
    (as of each grid index) in rings of ``cap`` slots."""

    def __init__(self, spec: ModalitySpec, cap: int):
        self.spec, self.cap = spec, int(cap)
        C = spec.channels
        self.values = np.zeros((C, self.cap), np.float64)
        self.valid = np.zeros(self.cap, bool)
        self.cs = np.zeros((C, self.cap), np.float64)
        self.cq = np.zeros((C, self.cap), np.float64)
        self.cn = np.zeros(self.cap, np.int64)
        self.latest = -1                                    # newest grid index written
        self.tot_s, self.tot_q, self.tot_n = np.zeros(C), np.zeros(C), 0

    def write(self, g: np.ndarray, y: np.ndarray, ok: np.ndarray) -> None:
        """Write samples at increasing grid indices ``g > latest`` (indices in between: unrecorded)."""
        if g.size == 0:
            return
        first, last = self.latest + 1, int(g[-1])
        n = last - first + 1
        vals = np.zeros((self.spec.channels, n))
        rec = np.zeros(n, bool)
        vals[:, g - first] = y
        rec[g - first] = ok
        add = np.where(rec, vals, 0.0)
        cs = self.tot_s[:, None] + np.cumsum(add, axis=1)
        cq = self.tot_q[:, None] + np.cumsum(add * add, axis=1)
        cn = self.tot_n + np.cumsum(rec)
        self.tot_s, self.tot_q, self.tot_n = cs[:, -1].copy(), cq[:, -1].copy(), int(cn[-1])
        keep = slice(max(0, n - self.cap), n)              # only the newest cap slots survive
        slots = np.arange(first, last + 1)[keep] % self.cap
        self.values[:, slots], self.valid[slots] = vals[:, keep], rec[keep]
        self.cs[:, slots], self.cq[:, slots], self.cn[slots] = cs[:, keep], cq[:, keep], cn[keep]
        self.latest = last

    def window(self, a: int, S: int, clip: float | None) -> tuple[np.ndarray, float]:
        """Standardised float32 window ``[C, S]`` starting at grid index ``a`` and its recorded fraction."""
        idx = np.arange(a, a + S)
        have = (idx >= 0) & (idx <= self.latest) & (idx > self.latest - self.cap)
        slots = idx % self.cap
        rec = have & self.valid[slots]
        frac = float(rec.mean())
        if not rec.any():
            return np.zeros((self.spec.channels, S), np.float32), frac
        e = min(a + S - 1, self.latest) % self.cap                                  # statistics at the window end
        n = max(int(self.cn[e]), 1)
        mean = self.cs[:, e] / n
        sd = np.sqrt(np.maximum(self.cq[:, e] / n - mean * mean, 0.0))
        sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), sd, 1.0)
        x = (self.values[:, slots] - mean[:, None]) / sd[:, None]
        if clip is not None:
            np.clip(x, -clip, clip, out=x)
        x[:, ~rec] = 0.0
        return x.astype(np.float32), frac


# ------------------------------------------------------------------------------------------ predictor
@dataclass
class StreamPrediction:
    """One completed window.

    ``window``: index since ``t0``; ``start_s``: its start in seconds after ``t0``; ``values``:
    ``[n_targets]`` ratings (or P(high)); ``present``: bool ``[M]`` in the model's modality order;
    ``latency_s``: seconds from the call that completed the window to this prediction.
    """

    window: int
    start_s: float
    values: np.ndarray
    present: np.ndarray
    targets: tuple[str, ...]
    modalities: tuple[str, ...]
    latency_s: float = 0.0

    def as_dict(self) -> dict:
        d = {"window": self.window, "start_s": round(self.start_s, 6)}
        d.update({t: float(v) for t, v in zip(self.targets, self.values)})
        d.update({f"present_{m}": bool(p) for m, p in zip(self.modalities, self.present)})
        return d


class StreamPredictor:
    """Causal, constant-memory streaming inference for a loaded model (or fold ensemble).

    Args:
        loaded: from :func:`himoe_fast.predict.load_models`.
        t0: time 0 of the window grid (default: timestamp of the first sample pushed).
        stride_s: seconds between window starts (default ``cfg.window_s``).
        max_delay_s: longest wait for a modality past a window's end (``inf``: wait until
            :meth:`flush`; used offline).
        preprocess: apply the causal filters and running z-score (False: samples are already
            preprocessed model inputs).
        capacity_s: seconds of samples kept per modality (default: enough for ``max_delay_s``).
        expect: modalities that will be streamed (default all of the model's); the others are
            absent from the start and never waited for.

    Use ``push(name, samples [n, C], timestamps [n] | first_timestamp)`` -> list of predictions
    completed by that chunk; :meth:`flush` at the end; :meth:`reset` to start over.
    """

    def __init__(self, loaded: LoadedModels, *, t0: float | None = None, stride_s: float | None = None,
                 max_delay_s: float = 0.5, preprocess: bool = True, pp: PreprocessConfig | None = None,
                 capacity_s: float | None = None, expect: Sequence[str] | None = None, collect: bool = False):
        self.loaded, self.cfg = loaded, loaded.cfg
        cfg = self.cfg
        self.stride_s = float(cfg.window_s if stride_s is None else stride_s)
        if not self.stride_s > 0:
            raise ValueError(f"stride_s must be > 0, got {stride_s}")
        if not max_delay_s >= 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self.max_delay_s = float(max_delay_s)
        self.preprocess = bool(preprocess)
        self.pp = pp or PreprocessConfig()
        unknown = [m for m in (expect or ()) if m not in cfg.modality_names]
        if unknown:
            raise ValueError(f"expect names modalities the model does not have: {', '.join(unknown)}")
        self.expect = tuple(expect) if expect else cfg.modality_names
        if capacity_s is None:
            capacity_s = (min(self.max_delay_s, 3600.0) if math.isfinite(self.max_delay_s) else 3600.0) \
                + cfg.window_s + 2 * self.stride_s + 2 * PIECE_S + 1.0
        self.capacity_s = float(capacity_s)
        self.independent = all(windows_independent(m) for m in loaded.models)
        self.context = 1 if self.independent else loaded.seq_len
        self.collect = collect
        self._t0_given = t0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all samples, filter states, statistics and context (``t0`` back to its setting)."""
        cfg = self.cfg
        self.t0 = self._t0_given
        self.filters = {s.name: CausalFilter(s, self.pp) for s in cfg.modalities}
        self.rings = {s.name: _Ring(s, math.ceil(self.capacity_s * s.sfreq) + s.samples(cfg.window_s))
                      for s in cfg.modalities}
        self.next_window = 0
        self.clock_s = 0.0                          # newest sample time (after t0) of any modality
        self.history: deque = deque(maxlen=self.context)
        self.collected: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    # ------------------------------------------------------------------ input
    def push(self, name: str, samples: np.ndarray, timestamps: np.ndarray | float) -> list[StreamPrediction]:
        """Add ``samples [n, C]`` of modality ``name`` (time-major, as LSL delivers them) taken at
        ``timestamps [n]`` seconds (or the first sample's time, the rest spaced ``1 / sfreq``).
        Returns the predictions of the windows this chunk completed (in window order)."""
        t_call = time.perf_counter()
        if name not in self.rings:
            raise ValueError(f"unknown modality {name!r}; the model has {', '.join(self.cfg.modality_names)}")
        spec = self.cfg.modality(name)
        x = np.asarray(samples, np.float64)
        if x.ndim == 1 and spec.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != spec.channels:
            raise ValueError(f"{name}: samples must be [n, {spec.channels}], got {list(np.shape(samples))}")
        n = x.shape[0]
        ts = np.asarray(timestamps, np.float64)
        ts = ts + np.arange(n) / spec.sfreq if ts.ndim == 0 else ts
        if ts.shape != (n,):
            raise ValueError(f"{name}: {n} samples but {ts.size} timestamps")
        if n == 0:
            return []
        if self.t0 is None:
            self.t0 = float(ts[0])
        x = x.T                                                                  # [C, n]
        ok = np.isfinite(x).all(0)
        y = self.filters[name].filter(x, ok) if self.preprocess else np.where(ok, x, 0.0)
        g = np.round((ts - self.t0) * spec.sfreq).astype(np.int64)
        out: list[StreamPrediction] = []
        ring = self.rings[name]
        piece = max(1, int(PIECE_S * spec.sfreq))
        for s in range(0, n, piece):
            gs, ys, oks = g[s:s + piece], y[:, s:s + piece], ok[s:s + piece]
            keep = gs > np.maximum.accumulate(np.r_[ring.latest, gs[:-1]])      # strictly increasing, >= 0
            keep &= gs >= 0
            if keep.any():
                ring.write(gs[keep], ys[:, keep], oks[keep])
                self.clock_s = max(self.clock_s, (ring.latest + 1) / spec.sfreq)
            out += self._complete(final=False, t_call=t_call)
        return out

    def flush(self) -> list[StreamPrediction]:
        """Complete every window that ends by the newest sample (end of stream)."""
        return self._complete(final=True, t_call=time.perf_counter())

    # ------------------------------------------------------------------ windows
    def _bounds(self, w: int, spec: ModalitySpec) -> tuple[int, int]:
        a = int(round(w * self.stride_s * spec.sfreq))
        return a, spec.samples(self.cfg.window_s)

    def _ready(self, w: int, final: bool) -> bool:
        end_s = w * self.stride_s + self.cfg.window_s
        if end_s > self.clock_s + 1e-9:
            return False                             # not even the newest modality got there
        if final or self.clock_s >= end_s + self.max_delay_s - 1e-9:
            return True
        for name in self.expect:
            a, S = self._bounds(w, self.cfg.modality(name))
            if self.rings[name].latest < a + S - 1:
                return False
        return True

    def _complete(self, final: bool, t_call: float) -> list[StreamPrediction]:
        out = []
        while self._ready(self.next_window, final):
            out.append(self._emit(self.next_window, t_call))
            self.next_window += 1
        return out

    def _emit(self, w: int, t_call: float) -> StreamPrediction:
        cfg = self.cfg
        clip = self.pp.clip if self.preprocess else None
        inputs, present = {}, np.zeros(cfg.n_modalities, bool)
        for m, spec in enumerate(cfg.modalities):
            a, S = self._bounds(w, spec)
            x, frac = self.rings[spec.name].window(a, S, clip)
            present[m] = frac >= MIN_COVERAGE and spec.name in self.expect
            inputs[spec.name] = x if present[m] else np.zeros_like(x)
        start = w * self.stride_s
        if self.collect:
            self.collected.append((inputs, present))
            return StreamPrediction(w, start, np.full(cfg.n_targets, np.nan, np.float32), present,
                                    tuple(cfg.targets), cfg.modality_names)
        self.history.append((inputs, present))
        values = self._run_model()
        return StreamPrediction(w, start, values, present, tuple(cfg.targets), cfg.modality_names,
                                time.perf_counter() - t_call)

    @torch.inference_mode()
    def _run_model(self) -> np.ndarray:
        dev = self.loaded.device
        ctx = list(self.history)
        inputs = {name: torch.from_numpy(np.stack([c[0][name] for c in ctx])[None]).to(dev)
                  for name in self.cfg.modality_names}
        present = torch.from_numpy(np.stack([c[1] for c in ctx])[None]).to(dev)
        acc = None
        for model in self.loaded.models:
            p = model.predict_scores(model(inputs, present, compute_alignment=False))[0, -1].float()
            acc = p if acc is None else acc + p
        return (acc / len(self.loaded.models)).cpu().numpy()


# ------------------------------------------------------------------------------------------ offline
def predict_signals(loaded: LoadedModels, signals: Mapping[str, tuple[np.ndarray, np.ndarray | float]], *,
                    t0: float | None = None, stride_s: float | None = None, preprocess: bool = True,
                    pp: PreprocessConfig | None = None, batch_size: int = 1024
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The streaming pipeline offline over whole arrays: same windows, preprocessing and causal
    model use as :class:`StreamPredictor`, the model batched.

    Args:
        signals: ``{name: (samples [n, C], timestamps [n] or first timestamp)}`` for the modalities
            that exist (the others are absent).
        t0: time 0 (default: the earliest first timestamp).

    Returns:
        ``(pred [n_windows, n_targets], present [n_windows, M], start_s [n_windows])``.
    """
    from .predict import predict_windows

    firsts = [float(np.ravel(ts)[0]) for _, ts in signals.values() if np.size(ts)]
    if t0 is None:
        t0 = min(firsts) if firsts else 0.0
    longest = max((np.shape(x)[0] / loaded.cfg.modality(n).sfreq for n, (x, _) in signals.items()), default=0.0)
    span = max((float(np.ravel(ts)[0]) - t0 for _, ts in signals.values() if np.size(ts)), default=0.0)
    sp = StreamPredictor(loaded, t0=t0, stride_s=stride_s, max_delay_s=math.inf, preprocess=preprocess, pp=pp,
                         capacity_s=longest + span + 2.0, expect=tuple(signals) or None, collect=True)
    for name, (x, ts) in signals.items():
        sp.push(name, x, ts)
    sp.flush()
    cfg = loaded.cfg
    n = len(sp.collected)
    present = np.array([p for _, p in sp.collected], bool).reshape(n, cfg.n_modalities)
    windows = {s.name: np.stack([c[0][s.name] for c in sp.collected]) if n else
               np.zeros((0, s.channels, s.samples(cfg.window_s)), np.float32) for s in cfg.modalities}
    pred = predict_windows(loaded, windows, present, np.zeros(n, np.int64), batch_size=batch_size)
    return pred, present, np.arange(n) * sp.stride_s


# ------------------------------------------------------------------------------------------ LSL
def lsl_inlets(cfg, match: Mapping[str, str] | None = None, wait_s: float = 2.0) -> dict:
    """Open Lab Streaming Layer inlets for the model's modalities: ``{modality: pylsl.StreamInlet}``.

    A modality takes the stream named in ``match`` (by name or type), else a stream whose type or
    name equals the modality name (case-insensitive). Modalities without a stream are absent.

    Raises:
        ValueError: no stream for any modality, a stream named in ``match`` not found, or a stream
            whose channel count or nominal rate differs from the model's (one line saying which).
    """
    import pylsl

    match = dict(match or {})
    infos = pylsl.resolve_streams(wait_time=wait_s)
    inlets = {}
    for spec in cfg.modalities:
        want = match.get(spec.name, spec.name).lower()
        found = [i for i in infos if want in (i.name().lower(), i.type().lower())]
        if not found:
            if spec.name in match:
                raise ValueError(f"--match {spec.name}={match[spec.name]}: no LSL stream with that name or type "
                                 f"(found: {', '.join(i.name() for i in infos) or 'none'})")
            continue
        info = found[0]
        if info.channel_count() != spec.channels:
            raise ValueError(f"LSL stream {info.name()!r} for {spec.name!r} has {info.channel_count()} channel(s), "
                             f"the model expects {spec.channels}")
        if abs(info.nominal_srate() - spec.sfreq) > 1e-6:
            raise ValueError(f"LSL stream {info.name()!r} for {spec.name!r} is sampled at {info.nominal_srate():g} Hz, "
                             f"the model expects {spec.sfreq:g} Hz")
        inlet = pylsl.StreamInlet(info, max_buflen=60)
        inlet.open_stream(timeout=max(wait_s, 1.0))
        inlets[spec.name] = inlet
    if not inlets:
        raise ValueError(f"no LSL stream matches the model's modalities ({', '.join(cfg.modality_names)}); "
                         f"found: {', '.join(f'{i.name()} ({i.type()})' for i in infos) or 'none'}")
    return inlets


__all__ = ["StreamPredictor", "StreamPrediction", "CausalFilter", "causal_sos", "predict_signals", "lsl_inlets"]
