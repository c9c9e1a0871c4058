"""``himoe-fast``: train, eval, robustness, bench, parity, synth, doctor."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hi-MoE for multimodal emotion recognition (reference + fast path).")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
