"""What the page says when its evidence report cannot be made: one plain sentence, not the
operator's error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from models.errors import ConfigurationError
from service.core.settings import Settings
from service.evidence.report import MissingFontsError
from service.web import WebPage


class _NoFonts:
    def export_check(self, *args: Any, **kwargs: Any) -> Any:
        raise MissingFontsError(
            ["NotoSans-Regular.ttf", "NotoColorEmoji.ttf"], [Path("/usr/share/fonts")]
        )


def test_missing_fonts_are_said_in_one_sentence_that_says_how_to_install_them() -> None:
    engine = SimpleNamespace(cases=_NoFonts())
    page = WebPage(cast(Any, engine), Settings(web_mode="local"))
    with pytest.raises(ConfigurationError) as refused:
        page.evidence({"platform": "twitter", "handle": "jane_rivera"})
    message = refused.value.message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
    assert "fonts" in message
    assert "apt-get install fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji" in message
    assert "/usr/share/fonts" not in message  # the folders searched are the operator's concern
