"""The authorisation matrix (service/auth/roles.py) against a real server: every route, every role.

Each route the application declares is called with a key of every role (and the page's own
endpoints without one, in public mode), and must answer the status the matrix gives: 403 where
the role lacks the route's permission, else the route's own success (or 422 where only a
caller that may read stored profiles by name could be answered). No answer, in JSON, CSV, PDF
text or bundle member, may hold a field of a stored profile that the caller may not read, nor,
for a caller that may not rank the store, an account scored below the possible_clone
threshold. Stored profiles carry distinctive values in `attributes` and in the other fields
such a caller may not read, so a leak shows as a string in a body.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from PIL import ImageOps
from typer.testing import CliRunner

from models.errors import PermissionDeniedError
from service.api.app import create_app
from service.api.auth import RequiredPermission
from service.auth.roles import (
    ALL_PROFILE_FIELDS,
    PAGE_PROFILE_ACCESS,
    ROLE_PERMISSIONS,
    ROLE_PROFILE_ACCESS,
    ROLES,
    Permission,
    ProfileAccess,
    Role,
    role_table,
)
from service.cli import app as cli
from service.core.settings import Settings
from service.matching.engine import Engine
from service.store import KeyStore, Store
from service.web.page import PAGE_KEY_NAME, WebPage
from tests.images import b64, jpeg_bytes, photo
from tests.servers import ServerProcess, server_process

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
PAGE = {"X-Clonefinder-Page": "1"}
VICTIM_SEED = 7301
TAG = uuid.uuid4().hex[:6]
VICTIM_NAME = "Rosalind Achterberg"
VICTIM_BIO = "Lichenologist in Utrecht: mosses, lichens and slow science on foot."
FORMATS = ("json", "csv", "pdf", "bundle")
# Routes that are not the API's: its description and the page's static files.
NOT_API = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/static"}


def secrets(n: int) -> dict[str, Any]:
    """Distinctive values in every field a role may be refused."""
    return {
        "id": f"acct-{TAG}-{n}-0451",
        "location": f"Hiddenville {TAG}{n}",
        "url": f"https://private-{TAG}-{n}.invalid/",
        "following_count": 77,
        "posts_count": 12,
        "phone": f"+1-555-{n:03d}-{TAG}",  # not a field of the table: kept in `attributes`
        "email": f"secret{n}-{TAG}@mail.invalid",
    }


def victim() -> dict[str, Any]:
    return {
        "platform": "twitter",
        "handle": f"rosa{TAG}",
        "display_name": VICTIM_NAME,
        "bio": VICTIM_BIO,
        "avatar_base64": b64(jpeg_bytes(photo(VICTIM_SEED))),
        "created_at": "2010-02-03T09:00:00Z",
        "followers_count": 7_654_321,
        "verified": True,
        "profile_url": f"https://twitter.example/rosa{TAG}",
        **secrets(0),
    }


def clone(n: int) -> dict[str, Any]:
    copied = ImageOps.mirror(photo(VICTIM_SEED).resize((96, 96)))
    return {
        "platform": "twitter",
        "handle": f"rosa{TAG}_official{n}",
        "display_name": VICTIM_NAME,
        "bio": VICTIM_BIO + " DM for collabs",
        "avatar_base64": b64(jpeg_bytes(copied, quality=60)),
        "created_at": "2024-06-01T09:00:00Z",
        "followers_count": 4,
        "profile_url": f"https://twitter.example/rosa{TAG}_official{n}",
        **secrets(n),
    }


def stranger(n: int) -> dict[str, Any]:
    names = ["Tomasz Wierzbicki", "Ngozi Adeyemi", "Keanu Kalani", "Ingrid Solberg"]
    return {
        "platform": "twitter",
        "handle": f"zq{TAG}stranger{n}",
        "display_name": names[n % len(names)],
        "bio": f"Botanist and hiker: mosses, ferns and mountain trails, year {2000 + n}.",
        "avatar_base64": b64(jpeg_bytes(photo(7400 + n, size=96))),
        **secrets(100 + n),
    }


STRANGERS = [stranger(n) for n in range(4)]


def body_texts(response: httpx.Response) -> list[str]:
    """What a person or a program can read in an answer: its text, a PDF's text, and every
    member of a ZIP (a PDF member as text)."""
    data = response.content
    if data.startswith(b"%PDF"):
        return [pdf_text(data)]
    if data.startswith(b"PK"):
        texts = []
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                member = archive.read(name)
                texts.append(
                    pdf_text(member)
                    if member.startswith(b"%PDF")
                    else member.decode("utf-8", errors="replace")
                )
        return texts
    if response.headers.get("content-type", "").startswith("image/"):
        return []
    return [data.decode("utf-8", errors="replace")]


def pdf_text(data: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    )
    # A long value may be broken across lines in a PDF: compare without line breaks too.
    text = done.stdout.decode("utf-8")
    return text + "\n" + re.sub(r"\s+", "", text)


@dataclass
class World:
    """The server, a key per role, the stored profiles and what each role owns."""

    server: ServerProcess
    client: httpx.Client
    keys: dict[Role, dict[str, str]]
    stored: dict[str, dict[str, Any]]  # handle -> the record as an admin reads it
    entries: dict[Role, int] = field(default_factory=dict)  # role -> its entry (with an alert)
    alerts: dict[Role, int] = field(default_factory=dict)
    cases: dict[Role, tuple[int, int]] = field(default_factory=dict)  # role -> case, item
    scans: dict[Role, str] = field(default_factory=dict)
    clone_avatar: str = ""

    def as_admin(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url, headers=self.keys["admin"], **kwargs)
        assert response.status_code < 300, response.text
        return response

    def forbidden(self, access: ProfileAccess) -> set[str]:
        """Every value of a stored profile that `access` may not read."""
        values: set[str] = set()
        for record in self.stored.values():
            for name, value in record.items():
                if name in access.fields:
                    continue
                if name == "attributes":
                    values.update(str(v) for v in value.values())
                elif isinstance(value, str):
                    values.add(value)
        return values

    def unranked(self, access: ProfileAccess) -> set[str]:
        """Accounts that only a caller that may rank the store is shown."""
        return set() if access.ranks else {s["handle"] for s in STRANGERS}


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    json: Any = None
    params: dict[str, Any] | None = None
    by_name: bool = False  # answered only to a caller that may read stored profiles by name
    status: int | None = None  # the answer expected, where not the route's success


def make_key(server: ServerProcess, role: Role) -> dict[str, str]:
    result = CliRunner().invoke(
        cli,
        ["keys", "create", "--role", role, "--name", f"{role}-{TAG}"]
        + ["--data-dir", str(server.data_dir)],
    )
    assert result.exit_code == 0, result.output
    return {"Authorization": f"Bearer {result.output.strip().splitlines()[-1]}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = {
        "CLONEFINDER_WEB_MODE": "public",
        "CLONEFINDER_WEB_RATE_LIMIT_PER_MINUTE": "0",
        "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
    }
    with server_process(tmp_path_factory.mktemp("access"), env=env) as server:
        client = httpx.Client(base_url=server.base_url, timeout=120)
        keys: dict[Role, dict[str, str]] = {r: make_key(server, r) for r in ROLES if r != "admin"}
        keys["admin"] = server.headers
        world = World(server=server, client=client, keys=keys, stored={})
        world.as_admin("POST", "/v1/profiles", json=[victim(), *STRANGERS])
        # Each role protects the victim before the clone appears, so each owns an alert.
        identity = {k: victim()[k] for k in ("display_name", "bio", "avatar_base64")}
        for role in ROLES:
            answer = client.post("/v1/watchlist", json=identity, headers=keys[role])
            assert answer.status_code == 201, answer.text
            world.entries[role] = answer.json()["id"]
        world.as_admin("POST", "/v1/profiles", json=[clone(1)])
        for role in ROLES:
            query = {"entry_id": world.entries[role]}
            (alert,) = client.get("/v1/alerts", params=query, headers=keys[role]).json()["alerts"]
            world.alerts[role] = alert["id"]
        for record in (victim(), clone(1), *STRANGERS):
            path = f"/v1/profiles/twitter/{record['handle']}"
            world.stored[record["handle"]] = world.as_admin("GET", path).json()
        world.clone_avatar = world.stored[clone(1)["handle"]]["avatar_sha256"]
        yield world
        client.close()


def owned_case(world: World, role: Role) -> tuple[int, int]:
    """The role's case with the clone as its item (the admin's for a role without cases)."""
    owner: Role = role if "cases" in ROLE_PERMISSIONS[role] else "admin"
    if owner not in world.cases:
        headers = world.keys[owner]
        body = {"victim": {"platform": "twitter", "handle": victim()["handle"]}}
        case = world.client.post("/v1/cases", json=body, headers=headers)
        assert case.status_code == 201, case.text
        item = {"platform": "twitter", "handle": clone(1)["handle"]}
        added = world.client.post(
            f"/v1/cases/{case.json()['id']}/items", json=item, headers=headers
        )
        assert added.status_code == 201, added.text
        world.cases[owner] = (case.json()["id"], added.json()["added"][0]["item_id"])
    return world.cases[owner]


def owned_scan(world: World, role: Role) -> str:
    owner: Role = role if "scans" in ROLE_PERMISSIONS[role] else "admin"
    if owner not in world.scans:
        job = world.client.post("/v1/scans", json=[clone(1)], headers=world.keys[owner])
        assert job.status_code == 202, job.text
        world.scans[owner] = job.json()["id"]
    return world.scans[owner]


def fresh_entry(world: World, role: Role) -> int:
    body = {"display_name": f"Someone To Drop {TAG}"}
    answer = world.client.post("/v1/watchlist", json=body, headers=world.keys[role])
    assert answer.status_code == 201, answer.text
    entry: int = answer.json()["id"]
    return entry


def fresh_watch_token(world: World) -> str:
    """The private link's token of a new watch made on the page."""
    fresh = uuid.uuid4().hex[:8]
    identity = {**SENT, "handle": f"watched{fresh}", "display_name": f"{VICTIM_NAME} {fresh}"}
    answer = world.client.post("/web/api/watch", json=identity, headers=PAGE)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["watch_url"].split("#", 1)[1]
    return token


