"""The coupling table of the synthetic generator (:mod:`.synthetic`): how strongly each signal
carries each affect dimension, how subjects differ, how the felt state is rated, response lags and
noise levels. Changing a number here changes the generated files: bump
:data:`~.synthetic.GENERATOR_VERSION` with it.

Units. The *drive* of a latent (valence, arousal, dominance, liking) is the felt state in
``[-1, 1]`` times the subject's reactivity and the within-trial intensity (:func:`~.synthetic._drive`),
delayed by the signal's lag and optionally smoothed. A coupling weight multiplies that drive:

* ``log``-scale features (band amplitudes, event rates, EMG envelopes, breathing rate and depth,
  pulse amplitude, skin conductance): ``exp(weight * drive)``, i.e. a weight of 0.35 scales the
  feature by ``e^0.35 = 1.42`` at a drive of +1;
* linear features: heart rate in beats per minute, skin temperature in degrees C per unit drive.

All numbers are Python floats on purpose: numpy treats them as weak scalars, so float32 signals
stay float32 (an ``np.float64`` here would promote them and change every file).
"""

from __future__ import annotations

#: Latent order of the felt state and the drive (index 0..3).
LATENTS = ("valence", "arousal", "dominance", "liking")

# ---------------------------------------------------------------------------------------- affect
#: Signal feature -> {latent: weight} (see the module docstring for units). EEG region names are
#: the 10-20 groups of :func:`~.synthetic._eeg_weights`; each subject scales each EEG (band, latent)
#: effect by a gain from ``SUBJECT_SPREAD["eeg_effect_gain"]``.
AFFECT_COUPLING: dict[str, dict[str, float]] = {
    "eeg_alpha":                 {"arousal": -0.35},                      # alpha drops with arousal
    "eeg_alpha_left_frontal":    {"valence": -0.35},                      # frontal alpha asymmetry ...
    "eeg_alpha_right_frontal":   {"valence": 0.35},                       # ... (approach vs withdrawal)
    "eeg_theta_midline":         {"arousal": 0.2, "dominance": -0.3},     # frontal midline theta
    "eeg_beta":                  {"arousal": 0.35},
    "eeg_gamma":                 {"arousal": 0.4},
    "eeg_gamma_temporal":        {"valence": 0.25},
    "eog_blink_rate":            {"arousal": 0.5},
    "eog_saccade_rate":          {"arousal": 0.3},
    "emg_zygomaticus":           {"valence": 0.8, "liking": 0.2},         # smiling muscle
    "emg_trapezius":             {"arousal": 0.6, "dominance": -0.2},     # shoulder tension
    "gsr_level":                 {"arousal": 0.3},                        # tonic skin conductance
    "gsr_response_rate":         {"arousal": 1.2},                        # phasic responses per s
    "gsr_response_size":         {"arousal": 0.4},
    "resp_rate":                 {"arousal": 0.25},
    "resp_depth":                {"arousal": -0.2},
    "heart_rate_bpm":            {"arousal": 7.0, "valence": -2.0},       # linear, beats per minute
    "ppg_amplitude":             {"arousal": -0.25},                      # vasoconstriction
    "temp_c":                    {"arousal": -0.35},                      # linear, degrees C
}

#: Face action units (OpenFace names) -> {latent: weight} on the AU intensity's pre-activation
#: (times ``FACE_GAIN``, then a softplus). Unlisted latents weigh 0.
FACE_AU_COUPLING: dict[str, dict[str, float]] = {
    "AU01": {"valence": -0.1, "arousal": 0.5},       # inner brow raiser
    "AU02": {"arousal": 0.4},                        # outer brow raiser
    "AU04": {"valence": -0.6, "arousal": 0.1},       # brow lowerer
    "AU05": {"arousal": 0.5},                        # upper lid raiser
    "AU06": {"valence": 0.6, "liking": 0.1},         # cheek raiser
    "AU07": {"valence": -0.3, "arousal": 0.2},       # lid tightener
    "AU09": {"valence": -0.4},                       # nose wrinkler
    "AU10": {"valence": -0.3},                       # upper lip raiser
    "AU12": {"valence": 0.8, "liking": 0.2},         # lip corner puller (smile)
    "AU14": {"valence": 0.2},                        # dimpler
    "AU15": {"valence": -0.5},                       # lip corner depressor
    "AU17": {"valence": -0.3, "dominance": -0.2},    # chin raiser
    "AU20": {"valence": -0.2, "arousal": 0.3},       # lip stretcher
    "AU23": {"dominance": 0.3},                      # lip tightener
    "AU25": {"arousal": 0.4},                        # lips part
    "AU26": {"arousal": 0.3},                        # jaw drop
    "AU45": {"arousal": 0.3},                        # blink
}
FACE_GAIN = 1.5

