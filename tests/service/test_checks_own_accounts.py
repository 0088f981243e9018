"""A check that names the person's own accounts, over HTTP (a real server) and on the command
line (`--mine`): the Maya Okafor case of the demo corpus."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.core.settings import Settings
from service.matching.engine import DEMO_DIR
from service.matching.own_accounts import MAX_OWN_ACCOUNTS
from service.records import read_records
from tests.conftest import RunningServer
from tests.support import create_key, ingest

pytestmark = pytest.mark.slow

Opener = Callable[[Settings], AbstractContextManager[Any]]

MAYA_AVATAR = DEMO_DIR / "avatars" / "maya_okafor.jpg"
MAYA_INSTAGRAM = {
    "platform": "instagram",
    "handle": "mayaokafor.science",
    "display_name": "Maya Okafor",
    "avatar_base64": base64.b64encode(MAYA_AVATAR.read_bytes()).decode("ascii"),
}
MAYA_TWITTER = {"platform": "twitter", "handle": "maya_okafor"}
CLONES = ("maya_0kafor", "realmayaokafor")


def demo_records(*handles: str) -> list[dict[str, Any]]:
    """Demo profiles as a client sends them: the avatar file's bytes inline."""
    chosen = []
    for _, record in read_records(DEMO_DIR / "profiles.jsonl"):
        if record["handle"] in handles:
            path = DEMO_DIR / record.pop("avatar_path")
            record["avatar_base64"] = base64.b64encode(path.read_bytes()).decode("ascii")
            chosen.append(record)
    return chosen


def by_handle(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {match["profile"]["handle"]: match for match in result["matches"]}


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.base_url, headers=api_server.headers, timeout=60.0
    ) as http:
        for record in demo_records("maya_okafor", "maya_0kafor", "realmayaokafor"):
            ingest(http, record)
        yield http


def test_declared_accounts_come_back_apart_and_the_clones_stay(client: httpx.Client) -> None:
    own_accounts = [MAYA_TWITTER, {"platform": "tiktok", "handle": "maya"}]
    response = client.post("/v1/checks", json={**MAYA_INSTAGRAM, "own_accounts": own_accounts})
    assert response.status_code == 200, response.text
    result = response.json()
    twitter, tiktok = result["own_accounts"]
    assert (twitter["handle"], twitter["found"], twitter["profile"]["verified"]) == (
        "maya_okafor",
        True,
        True,
    )
    assert (tiktok["handle"], tiktok["found"], tiktok["profile"]) == ("maya", False, None)
    matches = by_handle(result)
    assert "maya_okafor" not in matches
    for clone in CLONES:
        assert matches[clone]["label"] == "likely_clone"
        assert matches[clone]["may_be_yours"] is False


def test_an_undeclared_original_is_asked_about_not_called_a_clone(client: httpx.Client) -> None:
    response = client.post("/v1/checks", json=MAYA_INSTAGRAM)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["own_accounts"] == []
    matches = by_handle(result)
    assert matches["maya_okafor"]["may_be_yours"] is True
    assert all(matches[clone]["may_be_yours"] is False for clone in CLONES)


def test_an_individual_key_keeps_its_accounts_out_without_reading_them(
    client: httpx.Client, api_server: RunningServer
) -> None:
    response = client.post(
        "/v1/checks",
        json={**MAYA_INSTAGRAM, "own_accounts": [MAYA_TWITTER]},
        headers=create_key(api_server, role="individual"),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["own_accounts"] == [
        {"platform": "twitter", "handle": "maya_okafor", "found": None, "profile": None}
    ]
    assert "maya_okafor" not in by_handle(result)


@pytest.mark.parametrize(
    ("own_accounts", "field"),
    [
        ("twitter:maya_okafor", "own_accounts"),
        ([{"platform": "twitter"}], "own_accounts[0].handle"),
        ([MAYA_TWITTER, {"platform": "twitter", "handle": "a b"}], "own_accounts[1].handle"),
        ([{**MAYA_TWITTER, "verified": True}], "own_accounts[0]"),
        ([{"platform": "x", "handle": f"h{i}"} for i in range(MAX_OWN_ACCOUNTS + 1)],
         "own_accounts"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_422_naming_the_field(
    client: httpx.Client, own_accounts: Any, field: str
) -> None:
    response = client.post("/v1/checks", json={**MAYA_INSTAGRAM, "own_accounts": own_accounts})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"][0]["field"] == field
    assert f"'{field}'" in error["message"]


def test_the_api_document_shows_the_additions(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/checks"]["post"]["requestBody"]["content"]["application/json"]
    assert "own_accounts" in json.dumps(body)
    assert "own_accounts" in schemas["ResultOut"]["properties"]
    assert "may_be_yours" in schemas["Match"]["properties"]


# -- command line ----------------------------------------------------------------------------


def _run(opener: Opener, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(arg) for arg in args], obj={"open_engine": opener})


@pytest.fixture(scope="module")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory, open_engine: Opener) -> Path:
    data_dir = tmp_path_factory.mktemp("cli-own-accounts") / "data"
    result = _run(open_engine, "ingest", DEMO_DIR / "profiles.jsonl", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    return data_dir


MAYA_OPTIONS = (
    "--platform", "instagram", "--handle", "mayaokafor.science", "--name", "Maya Okafor",
    "--avatar", str(MAYA_AVATAR),
)  # fmt: skip


def test_check_mine_lists_the_account_apart(demo_data_dir: Path, open_engine: Opener) -> None:
    result = _run(
        open_engine,
        "check",
        *MAYA_OPTIONS,
        "--mine",
        "twitter:maya_okafor",
        "--mine",
        "tiktok:@maya",
        "--json",
        "--data-dir",
        demo_data_dir,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [(a["platform"], a["handle"], a["found"]) for a in record["own_accounts"]] == [
        ("twitter", "maya_okafor", True),
        ("tiktok", "maya", False),
    ]
    matches = by_handle(record)
    assert "maya_okafor" not in matches
    assert all(matches[clone]["label"] == "likely_clone" for clone in CLONES)


def test_check_table_asks_about_an_undeclared_original(
    demo_data_dir: Path, open_engine: Opener
) -> None:
    result = _run(open_engine, "check", *MAYA_OPTIONS, "--data-dir", demo_data_dir)
    assert result.exit_code == 0, result.output
    assert "twitter/maya_okafor may be yours" in result.stdout
    assert "--mine twitter:maya_okafor" in result.stdout

    declared = _run(
        open_engine, "check", *MAYA_OPTIONS, "--mine", "twitter:maya_okafor",
        "--data-dir", demo_data_dir,
    )  # fmt: skip
    assert declared.exit_code == 0, declared.output
    assert "your own accounts, compared too and never listed: twitter/maya_okafor" in (
        declared.stdout
    )
    assert "may be yours" not in declared.stdout


def test_a_bad_mine_exits_2_before_loading_the_engine(tmp_path: Path) -> None:
    def no_engine(settings: Settings) -> AbstractContextManager[Any]:
        raise AssertionError("the command must fail before loading the engine")

    result = _run(
        no_engine, "check", *MAYA_OPTIONS, "--mine", "maya_okafor", "--data-dir", tmp_path
    )
    assert result.exit_code == 2, result.output
    assert "--mine maya_okafor" in result.stderr
