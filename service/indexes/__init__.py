"""Derived indexes (avatar hashes, bio vectors, name keys), keyed on the store's profile ids.

The vector backends (FAISS, Milvus) are imported lazily by `IndexSet`, so importing this package
stays cheap and an optional backend's missing package is only an error when it is chosen.
"""

from service.indexes.base import BinaryIndex, FloatIndex, NameIndex
from service.indexes.index_set import IndexSet, Manifest, RWLock
from service.indexes.ngram import NgramIndex

__all__ = [
    "BinaryIndex",
    "FloatIndex",
    "IndexSet",
    "Manifest",
    "NameIndex",
    "NgramIndex",
    "RWLock",
]
