"""Human review through Label Studio: uncertainty selection, pre-annotated tasks, idempotent import, rounds.

Pure core: ``selection`` (uncertainty scores, diverse batches), ``task_payload`` (task JSON),
``review_labels`` (annotation result → label payloads), ``config_xml`` (labeling interface).
Shells: ``server`` (local Label Studio process), ``client`` (SDK), ``candidates`` / ``rounds`` /
``push`` / ``importer`` / ``label_chain`` (Postgres), ``webhook`` (HTTP receiver), ``cli``
(typer apps).
"""
