"""human programs: program_source gains 'human' (a reviewer's corrected program, verified at import)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE program_source ADD VALUE IF NOT EXISTS 'human'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value: rebuild the type without it (human programs go).
    op.execute("DELETE FROM programs WHERE source = 'human'")
    op.drop_index("uq_programs_reference_problem", table_name="programs")  # its WHERE uses the type
    op.execute("ALTER TYPE program_source RENAME TO program_source_0004")
    op.execute("CREATE TYPE program_source AS ENUM ('reference', 'teacher', 'model')")
    op.execute(
        "ALTER TABLE programs ALTER COLUMN source TYPE program_source USING source::text::program_source"
    )
    op.execute("DROP TYPE program_source_0004")
    op.create_index("uq_programs_reference_problem", "programs", ["problem_id"], unique=True,
                    postgresql_where="source = 'reference'")
