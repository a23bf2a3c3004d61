#!/usr/bin/env bash
# Run the whole test suite against the real services (Postgres 127.0.0.1:5432, Redis, Label Studio
# started by the suite). Installs what it needs first; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Label Studio lives in its own cached venv (~1 GB, ~3 min the first time).
.venv/bin/python -m labeling.server install
exec .venv/bin/python -m pytest "$@"
