"""The relational schema: SQLAlchemy 2 typed declarative models.

Units: every ``*_char_*`` column is a character offset into the text it names (Python ``str``
indexing, end exclusive); every ``*_token_*`` column is a token index of the teacher tokenizer
(end exclusive). Arrays are Postgres arrays, never pickles.

Labels are append-only: a new label row *supersedes* an older one (``supersedes_id``); the
current label of a (problem, task) is the newest row that no other row supersedes and that is
not a withdrawal. History is never overwritten.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A native Postgres enum storing the members' values (lower-case strings)."""
    return Enum(cls, name=name, values_callable=lambda members: [m.value for m in members])


class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class Split(StrEnum):
    TRAIN = "train"
    DEV = "dev"
    TEST = "test"


class TraceStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RegionSource(StrEnum):
    IAF = "iaf"
    CLAUSE = "clause"
    OPERAND = "operand"
    HUMAN = "human"
    MODEL = "model"


class LabelTask(StrEnum):
    """The six specialists' tasks (design §4)."""

    C1 = "C1"  # segmenter: IO tags over problem tokens
    C2 = "C2"  # classifier: region → operation / role
    C3 = "C3"  # extractor: region + op → operands
    C4 = "C4"  # implicit operations
    C5 = "C5"  # dependency between steps
    C6 = "C6"  # answer step + answer type


class LabelSource(StrEnum):
    TEACHER = "teacher"
    EXECUTION = "execution"
    HUMAN = "human"
    MODEL = "model"


class ProgramSource(StrEnum):
    REFERENCE = "reference"  # built from the dataset's reference solution
    TEACHER = "teacher"  # built from a teacher trace's CoT
    MODEL = "model"  # assembled by the specialists at inference
    HUMAN = "human"  # a reviewer's corrected program, verified by execution at import (0004)


class AttributionCategory(StrEnum):
    """Design §6, in firing order (first that fires wins)."""

    ANSWER_NOT_IN_COT = "ANSWER_NOT_IN_COT"
    TEACHER_ERROR = "TEACHER_ERROR"
    SEGMENTATION = "SEGMENTATION"
    CLASSIFICATION = "CLASSIFICATION"
    EXTRACTION = "EXTRACTION"
    DEPENDENCY = "DEPENDENCY"
    SELECTION = "SELECTION"
    EXECUTION = "EXECUTION"


class RoundStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ReviewStatus(StrEnum):
    PUSHED = "pushed"
    ANNOTATED = "annotated"
    IMPORTED = "imported"
    WITHDRAWN = "withdrawn"


class AnnotationAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


# --------------------------------------------------------------------------- problems


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()

    problems: Mapped[list[Problem]] = relationship(back_populates="dataset")


class Problem(Base):
    __tablename__ = "problems"
    __table_args__ = (Index("ix_problems_dataset_split", "dataset_id", "split"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    gold_answer: Mapped[str] = mapped_column(Text)
    gold_solution: Mapped[str | None] = mapped_column(Text)
    level: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64))
    split: Mapped[Split] = mapped_column(_enum(Split, "split"))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()

    dataset: Mapped[Dataset] = relationship(back_populates="problems")


# --------------------------------------------------------------------------- teacher


class TeacherConfig(Base):
    __tablename__ = "teacher_configs"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))  # "forced" | "generate"
    prompt: Mapped[str] = mapped_column(Text)
    max_new_tokens: Mapped[int] = mapped_column(Integer)
    capture: Mapped[dict[str, Any]] = mapped_column(JSONB)  # layers, heads, aggregation, context, peaks…
    config_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()


