"""The store room: layouts, the store schema, store and embedding-file I/O."""

from skelkit.store.embeddings import EmbeddingGroup, read_embeddings, write_embeddings
from skelkit.store.errors import EmbeddingFileError, StoreError
from skelkit.store.layout import KINECT20, LAYOUTS, NTU25, Layout, TorsoNormal, get_layout, register_layout
from skelkit.store.reader import Store, open_store
from skelkit.store.schema import MODALITIES
from skelkit.store.writer import SampleBatch, StoreWriter

__all__ = [
    "KINECT20", "LAYOUTS", "MODALITIES", "NTU25", "EmbeddingFileError", "EmbeddingGroup", "Layout",
    "SampleBatch", "Store", "StoreError", "StoreWriter", "TorsoNormal", "get_layout",
    "open_store", "read_embeddings", "register_layout", "write_embeddings",
]
