"""The bad-input errors of the prep room; each is an :class:`skelkit.errors.InputError`.

``RawFormatError`` is what every raw-format reader raises (a build turns it into one skipped
sample); ``DatasetError`` stops a build before it starts (exit code 2, one line).
"""

from __future__ import annotations

from skelkit.errors import InputError


class RawFormatError(InputError):
    """A raw file that cannot be read: which file, which 1-based line (0 if none), and why."""

    def __init__(self, reason: str, *, file: str = "", line: int = 0) -> None:
        self.reason = reason
        self.file = str(file)
        self.line = int(line)
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.file or "<bytes>"
        if self.line:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"

    def with_file(self, file: str) -> RawFormatError:
        """The same error, now naming the file it came from."""
        return RawFormatError(self.reason, file=str(file), line=self.line)

    def __reduce__(self):  # keeps keyword-only fields across process boundaries (dask workers)
        return (_rebuild, (self.reason, self.file, self.line))

    @property
    def kind(self) -> str:
        """A short kind for the build report's per-reason counts (the reason stays whole)."""
        reason = self.reason.lower()
        for kind, words in _REASON_KINDS:
            if any(w in reason for w in words):
                return kind
        return "raw_format"


_REASON_KINDS = (
    ("non_finite", ("nan value", "infinite value", "non-finite")),
    ("zero_frames", ("zero frames",)),
    ("truncated", ("truncated",)),
    ("joint_count", ("wrong joint count",)),
    ("field_count", ("values, expected",)),
    ("non_numeric", ("non-numeric", "non-integer")),
    ("empty_file", ("empty file",)),
    ("no_bodies", ("no body",)),
)


def _rebuild(reason: str, file: str, line: int) -> RawFormatError:
    return RawFormatError(reason, file=file, line=line)


class DatasetError(InputError):
    """A raw folder or dataset choice that cannot be built at all (exit code 2, one line)."""


class ManifestError(DatasetError):
    """A generic manifest that is unusable as a whole (exit code 2, one line)."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a worker's traceback text stays out of reports)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class BuildError(InputError):
    """A build that cannot start or continue (exit code 2, one line)."""
