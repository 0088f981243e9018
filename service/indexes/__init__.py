"""Derived indexes (avatar hashes, bio vectors, name keys), keyed on the store's profile ids.

The FAISS backend is imported lazily by `IndexSet`, so importing this package stays cheap.
"""

from service.indexes.base import BinaryIndex, FloatIndex
from service.indexes.index_set import IndexSet, Manifest, RWLock
from service.indexes.ngram import NgramIndex

__all__ = ["BinaryIndex", "FloatIndex", "IndexSet", "Manifest", "NgramIndex", "RWLock"]
