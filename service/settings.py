"""All settings in one pydantic-settings class, passed explicitly (never a module global)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings read from `CLONEFINDER_*` environment variables, or given directly in code."""

    model_config = SettingsConfigDict(env_prefix="CLONEFINDER_", extra="ignore")

    data_dir: Path = Field(default=Path("clonefinder-data"))
    database_url: str | None = None  # default: SQLite file in data_dir
    vector_backend: Literal["faiss"] = "faiss"
    embedding_model: str | None = None  # a path or a name; default: the bundled all-MiniLM-L6-v2
    embedding_batch_size: int = 128  # measured fastest on 2 cores (bench/speed.py)

    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    avatar_fetch_timeout_s: float = 5.0
    avatar_fetch_allow_private: bool = False  # tests on localhost only; never in production

    max_body_bytes: int = 32 * 1024 * 1024
    max_records_per_request: int = 10_000

    index_save_every: int = 5_000  # changes between automatic index saves
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'clonefinder.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"
