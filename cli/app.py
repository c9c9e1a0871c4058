"""``himoe-fast``: train, eval, robustness, asynchrony, bench, parity, synth, doctor, predict, stream.

Commands live in one module per area and register themselves on :data:`app`:
``train_cmds`` (train, eval, robustness, synth, doctor), ``experiment_cmds`` (ablate, plots),
``asynchrony_cmds`` (asynchrony), ``fast_cmds`` (bench, parity) and ``predict_cmds`` (predict, stream).
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hi-MoE for multimodal emotion recognition (reference + fast path).")


def _register() -> None:
    from . import asynchrony_cmds, experiment_cmds, fast_cmds, predict_cmds, train_cmds

    train_cmds.register(app)
    experiment_cmds.register(app)
    asynchrony_cmds.register(app)
    fast_cmds.register(app)
    predict_cmds.register(app)


_register()


def main() -> None:
    from .common import main_with_clean_errors

    main_with_clean_errors(app)


if __name__ == "__main__":
    main()
