"""The SQL broker's tables are created once, one process at a time (workers/sql_broker.py).

Regression: CI failed once with ``duplicate key … (queue_id_sequence, 2200)`` when a worker and a
publisher opened kombu's SQL transport on a fresh embedded Postgres at the same moment.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery
from sqlalchemy import create_engine, text

from tests.conftest import create_database, drop_database
from workers.sql_broker import is_sql_transport, prepare_sql_transport, sql_transport_database

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

PROCESSES = 6


@pytest.fixture()
def empty_database() -> Iterator[str]:
    """A fresh database with no tables at all."""
    name = f"mycelium_sqlbroker_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def sql_app(database: str) -> Celery:
    return Celery("sql-broker-test", broker=f"sqla+{database}")


def prepare_after_barrier(database: str, barrier, queues: list[str], results) -> None:  # noqa: ANN001
    """One racing process: wait for the others, prepare the broker, report the outcome."""
    barrier.wait(timeout=60)
    try:
        results.put(prepare_sql_transport(sql_app(database), queues))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")


def broker_state(database: str) -> tuple[set[str], list[str]]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            tables = set(conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
            queues = list(conn.execute(text("SELECT name FROM kombu_queue ORDER BY name")).scalars())
    finally:
        engine.dispose()
    return tables, queues


def test_broker_urls_are_told_apart() -> None:
    assert is_sql_transport("sqla+postgresql+psycopg://u@h/db")
    assert not is_sql_transport("redis://127.0.0.1:6379/0")
    assert sql_transport_database("sqla+postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ValueError, match="not kombu's SQL transport"):
        sql_transport_database("amqp://guest@127.0.0.1//")


def test_processes_preparing_one_fresh_database_together_all_succeed(empty_database: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, outcomes = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=prepare_after_barrier, args=(empty_database, barrier, ["cpu", "gpu", "io"], outcomes))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [outcomes.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert results == [True] * PROCESSES  # each process prepared it once, none crashed
    tables, queues = broker_state(empty_database)
    assert {"kombu_queue", "kombu_message"} <= tables
    assert queues == ["cpu", "gpu", "io"]  # one row per queue, no duplicates


def test_prepared_broker_carries_a_message_and_is_prepared_once_per_process(empty_database: str) -> None:
    app = sql_app(empty_database)
    assert prepare_sql_transport(app, ["cpu"]) is True
    assert prepare_sql_transport(app, ["cpu"]) is False  # this process already did it
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue("cpu")
        queue.put({"problem": 7})
        assert queue.get(timeout=5).payload == {"problem": 7}
        queue.close()


def test_other_brokers_are_left_alone() -> None:
    assert prepare_sql_transport(Celery("redis-test", broker="redis://127.0.0.1:6379/0"), ["cpu"]) is False
