"""What ``himoe-fast bench`` reports: :class:`BenchResult`, its JSON file (the schema of DESIGN.md
section 7, written through the package's atomic writer) and the bank's share of the roofline."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from ...io import atomic_write_json
from .measure import roofline_pct
from .rows import Row


@dataclass
class BenchResult:
    gemm_gflops: float       # the roofline: torch.mm GFLOP/s measured in the same run
    device: str              # measure.device_name
    rows: list[Row]
    notes: dict              # B, T, N, backend, threads and what rows add (not in the JSON)

    def to_json(self) -> dict:
        """Exactly the documented schema."""
        return {"gemm_gflops": float(self.gemm_gflops), "device": self.device,
                "rows": [asdict(r) for r in self.rows]}

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)


def write_json(result: BenchResult, path: str | os.PathLike) -> None:
    """Write the documented JSON schema through the package's atomic writer (temporary file in the
    same folder + rename, permissions from the umask)."""
    atomic_write_json(path, result.to_json())


def bank_gflops(result: BenchResult) -> float | None:
    """GFLOP/s of the fast modality bank's fwd+bwd expert GEMMs (``None`` without that row)."""
    row = result.row("modality_bank")
    gflop = result.notes.get("modality_bank_gflop")
    if row is None or not gflop or row.fast_ms <= 0:
        return None
    return gflop / (row.fast_ms / 1e3)


def bank_roofline_pct(result: BenchResult) -> float | None:
    """Fast modality-bank fwd+bwd GEMM rate as % of the machine's ``torch.mm`` GFLOP/s (``None``
    without that row or roofline)."""
    row = result.row("modality_bank")
    if bank_gflops(result) is None or not result.gemm_gflops:
        return None
    return roofline_pct(result.notes["modality_bank_gflop"], row.fast_ms, result.gemm_gflops)
