#!/usr/bin/env bash
# Window benchmark (issue 9): the launcher's window beside the smallest eframe window (examples/
# bench_window.rs, the same eframe features), measured in the same run under the same X server:
#   first frame   time from exec to the first frame drawn
#   memory        resident set size 5 s after start
#   idle CPU      CPU time over 10 idle seconds, as % of one core (the launcher with its backend running)
#   repaints      frames drawn during those 10 s
# The launcher shows the offline demo's home with 1.0.0 installed, so its backend runs (started by the
# window's autopilot) and nothing else happens. Goals: first frame <= 1.3x, memory <= 1.5x the minimal
# window; idle CPU < 1 % of a core; 0 repaints while nothing changes.
#
# Usage: DISPLAY=:77 scripts/bench-window.sh        (needs an X server: Xvfb :77 -screen 0 1280x860x24 &)
#   BENCH_PROFILE=debug|dist ...                    (default release; dist is what the release workflow ships)
#   BENCH_SKIP_BUILD=1 ...                          (reuse the built binaries)
# Exits non-zero when a goal is missed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${BENCH_PROFILE:-release}
if [ -z "${DISPLAY:-}" ]; then
    echo "error: no DISPLAY; start an X server first, for example: Xvfb :77 -screen 0 1280x860x24 & export DISPLAY=:77" >&2
    exit 2
fi
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    flag=()
    [ "$profile" != debug ] && flag=(--profile "$profile")
    cargo build "${flag[@]}" --bin personal-ai-agent --example bench_window >&2
fi
target=${CARGO_TARGET_DIR:-target}
launcher=$target/$profile/personal-ai-agent
peer=$target/$profile/examples/bench_window
for f in "$launcher" "$peer"; do
    [ -x "$f" ] || { echo "error: missing $f; build it (cargo build --profile $profile --bin personal-ai-agent --example bench_window)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The demo's home, with 1.0.0 installed and its backend stopped: the window starts it.
"$launcher" --home "$work/home" --quiet demo --terminal >/dev/null 2>&1
demo_home="$work/home/demo/home"
"$launcher" --home "$demo_home" --quiet update install --version 1.0.0 >/dev/null 2>&1 || true

tck=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
frames_in() { grep -c '^frame ' "$1" || true; }

# measure NAME COMMAND...: prints "first_ms rss_kib cpu_pct repaints"
measure() {
    local log="$work/$1.log"; shift
    local start; start=$(now_ms)
    # A fresh window state (eframe keeps the last screen under XDG_DATA_HOME): the Home screen.
    XDG_DATA_HOME="$work/xdg" PAI_BENCH_FRAMES=1 "$@" 2>"$log" >/dev/null &
    local pid=$!
    local first=""
    for _ in $(seq 1 300); do
        first=$(awk '/^frame 1 / {print $3; exit}' "$log")
        [ -n "$first" ] && break
        sleep 0.05
    done
    [ -n "$first" ] || { echo "error: no frame from $* within 15 s; see $log" >&2; kill "$pid"; exit 1; }
    sleep 5
    local rss; rss=$(rss_kib "$pid")
    local t0 f0; t0=$(cpu_ticks "$pid"); f0=$(frames_in "$log")
    sleep 10
    local t1 f1; t1=$(cpu_ticks "$pid"); f1=$(frames_in "$log")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local cpu; cpu=$(awk -v d=$((t1 - t0)) -v h="$tck" 'BEGIN {printf "%.2f", d / h / 10 * 100}')
    echo "$((first - start)) $rss $cpu $((f1 - f0))"
}

read -r peer_first peer_rss peer_cpu peer_frames < <(measure peer "$peer")
read -r app_first app_rss app_cpu app_frames < <(measure launcher "$launcher" --home "$demo_home")
backend=$(awk '/healthy after/ {n++} END {print n+0}' "$demo_home/logs/backend.log" 2>/dev/null || echo 0)

printf '%-22s %12s %12s %10s\n' "" "minimal" "launcher" "ratio"
printf '%-22s %12s %12s %10s\n' "first frame (ms)" "$peer_first" "$app_first" "$(awk -v a="$app_first" -v b="$peer_first" 'BEGIN {printf "%.2fx", a / (b > 0 ? b : 1)}')"
printf '%-22s %12s %12s %10s\n' "memory (RSS, MiB)" "$(awk -v k="$peer_rss" 'BEGIN {printf "%.1f", k / 1024}')" "$(awk -v k="$app_rss" 'BEGIN {printf "%.1f", k / 1024}')" "$(awk -v a="$app_rss" -v b="$peer_rss" 'BEGIN {printf "%.2fx", a / b}')"
printf '%-22s %12s %12s\n' "idle CPU (% of core)" "$peer_cpu" "$app_cpu"
printf '%-22s %12s %12s\n' "repaints in 10 s" "$peer_frames" "$app_frames"
echo "(profile $profile; the launcher's backend became healthy $backend time(s) during the run)"

status=0
awk -v a="$app_first" -v b="$peer_first" 'BEGIN {exit !(a <= 1.3 * b)}' || { echo "MISSED: first frame > 1.3x"; status=1; }
awk -v a="$app_rss" -v b="$peer_rss" 'BEGIN {exit !(a <= 1.5 * b)}' || { echo "MISSED: memory > 1.5x"; status=1; }
awk -v c="$app_cpu" 'BEGIN {exit !(c < 1)}' || { echo "MISSED: idle CPU >= 1 % of a core"; status=1; }
[ "$app_frames" -eq 0 ] || { echo "MISSED: $app_frames repaints while idle"; status=1; }
exit "$status"
