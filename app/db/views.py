"""SQL views for error and label statistics (created by the initial migration).

* ``current_labels`` — the live label per row history: not superseded, not a withdrawal.
* ``label_stats`` — per task × source: all rows, current rows, withdrawals.
* ``error_stats`` — attribution counts and share per category, grouped by model version,
  round, dataset, split and level; category ``CORRECT`` counts problems answered right, so
  ``share`` is the fraction of all evaluated problems in the group.
"""

CURRENT_LABELS = """
CREATE VIEW current_labels AS
SELECT l.*
FROM labels l
WHERE NOT l.is_withdrawal
  AND NOT EXISTS (SELECT 1 FROM labels s WHERE s.supersedes_id = l.id)
"""

LABEL_STATS = """
CREATE VIEW label_stats AS
SELECT l.task::text AS task,
       l.source::text AS source,
       count(*) AS total_rows,
       count(*) FILTER (
           WHERE NOT l.is_withdrawal
             AND NOT EXISTS (SELECT 1 FROM labels s WHERE s.supersedes_id = l.id)
       ) AS current_rows,
       count(*) FILTER (WHERE l.is_withdrawal) AS withdrawals,
       count(DISTINCT l.problem_id) AS problems
FROM labels l
GROUP BY l.task, l.source
"""

ERROR_STATS = """
CREATE VIEW error_stats AS
WITH attributed AS (
    SELECT a.model_version,
           r.number AS round,
           d.name AS dataset,
           p.split::text AS split,
           p.level,
           COALESCE(a.category::text, 'CORRECT') AS category
    FROM attributions a
    JOIN problems p ON p.id = a.problem_id
    JOIN datasets d ON d.id = p.dataset_id
    LEFT JOIN rounds r ON r.id = a.round_id
)
SELECT model_version, round, dataset, split, level, category,
       count(*) AS n,
       round(count(*)::numeric
             / sum(count(*)) OVER (PARTITION BY model_version, round, dataset, split, level), 4) AS share
FROM attributed
GROUP BY model_version, round, dataset, split, level, category
"""

ALL_VIEWS = {"current_labels": CURRENT_LABELS, "label_stats": LABEL_STATS, "error_stats": ERROR_STATS}

# --------------------------------------------------------------------------- migration 0002

LABEL_COVERAGE = """
CREATE VIEW label_coverage AS
SELECT d.name AS dataset,
       p.split::text AS split,
       l.task::text AS task,
       l.source::text AS source,
       count(DISTINCT l.problem_id) AS problems,
       count(*) AS labels
FROM current_labels l
JOIN problems p ON p.id = l.problem_id
JOIN datasets d ON d.id = p.dataset_id
GROUP BY d.name, p.split, l.task, l.source
"""
"""``label_coverage`` — dataset × split × task × source: problems with a current label, labels.
Answers "how much of train is labelled for C3, and by whom"."""

VIEWS_0002 = {"label_coverage": LABEL_COVERAGE}

# --------------------------------------------------------------------------- migration 0003 (attribution)
# An attribution row's outcome: 'CORRECT' when the pipeline was right, else its category, else
# detail->>'outcome' ('NO_REFERENCE': wrong, but no reference labels to attribute it against).
_OUTCOME = ("CASE WHEN a.correct THEN 'CORRECT' "
            "ELSE COALESCE(a.category::text, a.detail->>'outcome', 'UNATTRIBUTED') END")

ERROR_STATS_0003 = f"""
CREATE OR REPLACE VIEW error_stats AS
WITH attributed AS (
    SELECT a.model_version,
           r.number AS round,
           d.name AS dataset,
           p.split::text AS split,
           p.level,
           {_OUTCOME} AS category
    FROM attributions a
    JOIN problems p ON p.id = a.problem_id
    JOIN datasets d ON d.id = p.dataset_id
    LEFT JOIN rounds r ON r.id = a.round_id
)
SELECT model_version, round, dataset, split, level, category,
       count(*) AS n,
       round(count(*)::numeric
             / sum(count(*)) OVER (PARTITION BY model_version, round, dataset, split, level), 4) AS share
FROM attributed
GROUP BY model_version, round, dataset, split, level, category
"""
"""``error_stats`` as in 0001 (same columns), except that a wrong answer without a category (no
reference labels) counts as ``NO_REFERENCE`` instead of ``CORRECT``."""

