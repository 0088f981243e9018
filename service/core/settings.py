"""All settings in one pydantic-settings class, passed explicitly (never a module global)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Settings read from `CLONEFINDER_*` environment variables, or given directly in code."""

    model_config = SettingsConfigDict(env_prefix="CLONEFINDER_", extra="ignore")

    data_dir: Path = Field(default=Path("clonefinder-data"))
    database_url: str | None = None  # default: SQLite file in data_dir
    vector_backend: Literal["faiss", "milvus"] = "faiss"
    # Milvus (`vector_backend="milvus"`, the `milvus` extra): a server address such as
    # `http://host:19530`, or a milvus-lite file ending in `.db` (default: DATA_DIR/milvus.db),
    # which serves one process only. Collections are named `{prefix}_avatar` and so on.
    milvus_uri: str | None = None
    milvus_token: str | None = None
    milvus_collection_prefix: str = Field(
        default="clonefinder", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    embedding_model: str | None = None  # a path or a name; default: the bundled all-MiniLM-L6-v2
    embedding_backend: Literal["onnx-int8", "torch"] = "onnx-int8"
    model_cache_dir: Path | None = None  # where the ONNX export is kept; default: data_dir/models
    # Bios are length-sorted, then run this many at a time: small batches pad less (a scan's
    # 128-profile chunks embed at 1.2 ms a bio in batches of 32, 1.6 ms in one of 128).
    embedding_batch_size: int = 32

    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    avatar_fetch_timeout_s: float = 5.0
    avatar_fetch_allow_private: bool = False  # tests on localhost only; never in production

    max_body_bytes: int = 32 * 1024 * 1024
    max_records_per_request: int = 10_000

    # --- API keys and limits per key -------------------------------------------------------
    # Requests a key may make per minute, on average, in each server process (0: no limit),
    # and how many it may send at once before the average applies (a token bucket).
    rate_limit_per_minute: int = Field(default=600, ge=0)
    rate_limit_burst: int = Field(default=60, ge=1)
    # Avatars (avatar_base64, avatar_url or avatar_path) one request's records may carry: each
    # is decoded and hashed, some fetched, so they cost far more than the rest of a record.
    max_images_per_request: int = Field(default=1_000, ge=0)

    # Changes between automatic index saves: at least this many, and a tenth of the index.
    index_save_every: int = 5_000
    host: str = "127.0.0.1"
    port: int = 8000

    # --- watchlists, alerts and webhooks ---------------------------------------------------
    # One webhook POST may take this long in all (connect, send, answer); then it is a failed
    # attempt. Failed attempts are retried after base, 2 x base, 4 x base, ... (at most
    # `webhook_retry_max_s` apart) until `webhook_max_attempts` were made.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_s: float = Field(default=30.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    # How often a delivery loop looks for due deliveries written by other processes (a new
    # alert of its own process wakes it at once), and how many it sends at the same time.
    webhook_poll_interval_s: float = Field(default=2.0, gt=0)
    webhook_workers: int = Field(default=2, ge=1)

    # --- e-mail of watchlist alerts -----------------------------------------------------------
    # Alerts are e-mailed (to a confirmed address) through this SMTP server, from the same
    # delivery loop as webhooks and with the same retries. Without a host and a sender nothing
    # is sent, and a watch that gives an e-mail address is refused.
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)  # default: 25, 587 or 465 by TLS
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str | None = None  # the From address, e.g. "clonefinder <alerts@example.org>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # The service's address as people's browsers reach it, for the links in e-mails
    # (https://clones.example.org); default: the address the watch request was sent to.
    smtp_link_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    # --- bulk scans: durable jobs and their workers ----------------------------------------
    # `serve` runs one worker in a thread; turn it off when separate `clonefinder worker`
    # processes do the scanning.
    in_process_worker: bool = True
    # Input records a worker claims at once. A chunk goes through a two-stage pipeline in
    # pieces (embed and search the next piece while this one is compared), which only runs
    # full between its first and last piece: 1,024 records measured 20% faster than 256.
    scan_chunk_size: int = Field(default=1024, ge=1)
    # A claimed chunk goes back to the pool this long after its worker stopped renewing the
    # lease (a killed worker); the lease is renewed every third of it.
    scan_lease_s: float = Field(default=60.0, gt=0)
    # How often an idle worker looks for work (and catches up with other processes' writes).
    scan_poll_s: float = Field(default=1.0, gt=0)
    # A chunk claimed this many times without being finished fails its job.
    scan_max_attempts: int = Field(default=5, ge=1)
    # An upload streams into the store, so it may be far larger than `max_body_bytes`.
    max_scan_upload_bytes: int = Field(default=16 * 1024**3, ge=1)
    # One profile record, however it comes (a request body or an element of its list, a JSON
    # Lines line, an element of a JSON-list upload, a line of a file to ingest): a larger one is
    # that record's error. Read from the earlier name too, which said it of scans only.
    max_record_bytes: int = Field(
        default=16 * 1024**2,
        ge=1,
        validation_alias=AliasChoices(
            "max_record_bytes",
            "CLONEFINDER_MAX_RECORD_BYTES",
            "CLONEFINDER_MAX_SCAN_RECORD_BYTES",
        ),
    )

    # --- cases and evidence ------------------------------------------------------------------
    # The Ed25519 key that signs evidence bundles (created on first use, mode 0600); default:
    # DATA_DIR/evidence-signing.key.
    evidence_key_file: Path | None = None
    # Folders searched for the PDF report's fonts (Noto, from Debian's fonts-noto-core,
    # fonts-noto-cjk and fonts-noto-color-emoji).
    pdf_font_dirs: list[Path] = Field(
        default_factory=lambda: [Path("/usr/share/fonts"), Path("/usr/local/share/fonts")]
    )

    # --- the web page at / ------------------------------------------------------------------
    # `local`: the page's endpoints answer without a key, but only to a browser on this machine
    # (loopback client and Host); `public`: to anyone, through a check that is rate limited
    # per client address, returns only the matches of what was sent and keeps no upload unless
    # the person asks to be watched; `off`: no page.
    web_mode: Literal["local", "public", "off"] = "local"
    # Page requests (check, watch, evidence) per client address per minute, on average, after
    # a burst; in `public` mode only (0: no limit).
    web_rate_limit_per_minute: int = Field(default=10, ge=0)
    web_rate_limit_burst: int = Field(default=5, ge=1)
    # The most matches a page check shows.
    web_max_matches: int = Field(default=10, ge=1, le=100)

    # --- the client's address ------------------------------------------------------------------
    # Reverse proxies whose `X-Forwarded-For` names the client: addresses or networks, comma-
    # separated in the environment (`10.0.0.2,192.168.0.0/24`). Nobody else's is believed, not
    # even loopback's, so a client cannot choose its address: its rate-limit bucket, or being
    # taken for a browser on this machine.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    # --- operating it: logs and metrics -------------------------------------------------------
    # Log lines on stderr: `json` (one object a line, for collectors), `text`, or `auto`: text on
    # a terminal, JSON otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"
    # A port that serves /metrics without a key, for a Prometheus scraper (none: /metrics only
    # on the API's port, to an admin key); on loopback unless `metrics_host` says otherwise.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_evidence_key_file(self) -> Path:
        return self.evidence_key_file or self.data_dir / "evidence-signing.key"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'clonefinder.db').resolve()}"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def resolved_milvus_uri(self) -> str:
        if self.milvus_uri:
            return self.milvus_uri
        return str((self.data_dir / "milvus.db").resolve())

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def sends_mail(self) -> bool:
        return bool(self.smtp_host and self.smtp_sender)

    @property
    def resolved_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"none": 25, "starttls": 587, "tls": 465}[self.smtp_tls]
