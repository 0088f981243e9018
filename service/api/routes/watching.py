"""The person's private watch page: `/watch#TOKEN`, and the endpoints it and the alert e-mails
call. No API key: the private link's token (or an e-mail's) is the credential, and the page's
own admission rules apply (`service.web.page`: local browser only, or a rate limit in public
mode).

The private link keeps its token in the fragment, so the page's script sends it in request
bodies and it never appears in an address a server logs. The e-mails' links (confirm, stop)
carry theirs in the path, since RFC 8058's one-click stop is a POST to that very address, made
by the mail program with no script and no page header.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from models.errors import InvalidInputError
from service.api.deps import EngineDep, JsonBody
from service.api.routes.web import SECURITY_HEADERS, AdmittedDep, ClientDep, PageDep
from service.api.watchlist_schemas import alert_card, watch_page_document
from service.watchlist.mail import page_url
from service.web import STATIC_DIR
from service.web.page import AVATAR_PATH

router = APIRouter(include_in_schema=False)

WATCH_PAGE = STATIC_DIR / "watch.html"
_ANSWERS = ("mine", "clone")


def _page() -> FileResponse:
    return FileResponse(WATCH_PAGE, headers=SECURITY_HEADERS)


@router.api_route("/watch", methods=["GET", "HEAD"])
def watch_page() -> FileResponse:
    return _page()


# The e-mails' links open the same page, which asks before it confirms or stops anything: a
# mail program's link checker may open a link nobody clicked.
@router.get("/watch/confirm/{token}")
def confirm_page(token: str) -> FileResponse:
    return _page()


@router.get("/watch/stop/{token}")
def stop_page(token: str) -> FileResponse:
    return _page()


@router.post("/watch/confirm/{token}")
def confirm(token: str, page: PageDep, client: ClientDep, engine: EngineDep) -> JSONResponse:
    page.admit(client, image=True)
    entry = engine.watchlist.confirm_email(token)
    return JSONResponse({"confirmed": True, "email": entry.email})


@router.post("/watch/stop/{token}")
def stop_by_email(token: str, page: PageDep, client: ClientDep, engine: EngineDep) -> JSONResponse:
    """The e-mails' stop link, and their one-click `List-Unsubscribe` (whatever its body)."""
    page.admit(client, image=True)
    engine.watchlist.stop_by_email(token)
    return JSONResponse({"stopped": True})


@router.post("/web/api/watching")
def watching(page: PageDep, client: ClientDep, body: JsonBody, engine: EngineDep) -> JSONResponse:
    """The watch the private link opens, with its alerts as cards."""
    page.admit(client, cheap=True)
    entry = engine.watchlist.watched(_field(body, "token"))
    sha = entry.identity.get("avatar_sha256")
    on_file = isinstance(sha, str) and engine.store.avatar(sha) is not None
    return JSONResponse(
        watch_page_document(
            entry,
            engine.watchlist.watched_alerts(entry),
            your_avatar=AVATAR_PATH.format(sha256=sha) if on_file else None,
        )
    )


@router.post("/web/api/watching/answer")
def answer(page: AdmittedDep, body: JsonBody, engine: EngineDep) -> JSONResponse:
    """Record "this is me" (`mine`) or "not me, a clone" (`clone`) on one alert."""
    said = _field(body, "answer")
    alert_id = _field(body, "alert_id")
    if said not in _ANSWERS:
        raise _invalid("answer", "must be 'mine' or 'clone'")
    if not isinstance(alert_id, int) or isinstance(alert_id, bool) or alert_id < 1:
        raise _invalid("alert_id", "must be an alert's id")
    word: Literal["mine", "clone"] = "mine" if said == "mine" else "clone"
    alert = engine.watchlist.answer(_field(body, "token"), alert_id, word)
    return JSONResponse(alert_card(alert))


@router.post("/web/api/watching/new-link")
def new_link(page: AdmittedDep, body: JsonBody, engine: EngineDep) -> JSONResponse:
    """A new private link; the one sent stops working now."""
    token = engine.watchlist.new_link(_field(body, "token"))
    return JSONResponse({"watch_url": page_url("", token)})


@router.post("/web/api/watching/stop")
def stop(page: AdmittedDep, body: JsonBody, engine: EngineDep) -> JSONResponse:
    """Stop watching: the entry, its photo's hashes and its alerts are erased."""
    engine.watchlist.stop(_field(body, "token"))
    return JSONResponse({"stopped": True})


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict):
        raise InvalidInputError("the page sends one JSON object")
    return body.get(name)


def _invalid(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}", details=[{"field": field, "message": message}])
