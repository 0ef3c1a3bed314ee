"""Errors of the store room; each carries one line a user can act on."""

from skelkit.errors import InputError


class StoreError(InputError):
    """A store is missing, incomplete or does not follow the schema."""


class EmbeddingFileError(InputError):
    """An embedding HDF5 file is missing or does not follow docs/design.md §4.4."""
