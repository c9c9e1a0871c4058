"""The ``himoe-fast`` command line (typer), importable as ``himoe_fast.cli``."""
