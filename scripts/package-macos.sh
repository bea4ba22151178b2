#!/usr/bin/env bash
# macOS packaging of the launcher: the .app bundle (users drag it into Applications; the release bundle
# carries it so the launcher can replace itself whole, keeping its signature sealed) and the .dmg.
#
#   scripts/package-macos.sh app VERSION LAUNCHER OUT_DIR
#       Makes OUT_DIR/Personal AI Agent.app (Info.plist with bundle id, version and minimum macOS, the icon
#       from assets/icon.png, the launcher as Contents/MacOS/personal-ai-agent) and prints its path.
#       Runs anywhere (python3 writes the plist and the icon), so it is checked on Linux too.
#   scripts/package-macos.sh dmg VERSION PLATFORM APP OUT_DIR
#       Makes OUT_DIR/PersonalAIAgent-PLATFORM-VERSION.dmg holding APP and a link to /Applications, and
#       prints its path. Needs hdiutil (macOS). With DMG_STAGE_ONLY=1 it lays out the disk image's folder
#       in OUT_DIR/dmg-stage and prints that instead (how the layout is checked without macOS).
#
# Signing and notarization are separate steps (scripts/macos-codesign.sh, scripts/macos-notarize.sh):
# sign the .app before the .dmg is made, then sign, notarize and staple the .dmg.
#
# Environment: MACOSX_DEPLOYMENT_TARGET, the oldest macOS the launcher runs on (default 11.0; the
# release workflow sets it for the build too, so the two agree).
set -euo pipefail

usage() {
    echo "usage: $0 app VERSION LAUNCHER OUT_DIR" >&2
    echo "       $0 dmg VERSION PLATFORM APP OUT_DIR" >&2
    exit 2
}
[ $# -ge 1 ] || usage
mode=$1
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
app_name="Personal AI Agent.app"
bundle_id="ai.personalaiagent.PersonalAIAgent"

check_version() {
    if ! [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
        echo "error: '$1' is not a release version (MAJOR.MINOR.PATCH, optionally -PRERELEASE)" >&2
        exit 2
    fi
}

case "$mode" in
    app)
        [ $# -eq 3 ] || usage
        version=$1 launcher=$2 out=$3
        check_version "$version"
        if [ ! -f "$launcher" ]; then
            echo "error: $launcher does not exist; build it first (cargo build --profile dist --locked --target <triple>)" >&2
            exit 1
        fi
        app="$out/$app_name"
        if [ -e "$app" ]; then
            echo "error: $app exists; remove it or choose another folder" >&2
            exit 1
        fi
        mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
        cp "$launcher" "$app/Contents/MacOS/personal-ai-agent"
        chmod 755 "$app/Contents/MacOS/personal-ai-agent"
        printf 'APPL????' >"$app/Contents/PkgInfo"
        # CFBundleVersion takes numbers only: a pre-release's is its MAJOR.MINOR.PATCH.
        python3 - "$app" "$version" "${version%%-*}" "${MACOSX_DEPLOYMENT_TARGET:-11.0}" "$bundle_id" \
            "$root/assets/icon.png" <<'PY'
import plistlib, struct, sys
app, version, numeric, minimum, bundle_id, icon = sys.argv[1:]
info = {
    "CFBundleDevelopmentRegion": "en",
    "CFBundleDisplayName": "Personal AI Agent",
    "CFBundleExecutable": "personal-ai-agent",
    "CFBundleIconFile": "AppIcon",
    "CFBundleIdentifier": bundle_id,
    "CFBundleInfoDictionaryVersion": "6.0",
    "CFBundleName": "Personal AI Agent",
    "CFBundlePackageType": "APPL",
    "CFBundleShortVersionString": version,
    "CFBundleVersion": numeric,
    "LSApplicationCategoryType": "public.app-category.productivity",
    "LSMinimumSystemVersion": minimum,
    "NSHighResolutionCapable": True,
    "NSHumanReadableCopyright": "Personal AI Agent contributors, MIT OR Apache-2.0",
}
with open(f"{app}/Contents/Info.plist", "wb") as f:
    plistlib.dump(info, f)
# An .icns of one 256 px PNG (type ic08): macOS scales it for the Dock and Finder.
png = open(icon, "rb").read()
if png[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", png[16:24]) != (256, 256):
    sys.exit(f"error: {icon} is not a 256x256 PNG; run scripts/render-icons.sh")
entry = b"ic08" + struct.pack(">I", 8 + len(png)) + png
with open(f"{app}/Contents/Resources/AppIcon.icns", "wb") as f:
    f.write(b"icns" + struct.pack(">I", 8 + len(entry)) + entry)
PY
        echo "$app"
        ;;
    dmg)
        [ $# -eq 4 ] || usage
        version=$1 platform=$2 app=$3 out=$4
        check_version "$version"
        case "$platform" in
            macos-x86_64 | macos-aarch64) ;;
            *)
                echo "error: '$platform' is not a macOS platform; use macos-x86_64 or macos-aarch64" >&2
                exit 2
                ;;
        esac
        if [ ! -f "$app/Contents/Info.plist" ]; then
            echo "error: $app is not an .app bundle; make it with: $0 app VERSION LAUNCHER OUT_DIR" >&2
            exit 1
        fi
        stage="$out/dmg-stage"
        rm -rf "$stage"
        mkdir -p "$stage"
        # ditto keeps the bundle's signature, links and extended attributes as they are.
        if command -v ditto >/dev/null; then
            ditto "$app" "$stage/$app_name"
        else
            cp -R "$app" "$stage/$app_name"
        fi
        ln -s /Applications "$stage/Applications"
        if [ "${DMG_STAGE_ONLY:-}" = 1 ]; then
            echo "$stage"
            exit 0
        fi
        if ! command -v hdiutil >/dev/null; then
            echo "error: hdiutil is missing: a .dmg is made on macOS (DMG_STAGE_ONLY=1 lays out its folder anywhere)" >&2
            exit 1
        fi
        dmg="$out/PersonalAIAgent-$platform-$version.dmg"
        rm -f "$dmg"
        hdiutil create -quiet -volname "Personal AI Agent $version" -srcfolder "$stage" -ov -format UDZO "$dmg"
        rm -rf "$stage"
        echo "$dmg"
        ;;
    *) usage ;;
esac
