#!/usr/bin/env bash
# Download benchmark (issue 3): a large file served from loopback by a real nginx, fetched by
#   curl -o (alone), sha256sum (alone, file in page cache), curl -o then sha256sum, and our engine
#   (examples/bench_download.rs: download + SHA256 verification + fsync + rename), all in the same run,
# plus our peak memory (max RSS from /usr/bin/time -v). Prints a table of medians.
#
# Usage: scripts/bench-download.sh            (1 GiB, 5 repetitions, output on tmpfs)
#   BENCH_SIZE_MB=256 BENCH_REPS=3 scripts/bench-download.sh
#   BENCH_DIR=/var/tmp scripts/bench-download.sh   (write to disk instead: fsync then costs disk time)
#   BENCH_SKIP_BUILD=1 ...                         (reuse target/release/examples/bench_download)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=${BENCH_SIZE_MB:-1024}
reps=${BENCH_REPS:-5}
nginx_bin=${NGINX:-/usr/sbin/nginx}
out_root=${BENCH_DIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}" )}

for tool in "$nginx_bin" curl sha256sum /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx-light curl time python3)" >&2; exit 1; }
done

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release --example bench_download >&2
fi
ours=target/release/examples/bench_download
[ -x "$ours" ] || { echo "missing $ours; build it with cargo build --release --example bench_download" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-download.XXXXXX")
out=$(mktemp -d "$out_root/bench-download-out.XXXXXX")
nginx_pid=
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work" "$out"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/logs"
echo "creating a ${size_mb} MiB file ..." >&2
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/www/asset.bin"
expected=$(sha256sum "$work/www/asset.bin" | cut -d' ' -f1)

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
    types { application/octet-stream bin; }
    server {
        listen 127.0.0.1:$port;
        root $work/www;
    }
}
EOF
"$nginx_bin" -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
url="http://127.0.0.1:$port/asset.bin"
for _ in $(seq 1 100); do
    curl -fsI "$url" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -fsI "$url" >/dev/null || { echo "nginx did not start; see $work/logs/error.log" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

declare -a t_curl t_sha t_both t_curl_sync t_ours rss_ours cpu_curl cpu_ours
cat "$work/www/asset.bin" >/dev/null   # page cache warm for everyone
for i in $(seq 1 "$reps"); do
    rm -f "$out/curl.bin"
    a=$(now); /usr/bin/time -f '%U %S' -o "$work/curl-cpu.txt" curl -fsS -o "$out/curl.bin" "$url"; b=$(now)
    t_curl+=("$(elapsed "$a" "$b")")
    cpu_curl+=("$(awk '{printf "%.2f", $1 + $2}' "$work/curl-cpu.txt")")

    a=$(now); sha256sum "$work/www/asset.bin" >/dev/null; b=$(now)
    t_sha+=("$(elapsed "$a" "$b")")

    rm -f "$out/curl.bin"
    a=$(now); curl -fsS -o "$out/curl.bin" "$url"; got=$(sha256sum "$out/curl.bin" | cut -d' ' -f1); b=$(now)
    [ "$got" = "$expected" ] || { echo "curl download is corrupt" >&2; exit 1; }
    t_both+=("$(elapsed "$a" "$b")")

    rm -f "$out/curl.bin"
    a=$(now); curl -fsS -o "$out/curl.bin" "$url"; sync "$out/curl.bin"; b=$(now)
    t_curl_sync+=("$(elapsed "$a" "$b")")
    rm -f "$out/curl.bin"

    rm -f "$out/ours.bin"
    a=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$ours" "$url" "$out/ours.bin" "$expected" >/dev/null
    b=$(now)
    t_ours+=("$(elapsed "$a" "$b")")
    rss_ours+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")")
    cpu_ours+=("$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u + s}' "$work/time.txt")")
    rm -f "$out/ours.bin"
    echo "rep $i: curl ${t_curl[-1]} s, sha256sum ${t_sha[-1]} s, curl+sha256sum ${t_both[-1]} s, curl+sync ${t_curl_sync[-1]} s, ours ${t_ours[-1]} s (${rss_ours[-1]} KiB); CPU s: curl ${cpu_curl[-1]}, ours ${cpu_ours[-1]}" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
m_curl=$(median "${t_curl[@]}")
m_ours=$(median "${t_ours[@]}")
mib_per_s() { python3 -c "print(f'{$size_mb / $1:.0f}')"; }

echo
echo "download benchmark: ${size_mb} MiB from nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on 127.0.0.1, output in $out_root ($(stat -f -c %T "$out_root")), $reps reps, $(nproc) cores"
printf '| %-36s | %10s | %9s | %12s |\n' "what" "median s" "MiB/s" "vs curl -o"
printf '|%s|%s|%s|%s|\n' "--------------------------------------" "------------" "-----------" "--------------"
row() { printf '| %-36s | %10s | %9s | %12s |\n' "$1" "$2" "$(mib_per_s "$2")" "$(python3 -c "print(f'{$2 / $m_curl:.2f}x')")"; }
row "curl -o (no verification)" "$m_curl"
row "sha256sum (file in page cache)" "$(median "${t_sha[@]}")"
row "curl -o, then sha256sum" "$(median "${t_both[@]}")"
row "curl -o, then sync (fsync)" "$(median "${t_curl_sync[@]}")"
row "ours: download+SHA256+fsync+rename" "$m_ours"
echo
echo "CPU time (user+sys, median): curl -o $(median "${cpu_curl[@]}") s, ours $(median "${cpu_ours[@]}") s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "our peak RSS (max of $reps runs): $(printf '%s\n' "${rss_ours[@]}" | sort -n | tail -1) KiB"
echo "goal: ours <= 1.10x curl -o -> $(python3 -c "print('met' if $m_ours <= 1.1 * $m_curl else 'NOT met')") ($(python3 -c "print(f'{$m_ours / $m_curl:.2f}x')"))"
