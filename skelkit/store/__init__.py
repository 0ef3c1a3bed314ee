"""The store room: layouts, the store schema, store and embedding-file I/O.

The face hands on only the light names (layouts, errors, the schema's constants), so importing
a layout does not load zarr, pandas and h5py: read and write through ``skelkit.store.reader``,
``skelkit.store.writer`` and ``skelkit.store.embeddings``.
"""

from skelkit.store.errors import EmbeddingFileError, StoreError
from skelkit.store.layout import KINECT20, LAYOUTS, NTU25, Layout, TorsoNormal, get_layout, register_layout
from skelkit.store.schema import FIXED_FRAMES, MAX_BODIES, MODALITIES

__all__ = [
    "FIXED_FRAMES", "KINECT20", "LAYOUTS", "MAX_BODIES", "MODALITIES", "NTU25", "EmbeddingFileError",
    "Layout", "StoreError", "TorsoNormal", "get_layout", "register_layout",
]
