"""CLI conventions shared by every command.

Bad input -- a wrong flag value, a missing or corrupt data file, an impossible GPU count -- ends with
one line ``himoe-fast: error: ...`` on stderr and exit code 2, never a traceback (:func:`fail`,
:func:`user_errors`). Results are printed with rich tables.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn, Sequence

import typer

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line and exit (code 2 = bad input)."""
    typer.echo(f"himoe-fast: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's bad-input exceptions into :func:`fail`."""
    from himoe_fast.data import DatasetError
    from himoe_fast.train.distributed import DistributedError

    try:
        yield
    except DatasetError as exc:
        fail(str(exc).splitlines()[0])
    except DistributedError as exc:
        fail(str(exc).splitlines()[0], code=1 if "failed" in str(exc) or "exited" in str(exc) else EXIT_USAGE)
    except FileNotFoundError as exc:
        fail(str(exc).splitlines()[0])
    except KeyboardInterrupt:
        typer.echo("himoe-fast: interrupted", err=True)
        raise typer.Exit(130)


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