def fresh_profile(world: World, role: Role) -> str:
    handle = f"gone{uuid.uuid4().hex[:8]}"
    world.as_admin("POST", "/v1/profiles", json={"platform": "twitter", "handle": handle})
    return handle


NAMED = {"platform": "twitter", "handle": f"rosa{TAG}"}
# A check that names the victim and sends one field of its own, and one that browses by name
# and bio, asking for every candidate whatever its score.
SENT = {**NAMED, "display_name": VICTIM_NAME}
BROWSE = {"display_name": VICTIM_NAME, "bio": VICTIM_BIO, "min_score": 0, "top_k": 100}

Builder = Callable[[World, Role], list[Call]]


def evidence_exports(role: Role) -> list[Call]:
    """Each format, asking for every candidate, where the role may be refused something; one
    bundle (which holds the other formats) where it may read everything."""
    if ROLE_PROFILE_ACCESS[role].every_field:
        return [Call("POST", "/v1/evidence/checks", json=SENT, params={"format": "bundle"})]
    return [
        Call("POST", "/v1/evidence/checks", json=SENT, params={"format": f, "min_score": 0})
        for f in FORMATS
    ]


# The requests that exercise each route, as a role calls it; a route missing here fails the
# walk, so a new route is covered as soon as it exists.
REQUESTS: dict[tuple[str, str], Builder] = {
    ("GET", "/v1/health"): lambda w, r: [Call("GET", "/v1/health")],
    # Operating it: the probes answer anyone, the metrics an admin key.
    ("GET", "/livez"): lambda w, r: [Call("GET", "/livez")],
    ("GET", "/readyz"): lambda w, r: [Call("GET", "/readyz")],
    ("GET", "/metrics"): lambda w, r: [Call("GET", "/metrics")],
    ("POST", "/v1/profiles"): lambda w, r: [
        Call("POST", "/v1/profiles", json={"platform": "twitter", "handle": f"new{TAG}{r}"})
    ],
    ("GET", "/v1/profiles/{platform}/{handle}"): lambda w, r: [
        Call("GET", f"/v1/profiles/twitter/{clone(1)['handle']}"),
        Call("GET", f"/v1/profiles/twitter/{victim()['handle']}"),
    ],
    ("DELETE", "/v1/profiles/{platform}/{handle}"): lambda w, r: [
        Call("DELETE", f"/v1/profiles/twitter/{fresh_profile(w, r)}")
    ],
    ("POST", "/v1/checks"): lambda w, r: [
        Call("POST", "/v1/checks", json=BROWSE),
        Call("POST", "/v1/checks", json=SENT, params={"min_score": 0}),
        Call("POST", "/v1/checks", json=NAMED, by_name=True),
    ],
    # A threshold of their own: the world's entries watch these identities already, and a
    # repeat of the same watch answers 200 with the existing entry.
    ("POST", "/v1/watchlist"): lambda w, r: [
        Call("POST", "/v1/watchlist", json={"identity": SENT, "threshold": 0.55}),
        Call("POST", "/v1/watchlist", json={"identity": NAMED, "threshold": 0.56}, by_name=True),
    ],
    ("GET", "/v1/watchlist"): lambda w, r: [Call("GET", "/v1/watchlist")],
    ("GET", "/v1/watchlist/{entry_id}"): lambda w, r: [
        Call("GET", f"/v1/watchlist/{w.entries[r]}")
    ],
    ("DELETE", "/v1/watchlist/{entry_id}"): lambda w, r: [
        Call("DELETE", f"/v1/watchlist/{fresh_entry(w, r)}")
    ],
    ("GET", "/v1/alerts"): lambda w, r: [
        Call("GET", "/v1/alerts"),
        Call("GET", "/v1/alerts", params={"entry_id": w.entries[r]}),
    ],
    ("POST", "/v1/alerts/{alert_id}/ack"): lambda w, r: [
        Call("POST", f"/v1/alerts/{w.alerts[r]}/ack")
    ],
    ("GET", "/v1/alerts/{alert_id}/deliveries"): lambda w, r: [
        Call("GET", f"/v1/alerts/{w.alerts[r]}/deliveries")
    ],
    ("POST", "/v1/scans"): lambda w, r: [
        Call("POST", "/v1/scans", json=[clone(1), stranger(9)]),
        Call("POST", "/v1/scans", json=[stranger(8)], params={"ingest": "true"}),
    ],
    ("GET", "/v1/scans/{job_id}"): lambda w, r: [Call("GET", f"/v1/scans/{owned_scan(w, r)}")],
    ("GET", "/v1/scans/{job_id}/results"): lambda w, r: [
        Call("GET", f"/v1/scans/{owned_scan(w, r)}/results")
    ],
    ("DELETE", "/v1/scans/{job_id}"): lambda w, r: [
        Call("DELETE", f"/v1/scans/{owned_scan(w, r)}")
    ],
    ("POST", "/v1/cases"): lambda w, r: [
        Call("POST", "/v1/cases", json={"victim": NAMED, "title": f"case of {r}"})
    ],
    ("GET", "/v1/cases"): lambda w, r: [Call("GET", "/v1/cases")],
    ("GET", "/v1/cases/{case_id}"): lambda w, r: [Call("GET", f"/v1/cases/{owned_case(w, r)[0]}")],
    ("PATCH", "/v1/cases/{case_id}"): lambda w, r: [
        Call("PATCH", f"/v1/cases/{owned_case(w, r)[0]}", json={"notes": "seen"})
    ],
    ("POST", "/v1/cases/{case_id}/items"): lambda w, r: [
        Call(
            "POST",
            f"/v1/cases/{owned_case(w, r)[0]}/items",
            json={"platform": "twitter", "handle": clone(1)["handle"]},
        )
    ],
    ("GET", "/v1/cases/{case_id}/items/{item_id}"): lambda w, r: [
        Call("GET", "/v1/cases/{}/items/{}".format(*owned_case(w, r)))
    ],
    ("PATCH", "/v1/cases/{case_id}/items/{item_id}"): lambda w, r: [
        Call("PATCH", "/v1/cases/{}/items/{}".format(*owned_case(w, r)), json={"notes": "x"})
    ],
    ("POST", "/v1/cases/{case_id}/items/{item_id}/captures"): lambda w, r: [
        Call("POST", "/v1/cases/{}/items/{}/captures".format(*owned_case(w, r)))
    ],
    ("GET", "/v1/cases/{case_id}/export"): lambda w, r: [
        Call("GET", f"/v1/cases/{owned_case(w, r)[0]}/export", params={"format": "bundle"})
    ],
    ("GET", "/v1/evidence/public-key"): lambda w, r: [Call("GET", "/v1/evidence/public-key")],
    ("POST", "/v1/evidence/checks"): lambda w, r: [
        *evidence_exports(r),
        Call("POST", "/v1/evidence/checks", json=BROWSE, params={"format": "json"}),
        Call("POST", "/v1/evidence/checks", json=NAMED, params={"format": "json"}, by_name=True),
    ],
    # The page's own endpoints, without a key (public mode).
    ("GET", "/"): lambda w, r: [Call("GET", "/")],
    ("GET", "/web/api/info"): lambda w, r: [Call("GET", "/web/api/info")],
    ("POST", "/web/api/check"): lambda w, r: [
        Call("POST", "/web/api/check", json={**SENT, "min_score": 0, "top_k": 100}),
        Call("POST", "/web/api/check", json={**NAMED, "bio": VICTIM_BIO}),
    ],
    # The victim's name under a handle of its own: a later test watches the victim itself.
    ("POST", "/web/api/watch"): lambda w, r: [
        Call("POST", "/web/api/watch", json={**SENT, "handle": f"rosa{TAG}too"})
    ],
    ("POST", "/web/api/evidence"): lambda w, r: [
        Call("POST", "/web/api/evidence", json={**SENT, "min_score": 0})
    ],
    ("GET", "/web/api/avatars/{sha256}"): lambda w, r: [
        Call("GET", f"/web/api/avatars/{w.clone_avatar}")
    ],
    ("HEAD", "/"): lambda w, r: [Call("HEAD", "/")],
    ("GET", "/favicon.ico"): lambda w, r: [Call("GET", "/favicon.ico")],
    ("HEAD", "/favicon.ico"): lambda w, r: [Call("HEAD", "/favicon.ico")],
    # The private watch page: its token is the credential, so an unknown one finds nothing.
    ("GET", "/watch"): lambda w, r: [Call("GET", "/watch")],
    ("HEAD", "/watch"): lambda w, r: [Call("HEAD", "/watch")],
    ("GET", "/watch/confirm/{token}"): lambda w, r: [Call("GET", "/watch/confirm/unknown")],
    ("GET", "/watch/stop/{token}"): lambda w, r: [Call("GET", "/watch/stop/unknown")],
    ("POST", "/watch/confirm/{token}"): lambda w, r: [
        Call("POST", "/watch/confirm/unknown", status=404)
    ],
    ("POST", "/watch/stop/{token}"): lambda w, r: [Call("POST", "/watch/stop/unknown", status=404)],
    ("POST", "/web/api/watching"): lambda w, r: [
        Call("POST", "/web/api/watching", json={"token": fresh_watch_token(w)}),
        Call("POST", "/web/api/watching", json={"token": "unknown"}, status=404),
    ],
    ("POST", "/web/api/watching/answer"): lambda w, r: [
        Call(
            "POST",
            "/web/api/watching/answer",
            json={"token": fresh_watch_token(w), "alert_id": 999_999, "answer": "mine"},
            status=404,
        )
    ],
    ("POST", "/web/api/watching/new-link"): lambda w, r: [
        Call("POST", "/web/api/watching/new-link", json={"token": fresh_watch_token(w)})
    ],
    ("POST", "/web/api/watching/stop"): lambda w, r: [
        Call("POST", "/web/api/watching/stop", json={"token": fresh_watch_token(w)})
    ],
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    permission: Permission | None  # None: no key needed
    success: int


def operations() -> list[Operation]:
    """Every operation the application serves, with the permission its route requires."""
    application = create_app(Settings(web_mode="public"))
    found = []
    for context in iter_route_contexts(application.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            assert context.path in NOT_API, f"a route the walk does not know: {context.path}"
            continue
        required = [
            d.call.permission
            for d in context.dependant.dependencies
            if isinstance(d.call, RequiredPermission)
        ]
        assert len(required) <= 1, context.path
        path = context.path_format
        assert path is not None
        for method in sorted(context.methods or ()):
            found.append(
                Operation(
                    method=method,
                    path=path,
                    permission=required[0] if required else None,
                    success=route.status_code or 200,
                )
            )
    return found


def expected(operation: Operation, call: Call, role: Role | None, access: ProfileAccess) -> int:
    if call.status is not None:
        return call.status
    needed = operation.permission
    if role is not None and needed is not None and needed not in ROLE_PERMISSIONS[role]:
        return 403
    if call.by_name and not access.by_name:
        return 422
    return operation.success


def assert_reads(world: World, call: Call, response: httpx.Response, access: ProfileAccess) -> None:
    texts = body_texts(response)
    for value in world.forbidden(access) | world.unranked(access):
        for text in texts:
            assert value not in text, f"{call.method} {call.url} answered {value!r}"


@pytest.mark.skipif(
    not shutil.which("pdftotext"),
    reason="pdftotext/pdftoppm not installed (Debian package poppler-utils)",
)
def test_every_route_answers_each_role_as_the_matrix_says(world: World) -> None:
    walked = set()
    for operation in operations():
        key = (operation.method, operation.path)
        assert key in REQUESTS, f"add the requests that exercise {key} to REQUESTS"
        walked.add(key)
        if operation.permission is None and not operation.path.startswith("/v1/"):
            # The page: no key, and what the public page may read.
            callers: list[tuple[Role | None, ProfileAccess, dict[str, str]]] = [
                (None, PAGE_PROFILE_ACCESS["public"], PAGE)
            ]
        else:
            callers = [(r, ROLE_PROFILE_ACCESS[r], world.keys[r]) for r in ROLES]
        for role, access, headers in callers:
            for call in REQUESTS[key](world, role or "admin"):
                response = world.client.request(
                    call.method, call.url, json=call.json, params=call.params, headers=headers
                )
                status = expected(operation, call, role, access)
                assert response.status_code == status, (
                    f"{role or 'the page'}: {call.method} {call.url} {call.params or ''} "
                    f"answered {response.status_code}, not {status}: {response.text[:300]}"
                )
                assert_reads(world, call, response, access)
    assert walked == set(REQUESTS), "REQUESTS names routes that no longer exist"


def test_the_walk_means_something(world: World) -> None:
    """What an individual is refused is really there for a role that may read it."""
    admin = world.client.post("/v1/checks", json=BROWSE, headers=world.keys["admin"]).json()
    handles = {m["profile"]["handle"] for m in admin["matches"]}
    assert handles & {s["handle"] for s in STRANGERS}, "no namesake below possible_clone"
    clone_match = next(m for m in admin["matches"] if m["profile"]["handle"] == clone(1)["handle"])
    assert clone_match["profile"]["attributes"]["phone"] == secrets(1)["phone"]

    individual = world.client.post("/v1/checks", json=BROWSE, headers=world.keys["individual"])
    matches = individual.json()["matches"]
    assert clone(1)["handle"] in {m["profile"]["handle"] for m in matches}
    assert all(m["score"] >= 0.40 for m in matches)
    shown = next(m["profile"] for m in matches if m["profile"]["handle"] == clone(1)["handle"])
    # The public fields of a match, with the context that decides which side is the copy.
    assert shown["display_name"] == VICTIM_NAME and shown["followers_count"] == 4
    assert shown["profile_url"] == clone(1)["profile_url"] and shown["avatar_sha256"]
    assert set(shown) <= ROLE_PROFILE_ACCESS["individual"].fields


def test_an_individual_watch_of_a_stored_handle_keeps_only_what_was_sent(world: World) -> None:
    individual = world.keys["individual"]
    answer = world.client.post("/v1/watchlist", json={"identity": SENT}, headers=individual)
    assert answer.status_code == 201, answer.text
    assert answer.json()["identity"] == SENT  # no stored bio, dates, followers or avatar
    named = world.client.post("/v1/watchlist", json={"identity": NAMED}, headers=individual)
    assert named.status_code == 422
    # The same answer whether or not the named profile exists: no existence oracle.
    nobody = {"identity": {"platform": "twitter", "handle": f"nobody{TAG}"}}
    missing = world.client.post("/v1/watchlist", json=nobody, headers=individual)
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        named.status_code,
        named.json()["error"]["code"],
    )


def test_a_public_page_watch_reads_nothing_of_the_store(world: World) -> None:
    """An anonymous visitor who names a stored handle gets an entry of what was sent, and its
    alerts (the webhook's body) show the clones as an individual may read them."""
    sent = {**SENT, "bio": VICTIM_BIO, "avatar_base64": victim()["avatar_base64"]}
    answer = world.client.post("/web/api/watch", json=sent, headers=PAGE)
    assert answer.status_code == 201, answer.text
    entry = world.as_admin("GET", f"/v1/watchlist/{answer.json()['id']}").json()
    # Nothing of the stored profile: not its dates, followers or badge.
    assert set(entry["identity"]) == {"platform", "handle", "display_name", "bio", "avatar_sha256"}
    world.as_admin("POST", "/v1/profiles", json=[clone(2)])
    alerts = world.as_admin("GET", "/v1/alerts", params={"entry_id": entry["id"]}).json()
    (alert,) = alerts["alerts"]
    assert alert["profile"]["handle"] == clone(2)["handle"]
    assert set(alert["profile"]) <= PAGE_PROFILE_ACCESS["public"].fields
    assert secrets(2)["phone"] not in str(alert)


def test_the_readme_role_table_is_the_matrix() -> None:
    assert role_table() in README.read_text(encoding="utf-8"), (
        "the README's role table (API keys, roles and limits) must read:\n" + role_table()
    )


def test_a_role_reads_a_stored_profile_by_name_exactly_when_it_may_get_one() -> None:
    for role in ROLES:
        access = ROLE_PROFILE_ACCESS[role]
        assert access.by_name == ("profiles.read" in ROLE_PERMISSIONS[role])
        assert {"platform", "handle"} <= access.fields <= ALL_PROFILE_FIELDS
        if access.by_name:
            assert access.fields == ALL_PROFILE_FIELDS and access.ranks


def test_revoking_the_page_key_stops_watching_from_the_next_request(
    tmp_path: Path, open_engine: Callable[[Settings], AbstractContextManager[Engine]]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", web_mode="public")
    with open_engine(settings) as engine:
        page = WebPage(engine, settings)
        sent = {"platform": "twitter", "handle": "jane", "display_name": "Jane Doe"}
        assert page.watch(sent)["id"]
        # As `clonefinder keys revoke web-page` does, from another process: its own store.
        other = Store.open(settings.resolved_database_url)
        try:
            KeyStore(other).revoke(PAGE_KEY_NAME)
        finally:
            other.close()
        with pytest.raises(PermissionDeniedError, match="revoked"):
            page.watch(sent)
