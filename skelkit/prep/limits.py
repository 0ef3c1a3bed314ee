"""Size limits of raw input, in a module of its own so the command line reads them without
importing the formats (numpy, numba)."""

from __future__ import annotations

DEFAULT_MAX_FILE_MB = 256.0
"""Raw files above this many MB (10^6 bytes) are skipped unread. The largest genuine files are a
few MB: NTU RGB+D ``.skeleton`` files hold at most a few hundred frames (0.4 MB for a
one-body 100-frame file here) and a PKU-MMD video's skeleton text about 10 MB; 256 MB is
25 times the largest and keeps a crafted or sparse multi-GB file from being read."""


def max_file_bytes(max_file_mb: float | None) -> int | None:
    """``--max-file-mb`` in bytes; None (no limit) for None or a value <= 0."""
    if max_file_mb is None or max_file_mb <= 0:
        return None
    return int(max_file_mb * 1e6)
