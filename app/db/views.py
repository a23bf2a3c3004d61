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
