#!/usr/bin/env bash
# Install benchmark ("Updates that move only what changed, in one pass over the bytes"): real releases
# packed with `release pack`, listed by `release feed`, served from loopback by a real nginx and installed by
# the launcher (`update install`), all in the same run:
#   part 1: a full install of a large release beside curl -o alone and curl -o then sync (the peer), and our
#           peak memory (max RSS from /usr/bin/time -v);
#   part 2: an update that changes ~2 % of a bundle, installed from its delta and from the full archive, on
#           twin homes in alternation: bytes downloaded, time and peak memory of each.
# Prints markdown tables of medians and the goals. Nothing is dropped from the page cache (for us or the peer).
#
# Usage: scripts/bench-install.sh              (512 MiB release, 100 MiB delta bundle, 3 repetitions)
#   BENCH_SIZE_MB=256 BENCH_DELTA_MB=50 BENCH_REPS=5 scripts/bench-install.sh
#   BENCH_DIR=/var/tmp scripts/bench-install.sh   (where homes and outputs live; default $TMPDIR or /tmp: keep
#                                                  it on a disk, not tmpfs: durable writes are the point)
#   BENCH_SKIP_BUILD=1 ...                        (reuse target/release/personal-ai-agent and
#                                                  target/release/examples/agent_backend)
# Exits 0 when every goal is met, 1 otherwise (or when the benchmark itself fails).
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=${BENCH_SIZE_MB:-512}
delta_mb=${BENCH_DELTA_MB:-100}
reps=${BENCH_REPS:-3}
nginx_bin=${NGINX:-/usr/sbin/nginx}
out_root=${BENCH_DIR:-${TMPDIR:-/tmp}}

for tool in "$nginx_bin" curl sync dd /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx-light curl time python3)" >&2; exit 1; }
done

platform=
case "$(uname -m)" in
    x86_64 | amd64) platform=linux-x86_64 ;;
    aarch64 | arm64) platform=linux-aarch64 ;;
esac
[ -n "$platform" ] || { echo "unsupported machine $(uname -m): this benchmark packs linux-x86_64 or linux-aarch64 releases" >&2; exit 1; }

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    # The example backend is what the benchmark packs into its releases: build both.
    cargo build --release --bin personal-ai-agent --example agent_backend >&2
fi
pai=$PWD/target/release/personal-ai-agent
backend=$PWD/target/release/examples/agent_backend
for bin in "$pai" "$backend"; do
    [ -x "$bin" ] || { echo "missing $bin; build it with cargo build --release --bin personal-ai-agent --example agent_backend" >&2; exit 1; }
done