# ---------------------------------------------------------------------------------------- timing
#: Response lag of each signal family to the felt state, seconds (before the per-subject jitter).
MODALITY_LAGS: dict[str, float] = {"eeg": 0.2, "emg": 0.5, "face": 0.8, "eog": 1.0, "heart": 2.0, "resp": 2.5,
                                   "gsr": 3.0, "temp": 6.0}
#: Time constant (s) of the first-order smoothing of the lagged drive, per signal family (others: none).
RESPONSE_SMOOTHING_S: dict[str, float] = {"gsr": 4.0, "resp": 2.0, "heart": 2.0, "temp": 12.0}

# ---------------------------------------------------------------------------------------- subjects
#: Per-subject traits: ``(low, high)`` of a uniform draw, or ``("normal", mean, sd)`` /
#: ``("lognormal", 0, sd)`` (``exp`` of a normal draw).
SUBJECT_SPREAD: dict[str, tuple] = {
    "reactivity": (0.6, 1.4),                  # scales the whole affective drive
    "mood": ("normal", 0.0, 0.15),             # tonic valence/arousal offset (also in the baseline)
    "lag_jitter": (0.8, 1.25),                 # multiplies each family's lag
    "alpha_peak_hz": (9.0, 11.0),              # individual alpha frequency
    "band_gain": ("lognormal", 0.0, 0.25),     # theta/alpha/beta/gamma amplitude
    "heart_rate_bpm": (60.0, 80.0),            # resting heart rate
    "resp_rate_hz": (0.2, 0.3),                # resting breathing rate
    "skin_conductance_us": (2.0, 10.0),        # skin conductance level
    "skin_temp_c": (30.5, 34.0),
    "blink_rate_hz": (0.15, 0.4),
    "face_bias": ("normal", -1.0, 0.5),        # per-AU resting pre-activation
    "eeg_effect_gain": (0.3, 1.5),             # per (band, latent): how visible each EEG effect is
}

# ---------------------------------------------------------------------------------------- ratings
#: The felt state of a trial: the valence/arousal quadrant design (centres at +-``quadrant``, plus
#: ``quadrant_sd`` noise), dominance and liking as weighted valence/arousal plus noise.
FELT_STATE: dict[str, float] = {
    "quadrant": 0.55, "quadrant_sd": 0.3,
    "dominance_from_valence": 0.45, "dominance_from_arousal": -0.1, "dominance_sd": 0.35,
    "liking_from_valence": 0.65, "liking_from_arousal": 0.15, "liking_sd": 0.3,
}
#: SD of the report noise added to the felt state before it becomes a rating (in [-1, 1] units).
REPORT_NOISE_SD: dict[str, float] = {"deap": 0.2, "dreamer": 0.15,
                                     "recordings": 0.2}   # continuous ratings: on their 1-9 scale

#: Within-trial intensity: ramp-in time constant (s, uniform), slow fluctuation and peak weights,
#: arousal's own wander, peak widths (s, uniform).
DRIVE: dict[str, float | tuple[float, float]] = {
    "ramp_tau_s": (4.0, 12.0), "slow": 0.3, "peaks": 0.5, "arousal_wander": 0.15, "peak_width_s": (3.0, 8.0),
}

# ---------------------------------------------------------------------------------------- noise
#: Nuisance and measurement noise (units of the signal unless said otherwise).
NOISE: dict[str, float] = {
    "eeg_trial_band_sd": 0.3,        # per-trial band level changes unrelated to affect (log amplitude)
    "eeg_regional_sd": 0.35,         # spatially smooth per-trial band level changes (log amplitude)
    "eeg_drift": 0.2,                # slow within-trial band level drift (log amplitude, < 0.05 Hz)
    "eeg_channel_gain_sd": 0.2,      # per-channel gain (log)
    "eeg_background": 0.8,           # 1/f background relative to the oscillations
    "face_au_sd": 0.15,              # AU intensity noise
    "face_missing_p": 0.1,           # share of trials without a face recording
}

__all__ = ["LATENTS", "AFFECT_COUPLING", "FACE_AU_COUPLING", "FACE_GAIN", "MODALITY_LAGS", "RESPONSE_SMOOTHING_S",
           "SUBJECT_SPREAD", "FELT_STATE", "REPORT_NOISE_SD", "DRIVE", "NOISE"]
