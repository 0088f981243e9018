"""Labelled data for the scoring model: a corpus of profiles and labelled account pairs.

Used by the training script and the quality benchmark; not installed with the product.
"""

from training.pairset import Corpus, LabelledPair, ProfileSource, build_corpus

__all__ = ["Corpus", "LabelledPair", "ProfileSource", "build_corpus"]