ERROR_BY_DATASET = f"""
CREATE VIEW error_by_dataset AS
WITH attributed AS (
    SELECT a.model_version, r.number AS round, d.name AS dataset, p.split::text AS split,
           {_OUTCOME} AS category
    FROM attributions a
    JOIN problems p ON p.id = a.problem_id
    JOIN datasets d ON d.id = p.dataset_id
    LEFT JOIN rounds r ON r.id = a.round_id
)
SELECT model_version, round, dataset, split, category,
       count(*) AS n,
       round(count(*)::numeric / sum(count(*)) OVER (PARTITION BY model_version, round, dataset, split), 4) AS share
FROM attributed
GROUP BY model_version, round, dataset, split, category
"""
"""``error_by_dataset`` — model version × round × dataset × split × category: n and share of the
evaluated problems (levels pooled; ``error_stats`` keeps the level)."""

ERROR_BY_SPECIALIST = f"""
CREATE VIEW error_by_specialist AS
WITH attributed AS (
    SELECT a.model_version, r.number AS round, d.name AS dataset, p.split::text AS split,
           CASE WHEN a.correct THEN 'CORRECT'
                ELSE COALESCE(a.detail->>'specialist', {_OUTCOME}) END AS specialist
    FROM attributions a
    JOIN problems p ON p.id = a.problem_id
    JOIN datasets d ON d.id = p.dataset_id
    LEFT JOIN rounds r ON r.id = a.round_id
)
SELECT model_version, round, dataset, split, specialist,
       count(*) AS n,
       round(count(*)::numeric / sum(count(*)) OVER w, 4) AS share,
       CASE WHEN specialist = 'CORRECT' THEN NULL
            ELSE round(count(*)::numeric
                       / NULLIF(sum(count(*)) FILTER (WHERE specialist <> 'CORRECT') OVER w, 0), 4)
       END AS error_share
FROM attributed
GROUP BY model_version, round, dataset, split, specialist
WINDOW w AS (PARTITION BY model_version, round, dataset, split)
"""
"""``error_by_specialist`` — who failed first: C1..C6, ``teacher``, ``search`` (SELECTION),
``executor`` (EXECUTION), ``NO_REFERENCE``, or ``CORRECT``. ``share`` is over all evaluated
problems of the group (sums to 1), ``error_share`` over the wrong ones."""

ERROR_ROUND_COMPARISON = f"""
CREATE VIEW error_round_comparison AS
WITH versions AS (
    SELECT r.number AS round,
           (SELECT string_agg(m.key || m.value, '.' ORDER BY m.key)
              FROM jsonb_each_text(r.models_before) m) AS before_version,
           (SELECT string_agg(m.key || m.value, '.' ORDER BY m.key)
              FROM jsonb_each_text(r.models_after) m) AS after_version
    FROM rounds r
),
latest AS (
    SELECT DISTINCT ON (a.problem_id, a.model_version)
           a.problem_id, a.model_version, {_OUTCOME} AS category
    FROM attributions a
    ORDER BY a.problem_id, a.model_version, a.id DESC
),
paired AS (
    SELECT v.round, v.before_version, v.after_version, d.name AS dataset, p.split::text AS split,
           b.category AS before_category, af.category AS after_category
    FROM versions v
    JOIN latest b ON b.model_version = v.before_version
    JOIN latest af ON af.model_version = v.after_version AND af.problem_id = b.problem_id
    JOIN problems p ON p.id = b.problem_id
    JOIN datasets d ON d.id = p.dataset_id
),
counted AS (
    SELECT round, before_version, after_version, dataset, split, before_category AS category,
           1 AS n_before, 0 AS n_after
    FROM paired
    UNION ALL
    SELECT round, before_version, after_version, dataset, split, after_category, 0, 1
    FROM paired
)
SELECT round, dataset, split, category, before_version, after_version,
       sum(n_before)::bigint AS n_before,
       round(sum(n_before)::numeric / sum(sum(n_before)) OVER w, 4) AS share_before,
       sum(n_after)::bigint AS n_after,
       round(sum(n_after)::numeric / sum(sum(n_after)) OVER w, 4) AS share_after,
       round((sum(n_after) - sum(n_before))::numeric / sum(sum(n_before)) OVER w, 4) AS delta
FROM counted
GROUP BY round, dataset, split, category, before_version, after_version
WINDOW w AS (PARTITION BY round, dataset, split)
"""
"""``error_round_comparison`` — per round × dataset × split × category: the shares under the
pipeline before the round's retraining (``rounds.models_before`` as ``C1v1.C2v1…``) and after it
(``models_after``), over the problems attributed under both versions (the newest attribution
per problem and version), and ``delta`` = share_after − share_before."""

VIEWS_0003 = {
    "error_stats": ERROR_STATS_0003,
    "error_by_dataset": ERROR_BY_DATASET,
    "error_by_specialist": ERROR_BY_SPECIALIST,
    "error_round_comparison": ERROR_ROUND_COMPARISON,
}
"""Views of migration 0003. ``error_stats`` is replaced in place (0001 created it); downgrading
restores the 0001 definition."""
