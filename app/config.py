"""Settings from environment variables and an optional ``.env`` file (pydantic-settings).

Unset ``DATABASE_URL`` means "use the embedded Postgres under ``MYCELIUM_HOME``";
unset ``CELERY_BROKER_URL`` means "use that same Postgres as the Celery broker".
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All runtime configuration. Environment variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/mycelium. "
        "Unset: an embedded Postgres under MYCELIUM_HOME.",
    )
    celery_broker_url: str | None = Field(
        default=None, description="redis://… or amqp://…; unset: kombu's SQLAlchemy transport on DATABASE_URL."
    )
    celery_result_backend: str | None = Field(
        default=None, description="db+postgresql+psycopg://… or redis://…; unset: the database."
    )
    label_studio_url: str = "http://127.0.0.1:8080"
    label_studio_api_key: str | None = None
    label_studio_webhook_secret: str | None = None
    mycelium_home: Path = Field(default=Path("~/.mycelium"), description="Data directory (embedded DB, models).")

    # Split assignment for ingest: fractions of problems per split, by content hash.
    split_dev_fraction: float = 0.1
    split_test_fraction: float = 0.1

    # Teacher defaults for `mycelium extract` (each overridable by its CLI option).
    teacher_model: str = "Qwen/Qwen2.5-Math-7B-Instruct"
    teacher_dtype: str = "auto"
    teacher_device: str = "auto"

    @field_validator("mycelium_home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return Path(value).expanduser()

    @field_validator("database_url")
    @classmethod
    def _require_psycopg_driver(cls, value: str | None) -> str | None:
        """Always talk to Postgres through psycopg 3: rewrite bare ``postgresql://`` URLs."""
        if not value:
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
