#!/usr/bin/env bash
# Update downtime benchmark (issue 4): the example backend's own cold start beside the downtime of a real
# update through the engine (old backend stopped → new one healthy), measured in the same run, in
# alternation. See examples/bench_update.rs and docs/PERFORMANCE.md ("Update downtime").
#
# Usage: scripts/bench-update.sh                 (10 rounds; backend startup delay 0 ms, then 500 ms)
#   BENCH_ROUNDS=20 BENCH_DELAYS="0 2000" scripts/bench-update.sh
#   BENCH_SKIP_BUILD=1 ...                       (reuse target/release/examples/{bench_update,agent_backend})
# Exits non-zero when the launcher adds 200 ms or more to the backend's cold start in any run.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_ROUNDS:-10}
delays=${BENCH_DELAYS:-0 500}

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    # The example backend is what the benchmark packs into its releases: build both.
    cargo build --release --example bench_update --example agent_backend >&2
fi
bench=target/release/examples/bench_update
[ -x "$bench" ] || { echo "missing $bench; build it with cargo build --release --examples" >&2; exit 1; }

status=0
for delay in $delays; do
    "$bench" --rounds "$rounds" --startup-delay-ms "$delay" || status=$?
    echo
done
exit "$status"
