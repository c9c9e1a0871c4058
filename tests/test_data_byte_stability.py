"""Synthetic files and prepared window caches stay byte-identical across refactors of the data code.

``tests/data/synthetic_digests.json`` holds the SHA-256 (:func:`file_digest`) of every file of a tiny synthetic DEAP (with
face features), DREAMER and recordings set and of the window-cache arrays ``prepare_windows``
writes for them. It was written by :func:`tiny_set_digests` before the data layer was split into
per-dataset adapters, so it is an independent record of the bytes the earlier code produced.

The bytes depend on the CPU code paths numpy dispatches to (its float32 ``exp``/``log`` differ
between x86 baseline and AVX2), so the file holds one digest set per platform tag
(:func:`platform_tag`: machine and numpy's active SIMD dispatch targets) with the library versions;
a platform without a stored set is skipped with its tag named. A mismatch means a change in
produced bytes: if it is intended (a new generator or preprocessing version), bump
``GENERATOR_VERSION`` / ``PREPROCESS_VERSION`` / ``WINDOWS_VERSION`` and regenerate the file with
``python tests/test_data_byte_stability.py NOTE`` (once per platform, e.g. with
``NPY_DISABLE_CPU_FEATURES="AVX512_ICL X86_V4 X86_V3"`` for the x86 baseline).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import warnings
from pathlib import Path

import pytest

DIGESTS = Path(__file__).parent / "data" / "synthetic_digests.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes; for an ``.npz``, of its members' names and bytes in name order: the
    zip container around them differs between Python patch releases (3.11.2 and 3.11.7 write
    different zip64 extra fields), the arrays it holds do not."""
    if path.suffix != ".npz":
        return _sha(path.read_bytes())
    import zipfile

    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode() + b"\0" + z.read(name))
    return h.hexdigest()


def tiny_set_digests(root: Path) -> dict[str, str]:
    """Write the tiny sets under ``root`` and return ``{relative name: sha256}`` of every produced file
    (cache entries by data set and array name: their folder names hold a key of file paths)."""
    from himoe_fast.config import HiMoEConfig
    from himoe_fast.data import prepare_windows, recordings_config, write_synthetic_deap, write_synthetic_dreamer
    from himoe_fast.data.synthetic_recordings import write_synthetic_recordings

    write_synthetic_deap(root / "deap", 2, seed=0, n_trials=2, trial_s=8.0, face_dir=root / "face")
    write_synthetic_dreamer(root / "dreamer" / "DREAMER.mat", 1, seed=0, n_trials=2, clip_s=(6.0, 8.0), baseline_s=3.0)
    write_synthetic_recordings(root / "rec", 1, seed=0, n_recordings=4, recording_s=20.0)
    out = {str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}

    cache = root / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = {
            "deap": prepare_windows("deap", root / "deap", HiMoEConfig.deap(modalities=("eeg", "gsr", "ppg", "face")),
                                    cache_dir=cache, progress=False, face_dir=root / "face", lags={"gsr": 1.0},
                                    random_lags={"eeg": 0.5}, lag_seed=1),
            "dreamer": prepare_windows("dreamer", root / "dreamer", HiMoEConfig.dreamer(), cache_dir=cache,
                                       progress=False),
            "recordings": prepare_windows("recordings", root / "rec", recordings_config(root / "rec"),
                                          cache_dir=cache, progress=False),
        }
    for name, wd in runs.items():
        for f in sorted(Path(wd.meta["cache_path"]).glob("*.npy")):
            out[f"windows/{name}/{f.name}"] = _sha(f.read_bytes())
    return out


def _versions() -> dict[str, str]:
    import mne
    import numpy
    import scipy

    return {"numpy": numpy.__version__, "scipy": scipy.__version__, "mne": mne.__version__}


def platform_tag() -> str:
    """``machine:targets``: the CPU architecture and the SIMD targets numpy dispatches to here."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        targets = "+".join(t for t in __cpu_dispatch__ if __cpu_features__.get(t)) or "baseline"
    except ImportError:                                   # numpy moved its private module
        targets = "unknown"
    return f"{platform.machine()}:{targets}"


def test_tiny_synthetic_sets_and_window_caches_are_byte_identical(tmp_path):
    stored = json.loads(DIGESTS.read_text())
    tag = platform_tag()
    sets = [s for s in stored["sets"] if tag in s["platforms"]]
    if not sets:
        pytest.skip(f"no stored digests for platform {tag!r} (stored: {[s['platforms'] for s in stored['sets']]})")
    want = sets[0]
    got = tiny_set_digests(tmp_path)
    assert sorted(got) == sorted(want["sha256"]), "a different set of files was produced"
    changed = sorted(k for k in got if got[k] != want["sha256"][k])
    assert not changed, (f"bytes changed for {changed} (digests made with {want['versions']}, "
                         f"running {_versions()} on {tag})")


if __name__ == "__main__":       # add this platform's digests (only before a refactor or for an intended change)
    import tempfile

    stored = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {"sets": []}
    with tempfile.TemporaryDirectory() as tmp:
        digests = tiny_set_digests(Path(tmp))
    tag = platform_tag()
    for s in stored["sets"]:
        if tag in s["platforms"]:
            s["platforms"].remove(tag)
    stored["sets"] = [s for s in stored["sets"] if s["platforms"]]
    same = [s for s in stored["sets"] if s["sha256"] == digests and s["versions"] == _versions()]
    if same:
        same[0]["platforms"].append(tag)
    else:
        stored["sets"].append({"platforms": [tag], "versions": _versions(), "sha256": digests})
    if len(sys.argv) > 1:
        stored["note"] = sys.argv[1]
    DIGESTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(f"{DIGESTS}: digests for {tag}")
