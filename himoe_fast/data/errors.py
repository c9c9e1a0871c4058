"""The one exception type of the data layer.

Every problem with a user's files (missing, unreadable, wrong layout, NaN/Inf, labels out of range,
a modality the dataset does not have) raises :class:`DatasetError`. Its message is one line that
names the file and the problem, ``"<path>: <problem>"``, so the CLI can print it and exit with code
2 without a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserInputError


class DatasetError(UserInputError):
    """A dataset file is missing, unreadable or does not match its documented layout.

    ``DatasetError(path, problem)`` renders as ``"<path>: <problem>"``; ``DatasetError(message)``
    (a message that already names the file) is accepted too.

    Attributes:
        path: the offending file or directory (None when only a message was given).
        problem: what is wrong (without the path).
    """

    def __init__(self, path: str | os.PathLike | None, problem: str | None = None):
        if problem is None:
            self.path, self.problem = None, " ".join(str(path).split())
        else:
            self.path = Path(path) if path is not None else None
            self.problem = " ".join(str(problem).split())   # always one line
        super().__init__(f"{self.path}: {self.problem}" if self.path is not None else self.problem)

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.problem) if self.path is not None else (self.problem,))


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``Path(path)`` if it is an existing regular file, else :class:`DatasetError`."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(p, f"{what} not found")
    if p.is_dir():
        raise DatasetError(p, f"is a directory, expected a {what}")
    return p
