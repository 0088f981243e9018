"""The API-key dependency (CONTRACT STUB: the keys work replaces the body of `require`).

Usage in a route: `caller: Annotated[Caller, Depends(require("scans"))]`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from service.auth import Caller, Permission


def require(permission: Permission) -> Callable[[Request], Caller]:
    """A dependency that admits a request whose key's role has `permission`."""

    def dependency(request: Request) -> Caller:
        return Caller(key_id=0, name="anonymous", role="admin")  # STUB until keys land

    return dependency
