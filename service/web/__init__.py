"""The web page at `/`: a person checks whether they were cloned, asks to be watched and
downloads the evidence. The page's static files live in `static/`; `page.py` holds what its
endpoints do and who may call them."""

from service.web.page import STATIC_DIR, PageClient, WebPage

__all__ = ["STATIC_DIR", "PageClient", "WebPage"]
