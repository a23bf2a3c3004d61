"""attribution views: error_stats counts NO_REFERENCE; error_by_dataset, error_by_specialist,
error_round_comparison

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:30:00
"""

from __future__ import annotations

from alembic import op

from app.db.views import ERROR_STATS, VIEWS_0003

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for create_view in VIEWS_0003.values():
        op.execute(create_view)


def downgrade() -> None:
    for name in reversed(list(VIEWS_0003)):
        if name == "error_stats":  # created by 0001: restore its definition
            op.execute(ERROR_STATS.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        else:
            op.execute(f"DROP VIEW IF EXISTS {name}")
