"""The CLI's one error handler.

Bad input -- a wrong flag value, a missing or corrupt data file, an impossible GPU count -- ends with
one line ``himoe-fast: error: ...`` on stderr and exit code 2, never a traceback. Errors are told
apart by type only:

* click's usage errors (unknown flag, a value that is not a number or not one of the choices);
* :class:`~himoe_fast.errors.UserInputError` and its subclasses (``DatasetError``, ``SettingsError``,
  ``CheckpointError``, ...), raised by the library and by :func:`fail` for a flag the CLI checks;
* ``FileNotFoundError`` / ``FileExistsError`` naming a path the user gave;
* :class:`~himoe_fast.train.distributed.DistributedError`: a worker rank failed (exit code 1);
* Ctrl-C: ``himoe-fast: interrupted``, exit code 130.

:class:`CleanErrorsGroup` is the click group class of the root app (``typer.Typer(cls=...)``), so the
console script, ``python -m himoe_fast.cli.app`` and ``typer.testing.CliRunner`` behave the same.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from himoe_fast.errors import UserInputError, one_line
from himoe_fast.train.distributed import DistributedError

try:                                    # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as _click_exceptions
except ImportError:                     # older typer runs on click itself
    from click import exceptions as _click_exceptions

ClickException = _click_exceptions.ClickException
#: no arguments at all: the help is shown, and the exit code is the usage error's
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", ())

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: object) -> NoReturn:
    """Refuse a flag value: the handler prints ``himoe-fast: error: <message>`` and exits with 2."""
    raise UserInputError(message)


def _error(message: object, code: int) -> NoReturn:
    typer.echo(f"himoe-fast: error: {one_line(message)}", err=True)
    raise typer.Exit(code)


class CleanErrorsGroup(TyperGroup):
    """A typer group whose commands end with one line and an exit code instead of a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the chosen command; the library's error types become one line (see the module)."""
        try:
            return super().invoke(ctx)
        except UserInputError as exc:             # before DistributedError: a bad GPU count is both
            _error(exc, EXIT_USAGE)
        except (FileNotFoundError, FileExistsError) as exc:
            _error(exc, EXIT_USAGE)
        except DistributedError as exc:
            _error(exc, EXIT_FAILED)
        except KeyboardInterrupt:
            typer.echo("himoe-fast: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra: Any):
        """click's own usage errors (unknown flag or command, bad type or choice) also become one line."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:          # the help text is the message (rich prints it itself)
            if exc.format_message():
                typer.echo(exc.format_message(), err=True)
            rv = exc.exit_code
        except ClickException as exc:
            typer.echo(f"himoe-fast: error: {one_line(exc.format_message())}", err=True)
            rv = exc.exit_code
        except typer.Abort:
            typer.echo("himoe-fast: aborted", err=True)
            rv = EXIT_INTERRUPTED
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)