class Trace(Base):
    """One teacher reading of one problem: the CoT, its token offsets and the outcome."""

    __tablename__ = "traces"
    __table_args__ = (UniqueConstraint("problem_id", "teacher_config_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    teacher_config_id: Mapped[int] = mapped_column(ForeignKey("teacher_configs.id", ondelete="CASCADE"))
    status: Mapped[TraceStatus] = mapped_column(_enum(TraceStatus, "trace_status"))
    error: Mapped[str | None] = mapped_column(Text)
    cot_text: Mapped[str | None] = mapped_column(Text)
    # Char offsets into cot_text of each CoT token (teacher tokenizer), end exclusive.
    cot_token_starts: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    cot_token_ends: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    # Char offsets into problems.text of each problem token inside the prompt.
    problem_token_starts: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    problem_token_ends: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    prompt_token_count: Mapped[int | None] = mapped_column(Integer)
    problem_token_offset: Mapped[int | None] = mapped_column(Integer)  # first problem token in the prompt
    teacher_answer: Mapped[str | None] = mapped_column(Text)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    truncated: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _created()

    problem: Mapped[Problem] = relationship()
    teacher_config: Mapped[TeacherConfig] = relationship()
    signals: Mapped[TraceSignals | None] = relationship(back_populates="trace", cascade="all, delete-orphan")
    spans: Mapped[list[CotSpan]] = relationship(
        back_populates="trace", cascade="all, delete-orphan", order_by="CotSpan.index"
    )


class TraceSignals(Base):
    """Attention-derived signals of one trace (arrays indexed by CoT token)."""

    __tablename__ = "trace_signals"

    trace_id: Mapped[int] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True)
    jsd_raw: Mapped[list[float]] = mapped_column(ARRAY(Float))  # n_cot - 1 values
    jsd_smoothed: Mapped[list[float]] = mapped_column(ARRAY(Float))
    boundaries: Mapped[list[int]] = mapped_column(ARRAY(Integer))  # CoT token indices
    # IAF matrix (n_spans × n_problem_tokens), row-major, rows sum to 1.
    iaf: Mapped[list[float]] = mapped_column(ARRAY(Float))
    iaf_shape: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    # Input-attention fraction per CoT token (mean over heads): reading vs computing.
    input_fraction: Mapped[list[float] | None] = mapped_column(ARRAY(Float))
    created_at: Mapped[datetime] = _created()

    trace: Mapped[Trace] = relationship(back_populates="signals")


class CotSpan(Base):
    """One JSD segment of a CoT: a computation step."""

    __tablename__ = "cot_spans"
    __table_args__ = (
        UniqueConstraint("trace_id", "index"),
        CheckConstraint("token_end > token_start", name="nonempty_tokens"),
        CheckConstraint("char_end >= char_start", name="char_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trace_id: Mapped[int] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    token_start: Mapped[int] = mapped_column(Integer)
    token_end: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    mean_input_fraction: Mapped[float | None] = mapped_column(Float)
    implicit: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    trace: Mapped[Trace] = relationship(back_populates="spans")


class Region(Base):
    """A char range of a problem's text tied to an operation (attention-, human- or model-derived)."""

    __tablename__ = "regions"
    __table_args__ = (
        CheckConstraint("char_end > char_start", name="nonempty"),
        Index("ix_regions_problem", "problem_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    trace_id: Mapped[int | None] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"), index=True)
    cot_span_id: Mapped[int | None] = mapped_column(ForeignKey("cot_spans.id", ondelete="CASCADE"))
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[RegionSource] = mapped_column(_enum(RegionSource, "region_source"))
    score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()


# --------------------------------------------------------------------------- rounds & labels


class Round(Base):
    """One active-learning round: selection → review → import → (re)training."""

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    status: Mapped[RoundStatus] = mapped_column(_enum(RoundStatus, "round_status"))
    strategy: Mapped[str] = mapped_column(String(32))
    budget: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(64))
    stats: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    models_before: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    models_after: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    started_at: Mapped[datetime] = _created()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Label(Base):
    """An append-only label for one specialist task of one problem, with provenance."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_problem_task", "problem_id", "task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    task: Mapped[LabelTask] = mapped_column(_enum(LabelTask, "label_task"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source: Mapped[LabelSource] = mapped_column(_enum(LabelSource, "label_source"))
    confidence: Mapped[float | None] = mapped_column(Float)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    trace_id: Mapped[int | None] = mapped_column(ForeignKey("traces.id", ondelete="SET NULL"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    annotation_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id", ondelete="SET NULL"))
    # The execution-validated program the label was derived from (reference, teacher or human).
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id", ondelete="SET NULL"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"), index=True)
    is_withdrawal: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = _created()

    CONTENT_FIELDS = ("problem_id", "task", "payload", "source", "confidence", "round_id", "trace_id",
                      "model_id", "annotation_id", "program_id")

    def copy_with(self, **changes: Any) -> Label:
        """A new (unsaved) label with this one's content, ``changes`` applied (e.g. source, supersedes_id)."""
        return Label(**({name: getattr(self, name) for name in self.CONTENT_FIELDS} | changes))


class Program(Base):
    """A sympy program (DAG of steps, JSON) for a problem, with its execution verdict."""

    __tablename__ = "programs"
    __table_args__ = (
        # One reference program per problem, one teacher program per trace (idempotent validation).
        Index(
            "uq_programs_reference_problem",
            "problem_id",
            unique=True,
            postgresql_where="source = 'reference'",
        ),
        Index("uq_programs_trace", "trace_id", unique=True, postgresql_where="trace_id IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    trace_id: Mapped[int | None] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    source: Mapped[ProgramSource] = mapped_column(_enum(ProgramSource, "program_source"))
    steps: Mapped[dict[str, Any]] = mapped_column(JSONB)
    answer: Mapped[str | None] = mapped_column(Text)
    executes: Mapped[bool] = mapped_column(Boolean)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class LabelSnapshot(Base):
    """The current labels of one split at one moment, frozen for training (design §4.1).

    ``content_hash`` hashes the labels' (problem content hash, task, payload) in a canonical
    order, so the same labels give the same hash and one changed label a new one. ``label_ids``
    and ``problem_ids`` name exactly what a model trained on (the contamination guard reads
    ``problem_ids``); ``counts`` is ``{task: {"problems": n, "labels": n}}``.
    """

    __tablename__ = "label_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    split: Mapped[Split] = mapped_column(_enum(Split, "split"))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    label_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    problem_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    created_at: Mapped[datetime] = _created()


# --------------------------------------------------------------------------- models & predictions


class SpecialistModel(Base):
    """A trained specialist (one of C1..C6) at one version.

    A row is written only after its artifact (safetensors weights + config) is complete on disk,
    with the artifact's sha256. (specialist, snapshot_hash, config_hash) is unique: training the
    same labels snapshot with the same training config again returns the existing version.
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("specialist", "version"),
        Index("uq_models_specialist_snapshot_config", "specialist", "snapshot_hash", "config_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    specialist: Mapped[LabelTask] = mapped_column(_enum(LabelTask, "label_task"))
    version: Mapped[str] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    artifact_path: Mapped[str | None] = mapped_column(Text)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("label_snapshots.id", ondelete="SET NULL"))
    snapshot_hash: Mapped[str | None] = mapped_column(String(64))
    training_config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    config_hash: Mapped[str | None] = mapped_column(String(64))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()


class Prediction(Base):
    """A specialist's output for one problem (calibrated probabilities in the payload)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("model_id", "problem_id", "task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    task: Mapped[LabelTask] = mapped_column(_enum(LabelTask, "label_task"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    confidence: Mapped[float | None] = mapped_column(Float)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()


class InferenceResult(Base):
    """The pipeline's gold-blind answer to one problem under one model version (design §5).

    Written by inference, which never sees gold; ``correct`` and ``in_beam`` are filled afterwards
    by the evaluation module. ``candidates`` lists every executed candidate answer
    ``[{"answer": str, "probability": float}]`` (for correct-in-beam). ``answer`` is NULL when no
    candidate program executed (``no_answer_reason`` says why).
    """

    __tablename__ = "inference_results"
    __table_args__ = (UniqueConstraint("problem_id", "model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id", ondelete="SET NULL"))
    answer: Mapped[str | None] = mapped_column(Text)
    probability: Mapped[float | None] = mapped_column(Float)
    paths_explored: Mapped[int] = mapped_column(Integer)
    disagreement: Mapped[bool] = mapped_column(Boolean)
    candidates: Mapped[list[Any]] = mapped_column(JSONB)
    no_answer_reason: Mapped[str | None] = mapped_column(Text)
    ms: Mapped[float] = mapped_column(Float)  # wall time of inference for this problem
    correct: Mapped[bool | None] = mapped_column(Boolean)  # set by evaluation, after inference
    in_beam: Mapped[bool | None] = mapped_column(Boolean)  # gold among the candidates (evaluation)
    created_at: Mapped[datetime] = _created()


class Attribution(Base):
    """Why the pipeline got a problem wrong (design §6), for one model version / round."""

    __tablename__ = "attributions"
    __table_args__ = (UniqueConstraint("problem_id", "model_version", "round_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id", ondelete="SET NULL"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    model_version: Mapped[str] = mapped_column(String(64))
    category: Mapped[AttributionCategory | None] = mapped_column(
        _enum(AttributionCategory, "attribution_category")
    )  # NULL = the pipeline answered correctly
    correct: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _created()


# --------------------------------------------------------------------------- human review


class Selection(Base):
    """A problem chosen for review in a round, with the strategy, score and reason."""

    __tablename__ = "selections"
    __table_args__ = (UniqueConstraint("round_id", "problem_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class ReviewTask(Base):
    """A Label Studio task created for a selected problem."""

    __tablename__ = "review_tasks"
    __table_args__ = (UniqueConstraint("round_id", "problem_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    ls_project_id: Mapped[int] = mapped_column(Integer)
    ls_task_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    task_score: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[ReviewStatus] = mapped_column(_enum(ReviewStatus, "review_status"))
    pushed_at: Mapped[datetime] = _created()


class Annotation(Base):
    """One imported version of a Label Studio annotation (idempotent on id + updated_at)."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("ls_annotation_id", "ls_updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    review_task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id", ondelete="CASCADE"), index=True)
    ls_annotation_id: Mapped[int] = mapped_column(BigInteger)
    ls_updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[AnnotationAction] = mapped_column(_enum(AnnotationAction, "annotation_action"))
    result: Mapped[list[Any]] = mapped_column(JSONB)
    annotator: Mapped[str | None] = mapped_column(Text)
    # The reviewer's program (one step per line) and its execution verdict at import:
    # {"executes": bool, "correct": bool | None, "answer": str | None, "error": str | None}.
    program_text: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    lead_time_s: Mapped[float | None] = mapped_column(Float)  # Label Studio lead_time (seconds)
    imported_at: Mapped[datetime] = _created()


# --------------------------------------------------------------------------- jobs


class Job(Base):
    """A user-submitted unit of work (extraction, validation, …) fanned out into items."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), index=True)
    done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    celery_task_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobItem(Base):
    """One claimable item of a job (a problem id, usually)."""

    __tablename__ = "job_items"
    __table_args__ = (UniqueConstraint("job_id", "item_key"), Index("ix_job_items_job_status", "job_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[ItemStatus] = mapped_column(_enum(ItemStatus, "item_status"))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
