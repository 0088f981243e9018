"""The clonefinder service: store, indexes, matcher, HTTP API and command line."""

import os

# OpenMP threads (FAISS searches, torch) sleep when idle instead of spinning. Set here, before
# any of those libraries loads, because OpenMP reads it once. The service runs several stages
# side by side on a few cores (a scan embeds and searches one batch while it scores another),
# and spinning threads took the cores the other stage needed: a fifth of a scan's CPU time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
