"""The clonefinder service: store, indexes, matcher, HTTP API and command line."""
