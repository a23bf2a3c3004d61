"""Worker-only settings (env prefix ``MYCELIUM_WORKER_``); broker and database URLs live in ``app.config``."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Tuning knobs of the Celery layer. Environment names: ``MYCELIUM_WORKER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="MYCELIUM_WORKER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    visibility_timeout_s: int = Field(
        default=48 * 3600,
        description="Redis: an unacknowledged task is redelivered after this long. Must exceed the longest "
        "job (a GSM8K teacher pass on one GPU runs for about a day); a crashed worker's work is "
        "resumed sooner by the job table (see workers.recovery).",
    )
    broker_poll_interval_s: float = Field(
        default=0.5, description="Seconds between polls of the SQL broker (kombu's SQLAlchemy transport)."
    )
    broker_key_prefix: str = Field(
        default="", description="Redis only: prefix for every broker key, to share one Redis between deployments."
    )
    extra_task_modules: str = Field(
        default="", description="Comma-separated modules imported by workers to register more job kinds."
    )
    lease_s: float = Field(
        default=600.0,
        description="A job with unclaimed items and no progress (no item claimed or finished) for this long is "
        "sent a new task by the workers' lease sweep, and a committed claim this old that no live "
        "transaction holds is released (workers.recovery). Longer than one batch of the slowest kind.",
    )
    sweep_interval_s: float = Field(
        default=60.0, description="Seconds between lease sweeps in every worker (0 disables the sweep)."
    )
    max_retries: int = Field(default=5, description="Retries of a task that hit a transient error.")
    retry_backoff_max_s: int = Field(default=300, description="Cap of the exponential retry backoff.")

    def extra_modules(self) -> list[str]:
        return [name.strip() for name in self.extra_task_modules.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    """The process-wide worker settings (cached; ``get_worker_settings.cache_clear()`` after changing env)."""
    return WorkerSettings()
