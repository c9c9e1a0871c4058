"""Test-only helpers importable by the processes tests start (``PYTHONPATH`` includes ``tests/``)."""
