"""Loading the embedding model prints nothing a user would have to read past: no progress bar
on every command, and the libraries' own progress-bar settings are left as they were."""

from __future__ import annotations

import pytest
from transformers.utils import logging as transformers_logging

from indexers.bio import BioEmbedder

pytestmark = pytest.mark.slow


def test_loading_the_model_draws_no_progress_bar(capfd: pytest.CaptureFixture[str]) -> None:
    bars_before = transformers_logging.is_progress_bar_enabled()

    BioEmbedder(backend="torch")

    printed = capfd.readouterr()
    assert "Loading weights" not in printed.err + printed.out
    assert "it/s" not in printed.err
    # A program that shows the libraries' bars elsewhere (a download) still gets them.
    assert transformers_logging.is_progress_bar_enabled() == bars_before
