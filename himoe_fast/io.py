"""File-system helpers used everywhere: the one atomic writer and the one cache root.

Atomic file writes: write a temp file in the target directory, fsync, rename onto the target.

A killed process therefore never leaves a half-written checkpoint, cache entry, CSV or figure. The
file gets the permissions a plain ``open(path, "w")`` would give it (``0666`` minus the umask), so
others can read run outputs and data files where the umask allows it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The project's cache folder: ``root`` if given, else ``$HIMOE_FAST_CACHE``, else
    ``~/.cache/himoe-fast`` (created on demand by writers, not here). Data windows, synthetic sets,
    the NT-Xent extension builds, self-check verdicts and AOT reports live in sub-folders of it."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("HIMOE_FAST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "himoe-fast"


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file_object)`` on a temp file next to ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())   # mkstemp makes 0600; give the file what open() would
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def current_umask() -> int:
    """The process umask, read without changing it where the system shows it (Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:         # elsewhere: set and restore (process-wide, hence the lock)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON: NaN and +-inf (e.g. a Pearson correlation of constant predictions)
    become ``null``, numpy values plain numbers, paths strings; any reader can parse the file."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def json_safe(o: Any) -> Any:
    """``o`` with numpy values and paths made plain and every non-finite float replaced by None."""
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if hasattr(o, "tolist") and not isinstance(o, (str, bytes)):
        return json_safe(o.tolist())          # numpy arrays and scalars
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Path):
        return str(o)
    if o is None or isinstance(o, (str, int, bool)):
        return o
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
