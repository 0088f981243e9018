"""Rerunnable benchmarks: quality on the held-out labelled pairs, and speed at scale."""

# The service package sets the native thread pools' policies (idle OpenMP threads sleep
# instead of spinning) in environment variables, which OpenMP reads once, when FAISS first
# loads; a benchmark module importing FAISS before the service would measure threads that
# spin. Importing the service here sets them before any benchmark module imports anything.
import service  # noqa: F401
