#!/usr/bin/env bash
# Lays out one platform's release bundle: the folder that `personal-ai-agent release pack --bundle-dir`
# turns into PersonalAIAgent-<os>-<arch>-<version>.tar.zst (.zip on Windows). See docs/BUNDLE.md.
#
#   scripts/stage-bundle.sh PLATFORM LAUNCHER BACKEND OUT_DIR
#
#   PLATFORM  linux-x86_64 | linux-aarch64 | macos-x86_64 | macos-aarch64 | windows-x86_64
#   LAUNCHER  the built launcher (target/<triple>/release/personal-ai-agent[.exe])
#   BACKEND   the built agent backend (for now target/<triple>/release/examples/agent_backend[.exe])
#   OUT_DIR   created empty; receives the bundle
#
# Result:
#   OUT_DIR/personal-ai-agent[.exe]      the launcher
#   OUT_DIR/backend/agent-backend[.exe]  the backend
#   OUT_DIR/agent.json                   from assets/agent.json; on Windows the command names the .exe,
#                                        and "models_manifest" names models.json when there is one
#   OUT_DIR/models.json                  the models manifest, when assets/models.json exists
#   OUT_DIR/share/...                    Linux only: desktop entry and icons, in the XDG layout
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 PLATFORM LAUNCHER BACKEND OUT_DIR" >&2
    exit 2
fi
platform=$1 launcher=$2 backend=$3 out=$4
assets="$(cd "$(dirname "$0")/../assets" && pwd)"

case "$platform" in
    linux-x86_64 | linux-aarch64 | macos-x86_64 | macos-aarch64) exe= ;;
    windows-x86_64) exe=.exe ;;
    *)
        echo "error: unknown platform '$platform'; use one of linux-x86_64, linux-aarch64, macos-x86_64, macos-aarch64, windows-x86_64" >&2
        exit 2
        ;;
esac
for file in "$launcher" "$backend"; do
    if [ ! -f "$file" ]; then
        echo "error: $file does not exist; build it first (cargo build --release --locked --target <triple>)" >&2
        exit 1
    fi
done
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    echo "error: $out is not empty; remove it or choose another folder" >&2
    exit 1
fi

mkdir -p "$out/backend"
cp "$launcher" "$out/personal-ai-agent$exe"
cp "$backend" "$out/backend/agent-backend$exe"
chmod 755 "$out/personal-ai-agent$exe" "$out/backend/agent-backend$exe"

if [ -f "$assets/models.json" ]; then
    cp "$assets/models.json" "$out/models.json"
fi

# agent.json from the template: on Windows command[0] gets its .exe (the launcher starts the file named
# there as it is), and a bundle with a models manifest says where it is. Then check the result: it parses
# and command[0] is a file of this bundle, so a bundle whose backend cannot start never reaches
# `release pack`. Python is on every GitHub runner; on Windows runners it is called `python`.
python=python3
"$python" -c '' 2>/dev/null || python=python
"$python" - "$assets/agent.json" "$out" "$exe" <<'PY'
import json, os, sys
template, bundle, exe = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(template))
if exe and not spec["command"][0].endswith(exe):
    spec["command"][0] += exe
if os.path.isfile(os.path.join(bundle, "models.json")):
    spec["models_manifest"] = "models.json"
program = os.path.join(bundle, spec["command"][0])
if not os.path.isfile(program):
    sys.exit(f"error: agent.json names {spec['command'][0]!r} as the backend, but the bundle has no such file; fix assets/agent.json")
with open(os.path.join(bundle, "agent.json"), "w", newline="\n") as out:
    json.dump(spec, out, indent=2)
    out.write("\n")
PY

if [ "${platform%%-*}" = linux ]; then
    mkdir -p "$out/share/applications" "$out/share/icons/hicolor/256x256/apps" "$out/share/icons/hicolor/scalable/apps"
    cp "$assets/personal-ai-agent.desktop" "$out/share/applications/"
    cp "$assets/icon.png" "$out/share/icons/hicolor/256x256/apps/personal-ai-agent.png"
    cp "$assets/icon.svg" "$out/share/icons/hicolor/scalable/apps/personal-ai-agent.svg"
fi
