"""Read the attribution views back for ``mycelium errors``: grouped counts and shares, examples.

Counts come from the SQL views (``error_stats``, ``error_by_dataset``, ``error_by_specialist``);
shares are recomputed per displayed group (n / group total), so they sum to 1 in every group.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

BY_CHOICES: tuple[str, ...] = ("dataset", "level", "specialist", "round")
_OUTCOME_SQL = ("CASE WHEN a.correct THEN 'CORRECT' "
                "ELSE COALESCE(a.category::text, a.detail->>'outcome', 'UNATTRIBUTED') END")

# by → (view, group columns, row label column)
_GROUPINGS: dict[str | None, tuple[str, tuple[str, ...], str]] = {
    None: ("error_by_dataset", (), "category"),
    "dataset": ("error_by_dataset", ("dataset", "split"), "category"),
    "level": ("error_stats", ("dataset", "split", "level"), "category"),
    "round": ("error_stats", ("round",), "category"),
    "specialist": ("error_by_specialist", ("dataset", "split"), "specialist"),
}


def error_groups(session: Session, model_version: str, by: str | None = None) -> list[dict[str, Any]]:
    """``[{"group": {column: value}, "total": n, "rows": [{label: …, "n": n, "share": s}]}]`` for
    one model version, rows by descending count; ``by`` ∈ :data:`BY_CHOICES` or None (everything)."""
    if by not in _GROUPINGS:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}, not {by!r}")
    view, columns, label = _GROUPINGS[by]
    rows = session.execute(
        text(f"SELECT {', '.join((*columns, label))}, n FROM {view} WHERE model_version = :v"),
        {"v": model_version},
    ).all()
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        counts[tuple(row[:len(columns)])][row[len(columns)]] += int(row[-1])
    groups = []
    for key in sorted(counts, key=lambda k: tuple((v is None, str(v)) for v in k)):
        total = sum(counts[key].values())
        ordered = sorted(counts[key].items(), key=lambda kv: (-kv[1], kv[0]))
        groups.append({
            "group": dict(zip(columns, key)),
            "total": total,
            "rows": [{label: name, "n": n, "share": round(n / total, 4)} for name, n in ordered],
        })
    return groups


def describe_failure(detail: dict[str, Any]) -> str:
    """One line saying what failed, predicted vs reference (from an attribution's ``detail``)."""
    outcome = detail.get("outcome")
    if outcome == "NO_REFERENCE":
        return f"no reference labels; answer {detail.get('answer')!r} vs gold {detail.get('gold')!r}"
    failures = detail.get("failures") or []
    if not failures:
        return f"answer {detail.get('answer')!r} vs gold {detail.get('gold')!r}"
    f = failures[0]
    where = f" step {f['step']}" if f.get("step") is not None else ""
    check = f.get("check")
    if check == "regions":
        what = f"missed {f.get('missed')} (precision {f.get('precision')})"
    elif check == "edges":
        what = f"missing edges {f.get('missing')}, extra {f.get('extra')}"
    elif check == "answer_in_cot":
        what = f"gold {f.get('reference')!r} not in the CoT of trace {f.get('trace_id')}"
    elif check == "execution":
        reason = f.get("no_answer_reason")
        what = f"answer {f.get('predicted')!r} vs gold {f.get('reference')!r}" + (f" ({reason})" if reason else "")
    else:
        what = f"predicted {_short(f.get('predicted'))} vs reference {_short(f.get('reference'))}"
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{f.get('specialist')} {check}{where}: {what}{more}"


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        parts = []
        for o in value:
            parts.append(f"#{o.get('ref')}" if o.get("kind") == "step" else
                         (f"{o.get('value')}" if o.get("kind") == "problem" else f"const {o.get('value')}"))
        return "(" + ", ".join(parts) + ")"
    return repr(value)


def error_examples(session: Session, model_version: str, per_category: int) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_category`` wrong problems per outcome (lowest problem ids first), each with
    ``problem_id``, ``external_id``, ``dataset``, ``text`` (first 80 chars), ``specialist``, ``why``."""
    if per_category <= 0:
        return {}
    rows = session.execute(text(f"""
        SELECT outcome, problem_id, external_id, dataset, problem_text, detail FROM (
            SELECT {_OUTCOME_SQL} AS outcome, a.problem_id, p.external_id, d.name AS dataset,
                   p.text AS problem_text, a.detail,
                   row_number() OVER (PARTITION BY {_OUTCOME_SQL} ORDER BY a.problem_id, a.id) AS k
            FROM attributions a
            JOIN problems p ON p.id = a.problem_id
            JOIN datasets d ON d.id = p.dataset_id
            WHERE a.model_version = :v AND NOT a.correct
        ) ranked WHERE k <= :k ORDER BY outcome, problem_id
    """), {"v": model_version, "k": per_category}).all()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for outcome, problem_id, external_id, dataset, problem_text, detail in rows:
        out[outcome].append({
            "problem_id": problem_id, "external_id": external_id, "dataset": dataset,
            "text": problem_text[:80] + ("…" if len(problem_text) > 80 else ""),
            "specialist": (detail or {}).get("specialist"), "why": describe_failure(detail or {}),
        })
    return dict(out)
