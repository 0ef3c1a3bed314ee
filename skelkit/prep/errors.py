"""The one exception every raw-format reader raises on bad input (docs/design.md §6.3)."""

from __future__ import annotations


class RawFormatError(Exception):
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


def _rebuild(reason: str, file: str, line: int) -> RawFormatError:
    return RawFormatError(reason, file=file, line=line)
