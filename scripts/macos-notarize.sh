#!/usr/bin/env bash
# Submits signed macOS executables to Apple's notary service and waits for the verdict, for the release
# workflow. Run it after scripts/macos-codesign.sh.
#
#   scripts/macos-notarize.sh FILE...
#
# Environment (from the repository's secrets): APPLE_ID, APPLE_APP_PASSWORD (an app-specific password
# made at appleid.apple.com), APPLE_TEAM_ID.
#
# Stapling: once accepted, every .app, .pkg or .dmg among FILE gets its ticket stapled (`xcrun stapler
# staple`), so Gatekeeper accepts it offline. Apple's stapler cannot attach tickets to bare executables
# (the backend in the .tar.gz): Gatekeeper looks those up online the first time they run from a
# quarantined download.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 FILE..." >&2
    exit 2
fi
: "${APPLE_ID:?secret APPLE_ID is empty}"
: "${APPLE_APP_PASSWORD:?secret APPLE_APP_PASSWORD is empty}"
: "${APPLE_TEAM_ID:?secret APPLE_TEAM_ID is empty}"

work=$(mktemp -d "${RUNNER_TEMP:-/tmp}/notarize.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The notary service takes a zip; ditto keeps the signatures intact.
mkdir "$work/payload"
for file in "$@"; do
    # ditto keeps an .app's links and signature as they are.
    ditto "$file" "$work/payload/$(basename "$file")"
done
ditto -c -k --keepParent "$work/payload" "$work/payload.zip"

xcrun notarytool submit "$work/payload.zip" --apple-id "$APPLE_ID" --password "$APPLE_APP_PASSWORD" \
    --team-id "$APPLE_TEAM_ID" --wait --timeout 30m --output-format json >"$work/result.json"
status=$(plutil -extract status raw -o - "$work/result.json")
submission=$(plutil -extract id raw -o - "$work/result.json")
if [ "$status" != Accepted ]; then
    echo "error: notarization of submission $submission ended '$status'; Apple's log follows" >&2
    xcrun notarytool log "$submission" --apple-id "$APPLE_ID" --password "$APPLE_APP_PASSWORD" \
        --team-id "$APPLE_TEAM_ID" >&2 || true
    exit 1
fi
echo "notarized: submission $submission accepted"
for file in "$@"; do
    case "$file" in
        *.app | *.pkg | *.dmg)
            xcrun stapler staple "$file"
            xcrun stapler validate "$file"
            ;;
    esac
done
