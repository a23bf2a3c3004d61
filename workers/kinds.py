"""The registry of job kinds: what a job's items are and how one batch of them is processed.

A kind's ``process`` writes the result rows of its items into the session it is given and never
commits: the runner commits those rows in the same transaction that marks the items done, so a
worker that dies half-way leaves nothing behind. It may return the keys of items that failed
(with their error text; their rows, e.g. a failed trace, are kept); raising fails the batch,
which the runner then retries item by item so that one bad item fails alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

QUEUES = ("gpu", "cpu", "io")
BUILTIN_KIND_MODULES = ("workers.validation", "workers.extraction", "workers.attribution", "workers.evaluation", "workers.training")

Params = Mapping[str, Any]
ListItems = Callable[[Session, Params], list[str]]
ProcessItems = Callable[[Session, Params, Sequence[str]], Mapping[str, str] | None]


class TransientError(Exception):
    """Raised by a kind's ``process`` for a failure worth retrying later (the items stay pending)."""


@dataclass(frozen=True)
class JobKind:
    """One kind of job.

    ``list_items`` enumerates the item keys of a job from its parameters (at submission);
    ``process`` computes and writes the results of a batch of items (``batch_size``, or the job's
    ``params["batch_size"]``); ``chunk_size`` items make one Celery task; ``version`` is the code
    version that enters the job's idempotency key (bump it when the results would change).
    """

    name: str
    queue: str
    version: str
    list_items: ListItems
    process: ProcessItems
    batch_size: int = 1
    chunk_size: int = 64
    description: str = ""

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"job kind {self.name!r}: queue must be one of {QUEUES}, not {self.queue!r}")
        if self.batch_size < 1 or self.chunk_size < self.batch_size:
            raise ValueError(f"job kind {self.name!r}: need 1 <= batch_size <= chunk_size")

    def items_per_batch(self, params: Params) -> int:
        """Items per transaction: the job's ``batch_size`` parameter, else the kind's default."""
        return max(1, int(params.get("batch_size") or self.batch_size))


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add ``kind`` to the registry (re-registering the same name replaces it)."""
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The registered kind ``name``; loads the built-in and configured kinds on first use."""
    if name not in _KINDS:
        load_kinds()
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}; registered: {', '.join(sorted(_KINDS)) or 'none'}") from None


def registered_kinds() -> dict[str, JobKind]:
    load_kinds()
    return dict(_KINDS)


def load_kinds() -> None:
    """Import the modules that register kinds: the built-ins and ``MYCELIUM_WORKER_EXTRA_TASK_MODULES``."""
    from workers.settings import get_worker_settings

    for module in (*BUILTIN_KIND_MODULES, *get_worker_settings().extra_modules()):
        importlib.import_module(module)
