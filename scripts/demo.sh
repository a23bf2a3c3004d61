#!/usr/bin/env bash
# The main job end to end on embedded defaults (no DATABASE_URL: an embedded Postgres under
# MYCELIUM_HOME, default ~/.mycelium). Installs what it needs first; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/mycelium demo "$@"
