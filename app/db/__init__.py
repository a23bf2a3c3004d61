"""Database layer: typed models (``models``), engine/sessions (``session``), embedded Postgres (``embedded``)."""
