"""Create the SQL transport's tables and queue rows once per database, one process at a time.

kombu's SQLAlchemy transport (``sqla+postgresql+psycopg://…``) creates its tables on a channel's
first use and a queue's row on first use of the queue, guarded only by a *thread* lock. A worker
and a publisher that start together on a fresh database both run ``CREATE SEQUENCE
queue_id_sequence`` and one of them dies on Postgres' duplicate-key error (the same race exists
for the ``kombu_queue`` rows, whose unique violation kombu does not catch either).

:func:`prepare_sql_transport` does that creation first, through kombu's own channel code, while
holding the migration advisory lock (:func:`app.db.migrate.migration_lock`), so concurrent
processes take turns and kombu later finds everything in place. Redis and RabbitMQ brokers are
left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery

log = logging.getLogger(__name__)

SQL_TRANSPORT_SCHEMES = ("sqla+", "sqlalchemy+")

_prepared: set[str] = set()  # database URLs prepared by this process


def is_sql_transport(broker_url: str) -> bool:
    """Whether ``broker_url`` names kombu's SQLAlchemy transport."""
    return broker_url.startswith(SQL_TRANSPORT_SCHEMES)


def sql_transport_database(broker_url: str) -> str:
    """The SQLAlchemy URL inside a ``sqla+…`` broker URL."""
    if not is_sql_transport(broker_url):
        raise ValueError(f"broker URL {broker_url!r} is not kombu's SQL transport (sqla+…)")
    return broker_url.split("+", 1)[1]


def prepare_sql_transport(app: Celery, queues: Iterable[str]) -> bool:
    """Create kombu's tables and the rows of ``queues`` in the SQL broker's database, once.

    Returns True when this call prepared the database, False when there was nothing to do (another
    broker, or this process already did it). Database errors propagate: the caller decides whether
    a worker may start anyway (kombu would then retry its own creation).
    """
    broker = str(app.conf.broker_url)
    if not is_sql_transport(broker):
        return False
    database = sql_transport_database(broker)
    if database in _prepared:
        return False
    from app.db.migrate import migration_lock

    with app.connection_for_write() as connection:
        channel = connection.channel()  # declares kombu's table classes; opens no session yet
        try:
            with migration_lock(database):
                for queue in sorted(set(queues)):
                    channel._new_queue(queue)  # first use: kombu's create_all, then the queue row
        finally:
            channel.close()
    _prepared.add(database)
    log.info("SQL broker tables and queues %s are in place in %s", sorted(set(queues)), database.split("@")[-1])
    return True
