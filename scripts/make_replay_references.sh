#!/usr/bin/env bash
# Regenerate the regression replays' references (config/replay/regression.yaml) deliberately: after
# an intended change of a node's behaviour, run this, look at what moved (the script prints each
# case's comparison with the old reference first), and commit the new references saying why.
#
#   scripts/make_replay_references.sh            replay the input bags, rewrite the references
#   scripts/make_replay_references.sh --record   re-record the input bags with tps-sim first
#
# Heavy (starts the node graph): run it alone, e.g. under flock /tmp/tps-heavy.lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
cd "$ROOT"
echo "== before: the current references"
"$PY" -m tps_eval.replay.regression || true
echo "== rewriting the references"
exec "$PY" -m tps_eval.replay.regression --update "$@"
