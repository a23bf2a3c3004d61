"""learning half: label snapshots, model registry columns, label/annotation provenance,
inference results; the label_coverage view

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.views import CURRENT_LABELS, VIEWS_0002

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SPLIT = postgresql.ENUM("train", "dev", "test", name="split", create_type=False)


def upgrade() -> None:
    op.create_table(
        "label_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("split", _SPLIT, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("label_ids", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("problem_ids", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_snapshots")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_label_snapshots_content_hash")),
    )
    op.add_column("labels", sa.Column("program_id", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_labels_program_id_programs"), "labels", "programs",
                          ["program_id"], ["id"], ondelete="SET NULL")
    # current_labels is `SELECT l.*`: re-create it so that it shows the new column.
    op.execute(CURRENT_LABELS.replace("CREATE VIEW", "CREATE OR REPLACE VIEW"))

    op.add_column("models", sa.Column("artifact_sha256", sa.String(length=64), nullable=True))
    op.add_column("models", sa.Column("snapshot_id", sa.Integer(), nullable=True))
    op.add_column("models", sa.Column("snapshot_hash", sa.String(length=64), nullable=True))
    op.add_column("models", sa.Column("training_config", postgresql.JSONB(astext_type=sa.Text()),
                                      server_default="{}", nullable=False))
    op.add_column("models", sa.Column("config_hash", sa.String(length=64), nullable=True))
    op.create_foreign_key(op.f("fk_models_snapshot_id_label_snapshots"), "models", "label_snapshots",
                          ["snapshot_id"], ["id"], ondelete="SET NULL")
    op.create_index("uq_models_specialist_snapshot_config", "models",
                    ["specialist", "snapshot_hash", "config_hash"], unique=True)

    op.add_column("annotations", sa.Column("program_text", sa.Text(), nullable=True))
    op.add_column("annotations", sa.Column("verdict", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("annotations", sa.Column("lead_time_s", sa.Float(), nullable=True))

    op.create_table(
        "inference_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("paths_explored", sa.Integer(), nullable=False),
        sa.Column("disagreement", sa.Boolean(), nullable=False),
        sa.Column("candidates", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("no_answer_reason", sa.Text(), nullable=True),
        sa.Column("ms", sa.Float(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("in_beam", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["problem_id"], ["problems.id"],
                                name=op.f("fk_inference_results_problem_id_problems"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"],
                                name=op.f("fk_inference_results_program_id_programs"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"],
                                name=op.f("fk_inference_results_round_id_rounds"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inference_results")),
        sa.UniqueConstraint("problem_id", "model_version", name=op.f("uq_inference_results_problem_id_model_version")),
    )
    op.create_index(op.f("ix_inference_results_problem_id"), "inference_results", ["problem_id"], unique=False)
    for create_view in VIEWS_0002.values():
        op.execute(create_view)


def downgrade() -> None:
    for name in reversed(list(VIEWS_0002)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index(op.f("ix_inference_results_problem_id"), table_name="inference_results")
    op.drop_table("inference_results")
    op.drop_column("annotations", "lead_time_s")
    op.drop_column("annotations", "verdict")
    op.drop_column("annotations", "program_text")
    op.drop_index("uq_models_specialist_snapshot_config", table_name="models")
    op.drop_constraint(op.f("fk_models_snapshot_id_label_snapshots"), "models", type_="foreignkey")
    for column in ("config_hash", "training_config", "snapshot_hash", "snapshot_id", "artifact_sha256"):
        op.drop_column("models", column)
    op.execute("DROP VIEW current_labels")
    op.drop_constraint(op.f("fk_labels_program_id_programs"), "labels", type_="foreignkey")
    op.drop_column("labels", "program_id")
    op.execute(CURRENT_LABELS)
    op.drop_table("label_snapshots")
