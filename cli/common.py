"""CLI conventions shared by every command.

Bad input -- a wrong flag value, a missing or corrupt data file, an impossible GPU count -- ends with
one line ``himoe-fast: error: ...`` on stderr and exit code 2, never a traceback (:func:`fail`,
:func:`user_errors`). Results are printed with rich tables.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn, Sequence

import typer

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line and exit (code 2 = bad input)."""
    typer.echo(f"himoe-fast: error: {' '.join(str(message).split())}", err=True)   # always one line
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's error types into one line: bad input (:class:`~himoe_fast.errors.UserInputError`,
    which includes ``DatasetError``) exits with 2, a failed worker rank with 1. Classified by type only."""
    from himoe_fast.errors import UserInputError
    from himoe_fast.train.distributed import DistributedError

    try:
        yield
    except UserInputError as exc:
        fail(str(exc))
    except DistributedError as exc:          # a rank failed (bad GPU counts are UserInputErrors)
        fail(str(exc), code=1)
    except FileNotFoundError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("himoe-fast: interrupted", err=True)
        raise typer.Exit(130)


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
        with user_errors():
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


def choice(value: str, flag: str, options: Sequence[str]) -> str:
    if value not in options:
        fail(f"{flag} must be one of {', '.join(options)} (got {value!r})")
    return value


@contextmanager
def sweep_progress(description: str, total: int) -> Iterator:
    """Progress of a sweep of ``total`` runs; yields ``advance(message)``, called once per finished run.

    On a terminal: a live rich bar showing the last message. Elsewhere (logs, pipes), where a bar is
    only drawn once at the end, one line ``[i/total] message`` per run instead.
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    done = 0
    with Progress(console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def advance(message: str) -> None:
            nonlocal done
            done += 1
            bar.update(task, advance=1, description=message)
            if not console.is_terminal:
                console.print(f"[{done}/{total}] {message}", highlight=False, markup=False)

        yield advance


def main_with_clean_errors(app: typer.Typer) -> None:
    """Run ``app``; click's own usage errors (unknown flag, bad type) also become one line, exit 2."""
    try:
        rv = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("himoe-fast: aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        # click.UsageError (typer vendors click as typer._click in recent releases): duck-typed
        if hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == EXIT_USAGE:
            typer.echo(f"himoe-fast: error: {exc.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)
