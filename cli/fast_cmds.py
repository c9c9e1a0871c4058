"""``himoe-fast bench`` and ``himoe-fast parity`` (fast path vs reference)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def bench() -> None:
        """Benchmark the fast path against the reference (not available yet)."""
        typer.echo("himoe-fast bench: the fast path is not available yet", err=True)
        raise typer.Exit(1)

    @app.command()
    def parity() -> None:
        """Check the fast path against the reference (not available yet)."""
        typer.echo("himoe-fast parity: the fast path is not available yet", err=True)
        raise typer.Exit(1)
