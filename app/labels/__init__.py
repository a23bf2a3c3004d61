"""Labels for the six specialists from execution-validated programs, and training snapshots.

* :mod:`app.labels.derive` — pure derivation (payload shapes in its docstring);
* :mod:`app.labels.parse` — batched spaCy clause tables;
* :mod:`app.labels.build` — DB shell: append labels with provenance (``build_labels``);
* :mod:`app.labels.snapshot` — content-hashed snapshots of a split's current labels, export;
* :mod:`app.labels.cli` — ``mycelium labels build|snapshot|export``.
"""
