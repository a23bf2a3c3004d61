"""The Celery application: broker and result backend from settings, the gpu/cpu/io queues and routes.

Broker: ``CELERY_BROKER_URL`` (Redis or RabbitMQ) or, unset, kombu's SQLAlchemy transport on the
project's Postgres (``sqla+postgresql+psycopg://…``). Result backend: ``CELERY_RESULT_BACKEND`` or
the same Postgres (``db+postgresql+psycopg://…``). Configuration is resolved lazily, on first use,
so importing this module never connects anywhere.

Start a worker with ``mycelium worker`` (or ``celery -A workers.celery_app worker -Q cpu``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Queue

from workers.dispatch import RUN_CHUNK_TASK
from workers.kinds import QUEUES, get_kind
from workers.sql_broker import is_sql_transport, prepare_sql_transport

log = logging.getLogger(__name__)

# Queue of every other task family, by task-name pattern (job chunks are routed by their kind).
TASK_NAME_ROUTES: dict[str, dict[str, str]] = {
    "mycelium.teacher.*": {"queue": "gpu"},
    "mycelium.training.*": {"queue": "gpu"},
    "mycelium.validation.*": {"queue": "cpu"},
    "mycelium.inference.*": {"queue": "cpu"},
    "mycelium.attribution.*": {"queue": "cpu"},
    "mycelium.labelstudio.*": {"queue": "io"},
}


def broker_url() -> str:
    """``CELERY_BROKER_URL``, or the SQL transport on the project database."""
    from app.config import get_settings
    from app.db.session import database_url

    return get_settings().celery_broker_url or f"sqla+{database_url()}"


def result_backend_url() -> str:
    """``CELERY_RESULT_BACKEND``, or Celery's database backend on the project database."""
    from app.config import get_settings
    from app.db.session import database_url

    return get_settings().celery_result_backend or f"db+{database_url()}"


def broker_transport_options(url: str) -> dict[str, Any]:
    """Per-transport options: Redis needs the visibility timeout (and may share a key prefix).

    The SQL transport passes its options to ``create_engine``, so it gets none; its polling
    interval is a class attribute (see :func:`celery_config`).
    """
    from workers.settings import get_worker_settings

    settings = get_worker_settings()
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        options: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout_s}
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
        return options
    return {}


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> dict[str, str] | None:
    """Router: a job chunk goes to its kind's queue; other tasks fall through to the name routes."""
    if name == RUN_CHUNK_TASK and kwargs and "kind" in kwargs:
        return {"queue": get_kind(kwargs["kind"]).queue}
    return None


def celery_config() -> dict[str, Any]:
    """The full Celery configuration, read from the settings when first needed."""
    from workers.settings import get_worker_settings

    broker = broker_url()
    backend = result_backend_url()
    if is_sql_transport(broker):
        import kombu.transport.sqlalchemy

        # A transport option would be handed to create_engine() and crash the worker.
        kombu.transport.sqlalchemy.Transport.polling_interval = get_worker_settings().broker_poll_interval_s
    config: dict[str, Any] = {
        "broker_url": broker,
        "result_backend": backend,
        "broker_transport_options": broker_transport_options(broker),
        "broker_connection_retry_on_startup": True,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_default_queue": "cpu",
        "task_routes": (route_task, TASK_NAME_ROUTES),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 7 * 24 * 3600,
    }
    if backend.startswith(("redis://", "rediss://")) and get_worker_settings().broker_key_prefix:
        config["result_backend_transport_options"] = {"global_keyprefix": get_worker_settings().broker_key_prefix}
    return config


def create_app() -> Celery:
    """A Celery app whose configuration is resolved from the environment when first used."""
    celery = Celery("mycelium", include=["workers.tasks"])
    celery.add_defaults(celery_config)
    return celery


app = create_app()


@signals.worker_init.connect
def _prepare_sql_broker(sender: Any = None, **_: Any) -> None:
    """Before the consumer connects: create the SQL broker's tables under the migration lock.

    A failure is logged, not raised: kombu creates the tables itself on connect (and retries the
    connection), so a broker that is not up yet does not stop the worker from starting.
    """
    if sender is None:
        return
    try:
        prepare_sql_transport(sender.app, QUEUES)
    except Exception as exc:  # noqa: BLE001 - the worker's own broker connection retries
        log.warning("could not prepare the SQL broker's tables before connecting: %s", exc)


@signals.worker_process_init.connect
def _forget_inherited_connections(**_: Any) -> None:
    """A forked pool process must not reuse its parent's database sockets: drop them unclosed."""
    from app.db.session import get_engine

    get_engine().dispose(close=False)
    try:
        from kombu.transport.sqlalchemy import Channel
    except ImportError:
        return
    for engine, _session in list(Channel._engines.values()):  # kombu caches one engine per URL
        engine.dispose(close=False)


@signals.worker_ready.connect
def _resume_stalled_jobs(sender: Any = None, **_: Any) -> None:
    """On start, send one more task to every unfinished job of this worker's queues that has free items.

    This is how a job outlives a worker killed mid-task on brokers that never redeliver (the SQL
    transport) or redeliver only after the visibility timeout (Redis).
    """
    from workers.dispatch import resume_stalled_jobs

    queues = sorted(sender.app.amqp.queues.consume_from) if sender is not None else list(QUEUES)
    try:
        resumed = resume_stalled_jobs(sender.app if sender is not None else app, queues)
    except Exception:
        log.exception("could not look for stalled jobs")
        return
    if resumed:
        log.info("resumed stalled jobs %s on queues %s", resumed, ",".join(queues))


_sweeper: Any = None  # this worker's LeaseSweeper (workers.recovery), once it is ready


@signals.worker_ready.connect
def _start_lease_sweep(sender: Any = None, **_: Any) -> None:
    """The worker's heartbeat: every sweep interval, re-send work for jobs that a dead worker left
    idle past the lease, so they finish without a restart (workers.recovery)."""
    global _sweeper
    from workers.recovery import start_sweeper

    if _sweeper is not None:
        return
    queues = sorted(sender.app.amqp.queues.consume_from) if sender is not None else list(QUEUES)
    _sweeper = start_sweeper(sender.app if sender is not None else app, queues)
    if _sweeper is not None:
        log.info("lease sweep every %s s (lease %s s) on queues %s", _sweeper.interval_s, _sweeper.lease_s,
                 ",".join(queues))


@signals.worker_shutdown.connect
def _stop_lease_sweep(**_: Any) -> None:
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None
