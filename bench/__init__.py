"""Rerunnable benchmarks: quality on the held-out labelled pairs, and speed at scale."""
