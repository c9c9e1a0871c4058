"""Checks and parsers of flag values that typer's types do not cover (ranges, lists, output paths).

Each refuses a bad value with :func:`~.errors.fail`: one line naming the flag, exit code 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .errors import fail


def check_min(flag: str, value: float | None, lo: float = 1) -> None:
    """One-line error unless ``value`` (when given) is at least ``lo``."""
    if value is not None and value < lo:
        fail(f"{flag} must be >= {lo:g}, got {value}")


def check_range(flag: str, value: float | None, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """One-line error unless ``value`` is a finite number in the range (NaN and inf never pass)."""
    if value is None:
        return
    ok = math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        if lo is not None and hi is not None:
            want = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            want = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            want = "a finite number" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        fail(f"{flag} must be {want}, got {value}")


def check_out(path: Path | None, flag: str = "--out") -> None:
    """``path`` must be (or become) a folder under a writable parent; checked before any work."""
    from himoe_fast.train.rundir import check_out_dir

    if path is not None:
        check_out_dir(path, flag)


def check_output_file(path: Path | None, flag: str) -> None:
    """``path`` must be a file that can be written (its folder exists or can be made, and is writable)."""
    if path is None:
        return
    if path.is_dir():
        fail(f"{flag} {path}: is a folder, expected a file name")
    check_out(path.parent, flag)     # the file is replaced by a rename, so its folder must be writable


def parse_list(value: str | None, flag: str, cast=str) -> list | None:
    """``"a,b,c"`` -> ``[a, b, c]`` (cast), with a one-line error naming ``flag``."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        fail(f"{flag} needs a comma-separated list, got {value!r}")
    try:
        return [cast(v) for v in items]
    except ValueError:
        fail(f"{flag}: cannot read {value!r} as a list of {cast.__name__}")


def parse_choices(value: str | None, flag: str, options: Sequence[str]) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``, each one of ``options`` (a list flag, so not an Enum option)."""
    items = parse_list(value, flag)
    for item in items or []:
        if item not in options:
            fail(f"{flag} must be one of {', '.join(options)} (got {item!r})")
    return items


def parse_seeds(value: str | None, flag: str = "--seeds") -> list[int] | None:
    """``"0,1,2"`` -> ``[0, 1, 2]``; seeds are >= 0."""
    seeds = parse_list(value, flag, int)
    if seeds and min(seeds) < 0:
        fail(f"{flag} must be >= 0, got {min(seeds)}")
    return seeds


def parse_lags(values: Sequence[str] | None) -> dict[str, float]:
    """``["gsr=2.5", "eeg=0"]`` -> ``{"gsr": 2.5, "eeg": 0.0}``."""
    lags: dict[str, float] = {}
    for item in values or []:
        name, sep, sec = item.partition("=")
        try:
            if not sep:
                raise ValueError
            lags[name.strip()] = float(sec)
        except ValueError:
            fail(f"--lag expects MODALITY=SECONDS, got {item!r}")
        if not math.isfinite(lags[name.strip()]):
            fail(f"--lag {item}: the lag must be a finite number of seconds")
    return lags
