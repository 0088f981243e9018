"""Cases, captures and evidence exports over HTTP, against a real server process; bundles
checked with `clonefinder evidence verify`, the audit log with `clonefinder audit verify`."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import RunningServer
from tests.support import copy_of, create_key, error_code, ingest, person, unique_tag

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.base_url, timeout=60.0, headers=api_server.headers
    ) as http:
        yield http


@pytest.fixture(scope="module")
def investigator(api_server: RunningServer) -> dict[str, str]:
    return create_key(api_server, role="investigator")


def victim_and_clone(client: httpx.Client, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    tag = unique_tag()
    victim = person(tag, seed=seed)
    clone = copy_of(victim, seed, handle=f"vic{tag}_official")
    ingest(client, victim, clone)
    return victim, clone


def open_case(client: httpx.Client, victim: dict[str, Any], headers: dict[str, str]) -> int:
    response = client.post(
        "/v1/cases",
        json={"victim": {"platform": "twitter", "handle": victim["handle"]}, "notes": "from Q."},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    case_id: int = response.json()["id"]
    return case_id


def verify(path: Path, *extra: str) -> Any:
    return CliRunner().invoke(app, ["evidence", "verify", str(path), *extra])


def test_an_investigator_builds_a_case_and_exports_a_bundle_that_verifies(
    client: httpx.Client, investigator: dict[str, str], api_server: RunningServer, tmp_path: Path
) -> None:
    victim, clone = victim_and_clone(client, seed=9301)
    case_id = open_case(client, victim, investigator)

    added = client.post(
        f"/v1/cases/{case_id}/items", json={"from_check": True}, headers=investigator
    )
    assert added.status_code == 201, added.text
    (entry,) = [a for a in added.json()["added"] if a["handle"] == clone["handle"]]
    capture = entry["capture"]["content"]
    assert entry["new_item"]
    assert capture["clone"]["record"]["handle"] == clone["handle"]
    assert capture["clone"]["record"]["display_name"] == clone["display_name"]
    assert capture["victim"]["record"]["handle"] == victim["handle"]
    assert capture["label"] == "likely_clone" and capture["reasons"]
    assert set(capture["signals"]) == {"avatar", "display_name", "handle", "bio"}
    assert capture["captured_at"].endswith("Z")
    assert {"clonefinder", "scoring_model", "embedding_model"} <= set(capture["versions"])
    assert len(capture["clone"]["avatar"]["sha256"]) == 64

    item_id = entry["item_id"]
    changed = client.patch(
        f"/v1/cases/{case_id}/items/{item_id}",
        json={"status": "reported", "notes": "takedown request sent"},
        headers=investigator,
    )
    assert changed.status_code == 200 and changed.json()["status"] == "reported"
    changed = client.patch(
        f"/v1/cases/{case_id}", json={"status": "reported"}, headers=investigator
    )
    assert changed.json()["status"] == "reported"

    bundle = client.get(
        f"/v1/cases/{case_id}/export", params={"format": "bundle"}, headers=investigator
    )
    assert bundle.status_code == 200, bundle.text
    assert bundle.headers["content-type"] == "application/zip"
    assert f"case-{case_id}-evidence.zip" in bundle.headers["content-disposition"]
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle.content)
    key = client.get("/v1/evidence/public-key", headers=investigator).json()
    pem = tmp_path / "service.pem"
    pem.write_text(key["public_key_pem"], encoding="ascii")
    result = verify(path, "--public-key", str(pem))
    assert result.exit_code == 0, result.output
    assert key["fingerprint"] in result.output

    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("items.csv").decode("utf-8-sig"))))
        assert archive.read("public_key.pem").decode("ascii") == key["public_key_pem"]
    (row,) = [r for r in rows if r["clone_handle"] == clone["handle"]]
    assert row["item_status"] == "reported" and row["victim_handle"] == victim["handle"]

    # Tampered with after the export: verify names the file.
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as source:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as forged:
            for info in source.infolist():
                data = source.read(info)
                if info.filename == "items.csv":
                    data = data.replace(b"reported", b"closed__")
                forged.writestr(info, data)
            forged.comment = source.comment
    path.write_bytes(out.getvalue())
    result = verify(path)
    assert result.exit_code == 5
    assert "items.csv: SHA-256 does not match the manifest" in result.output

    # Every change and export of the case is in the audit log, whose chain holds.
    result = CliRunner().invoke(
        app, ["audit", "list", "--limit", "500", "--json", "--data-dir", str(api_server.data_dir)]
    )
    entries = [line for line in result.output.splitlines() if f'"case {case_id}"' in line]
    actions = [line.split('"action": "')[1].split('"')[0] for line in entries]
    assert actions == ["case.create", "item.add", "item.update", "case.update", "case.export"]
    result = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(api_server.data_dir)])
    assert result.exit_code == 0, result.output


def test_a_capture_never_changes_and_capturing_again_adds_one(
    client: httpx.Client, investigator: dict[str, str]
) -> None:
    victim, clone = victim_and_clone(client, seed=9302)
    case_id = open_case(client, victim, investigator)
    first = client.post(
        f"/v1/cases/{case_id}/items",
        json={"platform": "twitter", "handle": clone["handle"]},
        headers=investigator,
    ).json()["added"][0]

    ingest(client, {**clone, "display_name": "Someone Else Entirely", "followers_count": 90000})
    again = client.post(
        f"/v1/cases/{case_id}/items/{first['item_id']}/captures", headers=investigator
    )
    assert again.status_code == 201, again.text

    item = client.get(f"/v1/cases/{case_id}/items/{first['item_id']}", headers=investigator).json()
    older, newer = item["captures"]
    assert older == first["capture"]  # exactly as it was captured
    assert older["content"]["clone"]["record"]["display_name"] == clone["display_name"]
    assert newer["content"]["clone"]["record"]["display_name"] == "Someone Else Entirely"
    assert newer["sha256"] != older["sha256"]
    assert item["score"] == newer["content"]["score"]


def test_only_investigators_and_admins_work_on_cases(
    client: httpx.Client, api_server: RunningServer, investigator: dict[str, str]
) -> None:
    victim, _ = victim_and_clone(client, seed=9303)
    case_id = open_case(client, victim, investigator)
    for role in ("individual", "platform"):
        headers = create_key(api_server, role=role)
        assert error_code(client.get("/v1/cases", headers=headers), 403) == "forbidden"
        body = {"victim": {"platform": "twitter", "handle": victim["handle"]}}
        assert error_code(client.post("/v1/cases", json=body, headers=headers), 403) == "forbidden"
    other = create_key(api_server, role="investigator")
    assert error_code(client.get(f"/v1/cases/{case_id}", headers=other), 404) == "not_found"
    listed = client.get("/v1/cases", headers=other).json()["cases"]
    assert case_id not in [c["id"] for c in listed]
    # An administrator sees every key's case.
    assert client.get(f"/v1/cases/{case_id}").status_code == 200


def test_an_individual_exports_the_evidence_of_its_own_check(
    client: httpx.Client, api_server: RunningServer, tmp_path: Path
) -> None:
    victim, clone = victim_and_clone(client, seed=9304)
    individual = create_key(api_server, role="individual")
    # An individual sends what it compares: nothing is filled in from the store for it.
    own = {k: victim[k] for k in ("platform", "handle", "display_name", "bio", "avatar_base64")}
    answer = client.post(
        "/v1/evidence/checks", params={"format": "bundle"}, json=own, headers=individual
    )
    assert answer.status_code == 200, answer.text
    path = tmp_path / "check.zip"
    path.write_bytes(answer.content)
    result = verify(path)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(path) as archive:
        text = archive.read("items.csv").decode("utf-8-sig")
    assert clone["handle"] in text

    pdf = client.post("/v1/evidence/checks?format=pdf", json=own, headers=individual)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_adding_from_a_scan_result_line(client: httpx.Client) -> None:
    victim, clone = victim_and_clone(client, seed=9305)
    case_id = open_case(client, victim, {})  # the admin key: scans and cases
    job = client.post("/v1/scans", json=[{k: v for k, v in clone.items()}])
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/scans/{job_id}").json()["state"] != "done":
        assert time.monotonic() < deadline, "the scan did not finish"
        time.sleep(0.2)
    added = client.post(f"/v1/cases/{case_id}/items", json={"scan_id": job_id, "line": 0})
    assert added.status_code == 201, added.text
    handles = {a["handle"] for a in added.json()["added"]}
    assert clone["handle"] in handles and victim["handle"] not in handles
    assert added.json()["added"][0]["capture"]["content"]["source"] == f"scan {job_id} line 0"
    missing = client.post(f"/v1/cases/{case_id}/items", json={"scan_id": job_id, "line": 5})
    assert error_code(missing, 404) == "not_found"


def test_bad_case_requests_answer_with_the_reason_and_change_nothing(
    client: httpx.Client, investigator: dict[str, str]
) -> None:
    victim, clone = victim_and_clone(client, seed=9306)
    missing = {"victim": {"platform": "twitter", "handle": f"nobody{unique_tag()}"}}
    assert error_code(client.post("/v1/cases", json=missing, headers=investigator), 404) == (
        "not_found"
    )
    case_id = open_case(client, victim, investigator)
    bad_status = client.patch(f"/v1/cases/{case_id}", json={"status": "won"}, headers=investigator)
    assert error_code(bad_status, 422) == "invalid_request"
    both = {"platform": "twitter", "handle": clone["handle"], "from_check": True}
    answer = client.post(f"/v1/cases/{case_id}/items", json=both, headers=investigator)
    assert error_code(answer, 422) == "invalid_input"
    own = {"platform": "twitter", "handle": victim["handle"]}
    answer = client.post(f"/v1/cases/{case_id}/items", json=own, headers=investigator)
    assert error_code(answer, 422) == "invalid_input"
    answer = client.get(f"/v1/cases/{case_id}/export?format=docx", headers=investigator)
    assert error_code(answer, 422) == "invalid_request"
    case = client.get(f"/v1/cases/{case_id}", headers=investigator).json()
    assert case["status"] == "open" and case["items"] == []
