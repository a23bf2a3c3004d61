"""Mycelium: a database-backed active-learning labeling system.

Packages: ``app.config`` (settings), ``app.db`` (schema, sessions, embedded Postgres),
``app.signals`` (attention signals, pure), ``app.execution`` (CoT → sympy programs, pure),
``app.teacher`` (teacher attention capture), ``app.ingest`` / ``app.stats`` (thin DB shells)
and ``app.cli`` (the ``mycelium`` command).
"""

__version__ = "0.1.0"
