#!/usr/bin/env bash
# Downloads and verifies the models a bundle's models manifest lists, for releases made "with models"
# (the release workflow's with_models input). Each file is fetched once, resumably, into DEST_DIR and
# checked against the manifest's size and SHA256; a file already there and correct is not fetched again.
#
#   scripts/fetch-models.sh MANIFEST DEST_DIR
#
# MANIFEST is the models manifest the launcher reads (docs/MODELS.md):
#   {"schema": 1, "models": [{"name": "...", "url": "https://...", "size": N, "sha256": "hex", "required": true}]}
# Only required models (the default) are carried; optional ones stay a download away, as for
# `personal-ai-agent models download` without --all. The files land in DEST_DIR under their `name`; the
# release workflow links that folder into each bundle as `models/`, where the launcher looks.
# MAX_TOTAL_BYTES (environment), when set, refuses a manifest whose models add up to more before anything
# is downloaded: GitHub refuses release assets of 2 GiB or more, so a release that would need a bigger
# archive must fail early, not after an hour of downloading.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 MANIFEST DEST_DIR" >&2
    exit 2
fi
manifest=$1 dest=$2
if [ ! -f "$manifest" ]; then
    echo "error: no models manifest at $manifest; add assets/models.json (see docs/RELEASING.md) or run without with_models" >&2
    exit 1
fi

python=python3
"$python" -c '' 2>/dev/null || python=python
# One tab-separated line per model: name, size, sha256, url. Python validates so the shell need not.
listing=$("$python" - "$manifest" <<'PY'
import json, re, sys
path = sys.argv[1]
data = json.load(open(path))
if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("models"), list):
    sys.exit(f'{path}: not a models manifest of schema 1 ({{"schema": 1, "models": [...]}}); see docs/MODELS.md')
for entry in data["models"]:
    if not entry.get("required", True):
        continue
    name, url, size, sha = entry["name"], entry["url"], int(entry["size"]), entry["sha256"].lower()
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
        sys.exit(f"{path}: model name {name!r} must be a plain file name")
    if not url.startswith("https://"):
        sys.exit(f"{path}: model {name} must be fetched over https, not {url}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        sys.exit(f"{path}: model {name} has no valid sha256")
    print(f"{name}\t{size}\t{sha}\t{url}")
PY
)

if [ -z "$listing" ]; then
    echo "models: $manifest lists no required models; nothing to carry"
    exit 0
fi
total=0
while IFS=$'\t' read -r _ size _ _; do
    total=$((total + size))
done <<<"$listing"
echo "models: $(wc -l <<<"$listing") files, $total bytes"
if [ -n "${MAX_TOTAL_BYTES:-}" ] && [ "$total" -gt "$MAX_TOTAL_BYTES" ]; then
    echo "error: the models add up to $total bytes, over the limit of $MAX_TOTAL_BYTES; GitHub refuses release assets of 2 GiB or more, so publish without models (users download them on first run)" >&2
    exit 1
fi

mkdir -p "$dest"
while IFS=$'\t' read -r name size sha url; do
    target="$dest/$name"
    if [ -f "$target" ] && [ "$(wc -c <"$target")" -eq "$size" ] &&
        [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$sha" ]; then
        echo "$name: present and verified"
        continue
    fi
    # --continue-at - resumes a .part left by an earlier, interrupted run.
    curl --fail --location --silent --show-error --retry 5 --retry-all-errors \
        --continue-at - --output "$target.part" "$url"
    actual_size=$(wc -c <"$target.part")
    actual_sha=$(sha256sum "$target.part" | cut -d' ' -f1)
    if [ "$actual_size" -ne "$size" ] || [ "$actual_sha" != "$sha" ]; then
        rm -f "$target.part"
        echo "error: $name from $url: expected $size bytes with SHA256 $sha, got $actual_size bytes with $actual_sha; fix the manifest or the URL" >&2
        exit 1
    fi
    mv "$target.part" "$target"
    echo "$name: downloaded and verified"
done <<<"$listing"
