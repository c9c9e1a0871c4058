"""``himoe-fast train / eval / robustness / synth / doctor``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor() -> None:
        """Show torch / triton / CUDA status."""
        import torch

        typer.echo(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
        try:
            import triton

            typer.echo(f"triton {triton.__version__}")
        except Exception as exc:  # pragma: no cover - depends on the machine
            typer.echo(f"triton unavailable: {exc}")