work=$(mktemp -d "$out_root/bench-install.XXXXXX")
work=$(cd "$work" && pwd -P)   # nginx wants absolute paths
www=$work/www
nginx_pid=
# shellcheck disable=SC2317 # run by the EXIT trap (shellcheck 0.9 calls it unreachable because of the final exit)
cleanup() {
    # An install may leave its backend running: stop every home's before removing it.
    for home in "$work"/homes/*/; do
        if [ -d "$home" ]; then "$pai" --home "$home" backend stop >/dev/null 2>&1 || true; fi
    done
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$www/feed" "$work/logs" "$work/homes" "$work/out"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/tmp-body;
    proxy_temp_path $work/tmp-proxy;
    fastcgi_temp_path $work/tmp-fastcgi;
    uwsgi_temp_path $work/tmp-uwsgi;
    scgi_temp_path $work/tmp-scgi;
    default_type application/octet-stream;
    types { application/json json; text/plain txt md; }
    server {
        listen 127.0.0.1:$port;
        root $www;
    }
}
EOF
echo "probe" >"$www/probe.txt"
"$nginx_bin" -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
base_url="http://127.0.0.1:$port"
feed_url="$base_url/feed/feed.json"
for _ in $(seq 1 100); do
    curl -fsI "$base_url/probe.txt" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -fsI "$base_url/probe.txt" >/dev/null || { echo "nginx did not start; see $work/logs/error.log" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
maximum() { printf '%s\n' "$@" | sort -n | tail -1; }
calc() { python3 -c "print($1)"; }
mib() { calc "f'{$1 / 1048576:.1f}'"; }

# json_field FILE DOTTED.PATH: the value at the path (list items by index), empty when absent.
json_field() {
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    if isinstance(v, list):
        v = v[int(k)] if k.isdigit() and int(k) < len(v) else None
    elif isinstance(v, dict):
        v = v.get(k)
    else:
        v = None
print("" if v is None else v)' "$1" "$2"
}

status=0
# goal TEXT CONDITION DETAIL: prints the goal line; CONDITION is a Python expression.
goal() {
    local verdict=met
    if ! python3 -c "import sys; sys.exit(0 if ($2) else 1)"; then verdict="NOT met"; status=1; fi
    echo "goal: $1 -> $verdict ($3)"
}

# make_bundle DIR: the layout the launcher accepts (the example backend and agent.json), data/ still empty.
make_bundle() {
    mkdir -p "$1/backend" "$1/data"
    cp "$backend" "$1/backend/agent-backend"
    chmod 755 "$1/backend/agent-backend"
    cat >"$1/agent.json" <<'EOF'
{"command": ["backend/agent-backend", "--port", "{port}"], "health_url": "http://127.0.0.1:{port}/health", "ready_timeout_secs": 30, "env": {}}
EOF
}

# pack VERSION [--delta-from DIR]: packs $work/bundle-VERSION into $www/feed/VERSION; the report in
# $work/pack-VERSION.json.
pack() {
    local version=$1; shift
    "$pai" release pack --version "$version" --platform "$platform" --bundle-dir "$work/bundle-$version" \
        --out "$www/feed/$version" --json "$@" >"$work/pack-$version.json"
}

write_feed() { "$pai" release feed --dir "$www/feed" --json >/dev/null; }

# new_home NAME: a fresh home pointed at the feed (prints its path).
new_home() {
    local home=$work/homes/$1
    rm -rf "$home"
    mkdir -p "$home"
    "$pai" --home "$home" update configure --feed "$feed_url" --json >/dev/null
    echo "$home"
}

drop_home() {
    "$pai" --home "$1" backend stop >/dev/null 2>&1 || true
    rm -rf "$1"
}

# timed_install HOME [ARGS...]: `update install ARGS --json` under /usr/bin/time -v; sets t_last (wall seconds),
# rss_last (max RSS, KiB) and leaves the report in $work/report.json. Stops the backend afterwards (untimed).
timed_install() {
    local home=$1; shift
    local a b
    a=$(now)
    if ! /usr/bin/time -v -o "$work/time.txt" "$pai" --home "$home" update install "$@" --json >"$work/report.json"; then
        echo "update install $* failed in $home; its report:" >&2
        cat "$work/report.json" >&2
        exit 1
    fi
    b=$(now)
    t_last=$(elapsed "$a" "$b")
    rss_last=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    "$pai" --home "$home" backend stop >/dev/null 2>&1 || true
}

# expect FIELD VALUE WHAT: fails loudly, with the report, when the last report's FIELD is not VALUE.
expect() {
    local got
    got=$(json_field "$work/report.json" "$1")
    if [ "$got" != "$2" ]; then
        echo "$3: expected $1 = $2, got '${got}'; the report:" >&2
        cat "$work/report.json" >&2
        exit 1
    fi
}

echo "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$port; homes and outputs in $out_root ($(stat -f -c %T "$out_root")); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $reps reps; platform $platform"

# ---------------------------------------------------------------------------------------------------------
# Part 1: a full install of a large release beside curl -o (+ sync).
echo "part 1: packing release 1.0.0 (${size_mb} MiB of random data) ..." >&2
make_bundle "$work/bundle-1.0.0"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/bundle-1.0.0/data/blob.bin"
pack 1.0.0
write_feed
rm -rf "$work/bundle-1.0.0"
archive=$(json_field "$work/pack-1.0.0.json" archive.path)
archive_bytes=$(json_field "$work/pack-1.0.0.json" archive.size)
archive_url="$base_url/feed/1.0.0/$(basename "$archive")"
curl -fsI "$archive_url" >/dev/null || { echo "nginx does not serve $archive_url" >&2; exit 1; }

declare -a t_curl t_curl_sync t_ours rss_ours
cat "$archive" >/dev/null   # in nginx's page cache for everyone
peer=$work/out/peer.bin
for i in $(seq 1 "$reps"); do
    rm -f "$peer"
    a=$(now); curl -fsS -o "$peer" "$archive_url"; b=$(now)
    t_curl+=("$(elapsed "$a" "$b")")
    rm -f "$peer"

    a=$(now); curl -fsS -o "$peer" "$archive_url"; sync "$peer"; b=$(now)
    t_curl_sync+=("$(elapsed "$a" "$b")")
    rm -f "$peer"

    home=$(new_home "large-$i")
    timed_install "$home"
    expect installed_version 1.0.0 "part 1, rep $i"
    t_ours+=("$t_last")
    rss_ours+=("$rss_last")
    drop_home "$home"
    echo "rep $i: curl -o ${t_curl[-1]} s, curl -o + sync ${t_curl_sync[-1]} s, ours ${t_ours[-1]} s (${rss_ours[-1]} KiB)" >&2
done

m_curl_sync=$(median "${t_curl_sync[@]}")
m_ours=$(median "${t_ours[@]}")
peak_full_install=$(maximum "${rss_ours[@]}")
ours_label="ours: update install (download, verify while unpacking, fsync tree, switch, start, health)"

echo
echo "## full install: release 1.0.0, archive $archive_bytes bytes ($(mib "$archive_bytes") MiB), $reps reps"
echo
row1() { printf '| %-90s | %10s | %9s | %18s |\n' "$1" "$2" "$3" "$4"; }
row1 "what" "median s" "MiB/s" "vs curl -o + sync"
printf '|%s|%s|%s|%s|\n' "$(printf '%*s' 92 '' | tr ' ' -)" "------------" "-----------" "--------------------"
timed_row() { row1 "$1" "$2" "$(calc "f'{$archive_bytes / 1048576 / $2:.0f}'")" "$(calc "f'{$2 / $m_curl_sync:.2f}x'")"; }
timed_row "curl -o" "$(median "${t_curl[@]}")"
timed_row "curl -o + sync" "$m_curl_sync"
timed_row "$ours_label" "$m_ours"
echo
echo "our peak RSS (max of $reps runs): $peak_full_install KiB"
goal "ours <= 1.30x (curl -o + sync)" "$m_ours <= 1.30 * $m_curl_sync" "$(calc "f'{$m_ours / $m_curl_sync:.2f}x'")"
goal "peak RSS < 64 MiB" "$peak_full_install < 64 * 1024" "$peak_full_install KiB"

# ---------------------------------------------------------------------------------------------------------
# Part 2: delta vs full, for an update that changes ~2 % of the bundle.
echo >&2
echo "part 2: packing releases 2.0.0 and 2.1.0 (${delta_mb} MiB in 40 files) ..." >&2
total=$((delta_mb * 1024 * 1024))
file_bytes=$((total / 40))
region=$((total * 4 / 1000))       # ~0.4 % of the bundle, overwritten in each of 3 files
inserted=65536                     # inserted in the middle of one more file
added=$((total * 5 / 1000))        # ~0.5 % of the bundle, a new file
[ "$region" -lt "$file_bytes" ] || { echo "BENCH_DELTA_MB=$delta_mb: files too small for the changes" >&2; exit 1; }

old=$work/bundle-2.0.0
new=$work/bundle-2.1.0
make_bundle "$old"
for n in $(seq -w 0 39); do
    head -c "$file_bytes" /dev/urandom >"$old/data/f$n.bin"
done
cp -a "$old" "$new"
for n in 01 02 03; do
    dd if=/dev/urandom of="$new/data/f$n.bin" bs=65536 count="$region" seek="$(((file_bytes - region) / 2))" \
        iflag=count_bytes,fullblock oflag=seek_bytes conv=notrunc status=none
done
half=$((file_bytes / 2))
{ head -c "$half" "$old/data/f04.bin"; head -c "$inserted" /dev/urandom; tail -c +"$((half + 1))" "$old/data/f04.bin"; } >"$new/data/f04.bin.tmp"
mv "$new/data/f04.bin.tmp" "$new/data/f04.bin"
rm "$new/data/f39.bin"
head -c "$added" /dev/urandom >"$new/data/new.bin"
changed=$((3 * region + inserted + added))

pack 2.0.0
pack 2.1.0 --delta-from "$www/feed/2.0.0"
write_feed
rm -rf "$old" "$new"
full_archive=$(json_field "$work/pack-2.1.0.json" archive.path)
full_size=$(json_field "$work/pack-2.1.0.json" archive.size)
delta_file=$(json_field "$work/pack-2.1.0.json" deltas.0.file.path)
delta_size=$(json_field "$work/pack-2.1.0.json" deltas.0.file.size)
[ -n "$delta_file" ] || { echo "release pack wrote no delta from 2.0.0; its report:" >&2; cat "$work/pack-2.1.0.json" >&2; exit 1; }
stats=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["deltas"][0]
print(", ".join(f"{s[k]} {k}" for k in ("patched", "added", "removed", "unchanged") if k in s))' "$work/pack-2.1.0.json")

# One timed update of rep $i: home_a from the delta, home_b from the full archive.
run_delta() {
    timed_install "$home_a"
    expect installed_version 2.1.0 "part 2, rep $i, update from the delta"
    expect delivery.method delta "part 2, rep $i, update from the delta"
    t_delta+=("$t_last"); rss_delta+=("$rss_last")
    bytes_delta+=("$(json_field "$work/report.json" delivery.bytes)")
}
run_full() {
    timed_install "$home_b" --full
    expect installed_version 2.1.0 "part 2, rep $i, update from the full archive"
    expect delivery.method full "part 2, rep $i, update from the full archive"
    t_full+=("$t_last"); rss_full+=("$rss_last")
    bytes_full+=("$(json_field "$work/report.json" delivery.bytes)")
}
declare -a t_delta t_full rss_delta rss_full bytes_delta bytes_full
cat "$full_archive" "$delta_file" "$www/feed/2.0.0/"*.tar.zst >/dev/null   # in nginx's page cache
for i in $(seq 1 "$reps"); do
    home_a=$(new_home "delta-$i")
    home_b=$(new_home "full-$i")
    for home in "$home_a" "$home_b"; do
        timed_install "$home" --version 2.0.0
        expect installed_version 2.0.0 "part 2, rep $i, installing the base"
    done
    if [ $((i % 2)) -eq 1 ]; then run_delta; run_full; else run_full; run_delta; fi
    drop_home "$home_a"
    drop_home "$home_b"
    echo "rep $i: delta ${t_delta[-1]} s (${bytes_delta[-1]} bytes, ${rss_delta[-1]} KiB), full ${t_full[-1]} s (${bytes_full[-1]} bytes, ${rss_full[-1]} KiB)" >&2
done

m_delta=$(median "${t_delta[@]}")
m_full=$(median "${t_full[@]}")
b_delta=$(median "${bytes_delta[@]}")
b_full=$(median "${bytes_full[@]}")
peak_delta=$(maximum "${rss_delta[@]}")
peak_full=$(maximum "${rss_full[@]}")

echo
echo "## delta vs full: 2.0.0 -> 2.1.0, ${delta_mb} MiB bundle, $changed bytes changed ($(calc "f'{100 * $changed / $total:.1f}'") %), $reps reps"
echo
echo "full 2.1.0 archive: $full_size bytes ($(mib "$full_size") MiB); delta from 2.0.0: $delta_size bytes ($(mib "$delta_size") MiB; $stats) = $(calc "f'{100 * $delta_size / $full_size:.2f}'") % of the full archive"
echo
row2() { printf '| %-36s | %16s | %10s | %13s | %9s |\n' "$1" "$2" "$3" "$4" "$5"; }
row2 "what" "bytes downloaded" "median s" "peak RSS KiB" "vs full"
printf '|%s|%s|%s|%s|%s|\n' "--------------------------------------" "------------------" "------------" "---------------" "-----------"
row2 "ours: update install (delta)" "$b_delta" "$m_delta" "$peak_delta" "$(calc "f'{$m_delta / $m_full:.2f}x'")"
row2 "ours: update install --full" "$b_full" "$m_full" "$peak_full" "1.00x"
echo
goal "delta downloads <= 5% of full" "$b_delta <= 0.05 * $b_full" "$(calc "f'{100 * $b_delta / $b_full:.2f}'") %"
goal "delta install no slower than full (<= 1.00x)" "$m_delta <= $m_full" "$(calc "f'{$m_delta / $m_full:.2f}x'")"
goal "peak memory < 64 MiB (both)" "max($peak_delta, $peak_full) < 64 * 1024" "delta $peak_delta KiB, full $peak_full KiB"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
