"""Cache folder, cache keys and atomic writes.

* Root: ``root`` argument, else ``$HIMOE_FAST_CACHE``, else ``~/.cache/himoe-fast``.
* Keys: :func:`cache_key` hashes (SHA-256) a JSON rendering of everything that changes the cached
  content; callers pass the identities of the input files (:func:`file_identity`: resolved path,
  size, modification time in ns), every setting, and a code-version constant that is bumped when
  the processing code changes its output.
* Atomicity: :func:`atomic_dir` builds a folder under a temporary name next to its destination and
  renames it into place only when everything inside was written (:func:`staged_files` does the same
  for files added to a folder that exists); on any error the temporary folder
  is removed, so a cache entry is either complete or absent. Concurrent writers of the same entry
  each build their own temporary folder; the first rename wins and the others are discarded.
* Window entries (:func:`read_windows_entry`, :func:`store_windows_entry`): one folder per prepared
  data set, ``win_<i>.npy`` per modality (float32 ``[n, C, S]``, memory-mapped on load), ``labels``,
  ``subject``, ``trial``, ``available`` ``.npy`` and ``meta.json`` (with the key that must match).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..io import cache_root  # noqa: F401  (re-exported: the one cache root lives in himoe_fast.io)
from .errors import DatasetError

TMP_PREFIX = ".tmp-"
STALE_TMP_S = 24 * 3600.0


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a file's content cheaply: resolved path, size and mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(obj: Any, length: int = 24) -> str:
    """Stable hex digest of a JSON-serialisable description (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def remove_stale_tmp(folder: Path, max_age_s: float = STALE_TMP_S) -> None:
    """Delete temporary folders left by killed processes (older than ``max_age_s``)."""
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            try:
                if now - entry.stat().st_mtime > max_age_s:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                pass


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``final`` when the block succeeds.

    If ``final`` already exists when the block ends (another process won the race), the new folder
    is discarded and the existing one kept. On an exception the temporary folder is deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # lost the race: keep the finished entry
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def staged_files(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; when the block succeeds, its files move into
    ``folder`` (one rename each, or one rename of the whole folder when ``folder`` is new).

    Writers of data folders use it so that the folder never holds a temporary or partial file, not
    even after a kill: other readers (which may open every file in it) only ever see finished files.
    """
    folder = Path(folder).resolve()
    if not folder.exists():
        with atomic_dir(folder) as tmp:
            yield tmp
        return
    # beside the folder; inside it (hidden, removed on any error) only where its parent is read-only
    stage_in = folder.parent if os.access(folder.parent, os.W_OK | os.X_OK) else folder
    tmp = stage_in / f"{TMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            os.replace(entry, folder / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



# ------------------------------------------------------------------------------------ window entries
#: The per-window arrays of an entry besides the windows themselves.
WINDOW_ARRAYS = ("labels", "subject", "trial", "available")


def read_windows_entry(folder: Path, names: Sequence[str], key: str) -> dict | None:
    """The entry in ``folder`` if it is complete and made for ``key``: ``{array: ndarray, "windows":
    {modality: memmap}, "meta": dict}``; None when absent, unreadable or stale."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        out = {a: np.load(folder / f"{a}.npy") for a in WINDOW_ARRAYS}
        out["windows"] = {m: np.load(folder / f"win_{i}.npy", mmap_mode="r") for i, m in enumerate(names)}
        out["meta"] = meta
        return out
    except (OSError, ValueError, KeyError):
        return None


def write_windows_entry(tmp: Path, chunks: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray],
                        names: Sequence[str], meta: dict) -> None:
    """Write an entry's files into the (temporary) folder ``tmp``: the per-subject window chunks are
    streamed into one ``.npy`` per modality (the chunk lists are emptied as they are written)."""
    for i, m in enumerate(names):
        parts = chunks[m]
        n = sum(p.shape[0] for p in parts)
        shape = (n, *parts[0].shape[1:]) if parts else (0,)
        out = np.lib.format.open_memmap(tmp / f"win_{i}.npy", mode="w+", dtype=np.float32, shape=shape)
        row = 0
        while parts:
            p = parts.pop(0)
            out[row:row + p.shape[0]] = p
            row += p.shape[0]
        out.flush()
        del out
    for a in WINDOW_ARRAYS:
        np.save(tmp / f"{a}.npy", arrays[a])
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


def store_windows_entry(folder: Path, chunks: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray],
                        names: Sequence[str], meta: dict) -> dict:
    """Write the entry ``folder`` atomically (:func:`atomic_dir`) and return it read back
    (:func:`read_windows_entry`), windows memory-mapped."""
    remove_stale_tmp(folder.parent)
    with atomic_dir(folder) as tmp:
        write_windows_entry(tmp, chunks, arrays, names, meta)
    hit = read_windows_entry(folder, names, meta["key"])
    if hit is None:   # pragma: no cover - only if the folder vanished right after writing
        raise DatasetError(folder, "cache entry could not be read back")
    return hit


__all__ = ["cache_root", "file_identity", "cache_key", "remove_stale_tmp", "atomic_dir", "staged_files",
           "WINDOW_ARRAYS", "read_windows_entry", "write_windows_entry", "store_windows_entry"]
