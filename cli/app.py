"""``himoe-fast``: the root typer app; each command group lives in its own module with its own ``app``.

* ``train_cmds``: train, eval, plots -- one run: train it, evaluate it, draw Fig. 2 / 4a;
* ``sweep_cmds``: robustness, ablate, asynchrony, compare -- many runs: the paper's tables and ours;
* ``data_cmds``: synth -- synthetic data in the real file formats;
* ``fast_cmds``: parity, bench, doctor -- the fast path against the reference, and the machine;
* ``predict_cmds``: predict, stream -- trained models on new recordings, offline or live.

Shared pieces: :mod:`.choices` (choice flags as Enums from the library's constants), :mod:`.options`
(option aliases and the CLI's own defaults), :mod:`.run_config` (flags -> RunConfig), :mod:`.common`
(checks of flag values) and :mod:`.errors` (the one error handler: ``himoe-fast: error: ...``, exit 2).
"""

from __future__ import annotations

import typer

from . import data_cmds, fast_cmds, predict_cmds, sweep_cmds, train_cmds
from .errors import CleanErrorsGroup

app = typer.Typer(cls=CleanErrorsGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hi-MoE for multimodal emotion recognition (reference + fast path).")
for group in (train_cmds, sweep_cmds, data_cmds, fast_cmds, predict_cmds):
    app.add_typer(group.app)        # no name: the group's commands sit directly under himoe-fast


def main() -> None:
    """The console script ``himoe-fast``."""
    app()


if __name__ == "__main__":
    main()
