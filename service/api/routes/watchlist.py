"""Watchlists (protected identities), their alerts and the alerts' webhook deliveries.

A key sees and manages only its own entries and alerts, unless its role has the
`watchlist.all` permission; another key's entry or alert answers 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from service.api.auth import require
from service.api.deps import (
    AlertQueryDep,
    RowId,
    SettingsDep,
    WatchlistDep,
    WatchlistRequestDep,
)
from service.api.idempotency import IdempotentRoute, idempotent
from service.api.schemas import ERROR_RESPONSES, ErrorOut
from service.api.watchlist_schemas import (
    AlertOut,
    AlertPageOut,
    DeliveryListOut,
    EntryCreatedOut,
    EntryListOut,
    EntryOut,
    WatchlistIn,
    inline_schema,
)
from service.auth.roles import Caller
from service.watchlist.mail import page_url

WatchlistCaller = Annotated[Caller, Depends(require("watchlist"))]

router = APIRouter(tags=["watchlist"], route_class=IdempotentRoute)

_ENTRY_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such entry (or another key's)"}
}
_ALERT_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such alert (or another key's)"}
}


@router.post(
    "/watchlist",
    status_code=201,
    response_model=EntryCreatedOut,
    summary="Protect an identity: alert on every later profile that copies it",
    dependencies=[Depends(idempotent(require("watchlist")))],
    responses={
        **ERROR_RESPONSES,
        200: {
            "model": EntryCreatedOut,
            "description": "the same watch was asked before by this key: its entry "
            "(`existing`: true)",
        },
        404: {"model": ErrorOut, "description": "the named stored profile does not exist"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(WatchlistIn)}},
        }
    },
)
def register(
    caller: WatchlistCaller,
    request: WatchlistRequestDep,
    watchlist: WatchlistDep,
    settings: SettingsDep,
    http: Request,
    response: Response,
) -> EntryCreatedOut:
    """Every profile ingested from now on is compared with this identity; a match at or above
    `threshold` (default: the likely_clone threshold) is an alert. With `webhook_url`, each
    alert is also POSTed there, signed with the `webhook_secret` this answer shows once; with
    `email`, e-mailed there once the address is confirmed. `watch_url`, shown once, is the
    person's private page. The same watch asked again answers 200 with the first entry."""
    registered = watchlist.register(caller, request)
    if registered.existing:
        response.status_code = 200
    has_page = getattr(http.app.state, "web_page", None) is not None
    base_url = settings.smtp_link_base_url or str(http.base_url)
    watch_url = (
        page_url(base_url, registered.page_token) if registered.page_token and has_page else None
    )
    return EntryCreatedOut.registered(registered, watch_url=watch_url)


@router.get("/watchlist", response_model=EntryListOut, summary="The caller's watchlist entries")
def list_entries(caller: WatchlistCaller, watchlist: WatchlistDep) -> EntryListOut:
    return EntryListOut(entries=[EntryOut.of(e) for e in watchlist.entries(caller)])


@router.get(
    "/watchlist/{entry_id}",
    response_model=EntryOut,
    summary="One watchlist entry",
    responses=_ENTRY_NOT_FOUND,
)
def get_entry(entry_id: RowId, caller: WatchlistCaller, watchlist: WatchlistDep) -> EntryOut:
    return EntryOut.of(watchlist.entry(caller, entry_id))


@router.delete(
    "/watchlist/{entry_id}",
    status_code=204,
    response_class=Response,
    summary="Stop protecting an identity (its alerts and deliveries go too)",
    responses=_ENTRY_NOT_FOUND,
)
def delete_entry(entry_id: RowId, caller: WatchlistCaller, watchlist: WatchlistDep) -> Response:
    watchlist.delete(caller, entry_id)
    return Response(status_code=204)


@router.get(
    "/alerts",
    response_model=AlertPageOut,
    summary="The caller's alerts, newest first",
    responses={**ERROR_RESPONSES, **_ENTRY_NOT_FOUND},
)
def list_alerts(
    caller: WatchlistCaller, query: AlertQueryDep, watchlist: WatchlistDep
) -> AlertPageOut:
    """Filter by `entry_id`, `acknowledged` and `since`; page with `limit` and either `offset`
    or the `cursor` the previous page returned (stable while new alerts arrive)."""
    return AlertPageOut.of(watchlist.alerts(caller, query))


@router.post(
    "/alerts/{alert_id}/ack",
    response_model=AlertOut,
    summary="Acknowledge an alert",
    responses=_ALERT_NOT_FOUND,
)
def acknowledge(alert_id: RowId, caller: WatchlistCaller, watchlist: WatchlistDep) -> AlertOut:
    """Idempotent: acknowledging again keeps the first acknowledgement's time."""
    return AlertOut.of(watchlist.acknowledge(caller, alert_id))


@router.get(
    "/alerts/{alert_id}/deliveries",
    response_model=DeliveryListOut,
    summary="An alert's webhook deliveries, with every attempt",
    responses=_ALERT_NOT_FOUND,
)
def deliveries(
    alert_id: RowId, caller: WatchlistCaller, watchlist: WatchlistDep
) -> DeliveryListOut:
    return DeliveryListOut.of(watchlist.deliveries(caller, alert_id))
