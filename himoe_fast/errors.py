"""Exception types for bad input, shared by the library and the CLI.

Everything a user can get wrong -- a flag value, a data file, a run folder, a checkpoint -- raises a
subclass of :class:`UserInputError`. Its message is one line that names the flag or file and says
what is wrong (and, where there is one, what to do), so the CLI prints it as
``himoe-fast: error: <message>`` and exits with code 2. The CLI classifies errors by these types,
never by words in their messages.

``UserInputError`` subclasses ``ValueError``, so code that caught ``ValueError`` keeps working.
:class:`himoe_fast.data.DatasetError` (data files) is one of them.
"""

from __future__ import annotations

import os
from pathlib import Path


def one_line(text: object) -> str:
    """Collapse whitespace (newlines included) so a message is always one line."""
    return " ".join(str(text).split())


class UserInputError(ValueError):
    """Bad input from the user: the CLI prints the one-line message and exits with code 2."""

    def __init__(self, message: object = ""):
        super().__init__(one_line(message))


class SettingsError(UserInputError):
    """Settings that cannot work, alone or with the data at hand (e.g. more folds than trials)."""


class ModalityError(SettingsError):
    """A modality list that does not fit the data set or preset (unknown or repeated names)."""


class RunDirError(UserInputError):
    """A run folder (``--out``) that cannot be used as asked: the message says what to do instead."""


class CheckpointError(UserInputError):
    """A file that is not a valid himoe-fast checkpoint, model or run file.

    ``CheckpointError(path, detail)`` renders as
    ``"<path>: not a valid himoe-fast <what> (<detail>)"``.
    """

    def __init__(self, path: str | os.PathLike, detail: str = "", what: str = "checkpoint"):
        self.path, self.detail, self.what = Path(path), one_line(detail), what
        suffix = f" ({self.detail})" if self.detail else ""
        super().__init__(f"{self.path}: not a valid himoe-fast {what}{suffix}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.detail, self.what))


__all__ = ["UserInputError", "SettingsError", "ModalityError", "RunDirError", "CheckpointError", "one_line"]
