"""The production deployment file (deploy/compose.yaml) holds together: every service is
health-checked, the stateful ones keep their data on named volumes, and the API and workers
are configured with settings and commands that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from service.cli import app
from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "compose.yaml"
STATEFUL = {"postgres": "/var/lib/postgresql/data", "etcd": "/etcd", "minio": "/minio_data"}
STATEFUL["milvus"] = "/var/lib/milvus"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # merges `<<:` keys
    assert isinstance(document, dict)
    return document


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "etcd", "minio", "milvus", "api", "worker"}
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_stateful_services_keep_their_data_on_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, path in STATEFUL.items():
        mounts = dict(v.split(":", 1) for v in compose["services"][name]["volumes"])
        assert path in mounts.values(), f"{name} keeps {path} nowhere"
        volume = next(source for source, target in mounts.items() if target == path)
        assert volume in declared, f"{name}'s {volume} is not a named volume"


def test_the_api_and_workers_use_postgres_and_milvus(compose: dict[str, Any]) -> None:
    services = compose["services"]
    fields = set(Settings.model_fields)
    for name in ("api", "worker"):
        service = services[name]
        env = service["environment"]
        for variable in env:
            assert variable.startswith("CLONEFINDER_"), variable
            assert variable.removeprefix("CLONEFINDER_").lower() in fields, f"no setting {variable}"
        url = make_url(
            env["CLONEFINDER_DATABASE_URL"].replace(
                "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "pw"
            )
        )
        assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
        assert url.database == services["postgres"]["environment"]["POSTGRES_DB"]
        assert url.username == services["postgres"]["environment"]["POSTGRES_USER"]
        settings = Settings(**{k.removeprefix("CLONEFINDER_").lower(): v for k, v in env.items()})
        assert settings.vector_backend == "milvus"
        assert settings.milvus_uri == "http://milvus:19530"
        assert settings.in_process_worker is False
        assert service["build"]["args"]["EXTRAS"] == "milvus"
        depends = service["depends_on"]
        assert (
            depends["postgres"]["condition"] == depends["milvus"]["condition"] == "service_healthy"
        )
        assert service["deploy"]["replicas"] >= 2
    assert services["worker"]["deploy"]["replicas"] == 2


def test_the_commands_exist_and_the_api_check_asks_its_readiness_endpoint(
    compose: dict[str, Any],
) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    assert api["command"][:2] == ["clonefinder", "serve"] and "serve" in commands
    assert worker["command"] == ["clonefinder", "worker"] and "worker" in commands
    port = api["command"][api["command"].index("--port") + 1]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["ports"][0].endswith(f":{port}")


def test_the_image_checks_readiness_on_the_port_it_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (check,) = re.findall(r"^HEALTHCHECK .*\n\s+CMD (.*)$", dockerfile, flags=re.M)
    assert "'/readyz'" in check and "CLONEFINDER_PORT" in check
    assert re.search(r"CLONEFINDER_PORT=8000", dockerfile)
    assert re.search(r'^CMD \[.*"--port", "8000"\]', dockerfile, flags=re.M)


def test_the_image_installs_the_extra_the_file_asks_for() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG EXTRAS=", dockerfile, flags=re.M)
    assert "mkdir /data /keys" in dockerfile  # the shared key volume is writable by the user
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "milvus" in pyproject["project"]["optional-dependencies"]
