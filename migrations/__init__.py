"""Alembic migrations for the Mycelium schema (see ``app.db.migrate``)."""
