"""``himoe-fast synth``: synthetic data written in the real file formats (DEAP, DREAMER, recordings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import choices as ch
from .common import check_min, check_out, check_output_file
from .errors import fail

app = typer.Typer()

#: a small set by default (the generators' own defaults write the real data sets' subject counts)
SYNTH_SUBJECTS = 4


@app.command()
def synth(
    kind: Annotated[ch.FileFormat, typer.Option(help="file format to write")] = ch.FileFormat.deap,
    subjects: Annotated[int, typer.Option(help="number of subjects to write")] = SYNTH_SUBJECTS,
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    out: Annotated[Path, typer.Option(help="DEAP, recordings: output folder; DREAMER: output .mat path")] = Path("synthetic"),
    face_dir: Annotated[Optional[Path], typer.Option(help="DEAP: also write face features (sNN_face.npz) "
                                                          "into this folder")] = None,
) -> None:
    """Write synthetic data in the exact DEAP / DREAMER file formats."""
    from himoe_fast.data import write_synthetic_deap, write_synthetic_dreamer, write_synthetic_recordings

    check_min("--seed", seed, 0)
    if face_dir is not None and kind != ch.FileFormat.deap:
        fail("--face-dir applies to --kind deap")
    if kind == ch.FileFormat.recordings:          # own layout: several MNE files per recording, continuous ratings
        check_min("--subjects", subjects)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            fail(f"--out {out}: already exists and is not an empty folder")
        path = write_synthetic_recordings(out, subjects, seed)
        typer.echo(f"wrote synthetic recordings ({subjects} subjects, seed {seed}) to {path}")
        return
    check_min("--subjects", subjects)
    target = out / "DREAMER.mat" if kind == ch.FileFormat.dreamer and out.suffix != ".mat" else out
    if kind == ch.FileFormat.deap or target != out:
        check_out(out)
    check_output_file(target if kind == ch.FileFormat.dreamer else None, "--out")
    check_out(face_dir, "--face-dir")
    if kind == ch.FileFormat.deap:
        path = write_synthetic_deap(out, subjects, seed, face_dir=face_dir)
    else:
        path = write_synthetic_dreamer(target, subjects, seed)
    typer.echo(f"wrote synthetic {kind.upper()} ({subjects} subjects, seed {seed}) to {path}")
