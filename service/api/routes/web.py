"""The web page: its files at `/` and `/static`, and the endpoints it calls under `/web/api`.

These are the page's own endpoints, not part of the versioned API (`/v1`), so the OpenAPI
document leaves them out; who may call them is `service.web.page`'s concern (a local browser,
or anyone within a rate limit in public mode).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from service.api.deps import JsonBody, export_response
from service.web import STATIC_DIR, PageClient, WebPage
from service.web.page import FORWARDING_HEADERS, PAGE_HEADER

# The page loads nothing from elsewhere; its images are its own endpoints or the browser's
# preview of the chosen file (blob:).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
        "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


def get_page(request: Request) -> WebPage:
    page: WebPage | None = getattr(request.app.state, "web_page", None)
    if page is None:
        raise HTTPException(503, "the service is not ready: its engine is not loaded")
    return page


def page_client(request: Request) -> PageClient:
    return PageClient(
        address=request.client.host if request.client else None,
        host=request.headers.get("host"),
        from_page=request.headers.get(PAGE_HEADER) == "1",
        forwarded=any(name in request.headers for name in FORWARDING_HEADERS),
    )


PageDep = Annotated[WebPage, Depends(get_page)]
ClientDep = Annotated[PageClient, Depends(page_client)]


def admitted(page: PageDep, client: ClientDep) -> WebPage:
    """The page service, once the request may go on (checked before its body is read)."""
    page.admit(client)
    return page


AdmittedDep = Annotated[WebPage, Depends(admitted)]


# HEAD as well as GET: link checkers and uptime monitors ask with HEAD.
@router.api_route("/", methods=["GET", "HEAD"])
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


# The page links its icon; this answers the clients that ask for it by the old fixed name.
@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
def favicon() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/web/api/info")
def info(page: PageDep, client: ClientDep) -> JSONResponse:
    page.admit(client, cheap=True)
    return JSONResponse(page.info())


@router.post("/web/api/check")
def check(page: AdmittedDep, body: JsonBody) -> JSONResponse:
    return JSONResponse(page.check(body))


@router.post("/web/api/watch", status_code=201)
def watch(page: AdmittedDep, body: JsonBody, request: Request) -> JSONResponse:
    watched = page.watch(body, link_base_url=str(request.base_url))
    return JSONResponse(watched, status_code=200 if watched["existing"] else 201)


@router.post("/web/api/evidence")
def evidence(page: AdmittedDep, body: JsonBody) -> Response:
    return export_response(page.evidence(body))


@router.get("/web/api/avatars/{sha256}")
def avatar(sha256: str, page: PageDep, client: ClientDep) -> Response:
    page.admit(client, cheap=True, image=True)
    return Response(
        page.avatar(sha256),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600", **SECURITY_HEADERS},
    )
