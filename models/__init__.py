"""The vocabulary of clonefinder: records, results, errors and the scoring model.

Nothing in this package imports another package of ours (data flows models <- indexers <- service).
"""
