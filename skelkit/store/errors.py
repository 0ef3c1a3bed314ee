"""Errors of the store room; each carries one line a user can act on."""


class StoreError(Exception):
    """A store is missing, incomplete or does not follow the schema."""


class EmbeddingFileError(Exception):
    """An embedding HDF5 file is missing or does not follow docs/design.md §4.4."""
