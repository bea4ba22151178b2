#!/usr/bin/env bash
# Signs macOS executables with a Developer ID Application certificate, for the release workflow.
#
#   scripts/macos-codesign.sh FILE...
#
# Environment (from the repository's secrets):
#   APPLE_CERTIFICATE           the .p12 certificate and private key, base64-encoded
#   APPLE_CERTIFICATE_PASSWORD  the .p12 password
#   APPLE_TEAM_ID               the team whose "Developer ID Application" identity to use
#   KEYCHAIN_PASSWORD           optional: password of the temporary keychain (a random one otherwise)
#
# The certificate goes into a temporary keychain in $RUNNER_TEMP that is deleted on exit, so nothing is
# left in the runner's login keychain. Signing uses the hardened runtime and a secure timestamp, which
# notarization requires.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 FILE..." >&2
    exit 2
fi
: "${APPLE_CERTIFICATE:?secret APPLE_CERTIFICATE is empty}"
: "${APPLE_CERTIFICATE_PASSWORD:?secret APPLE_CERTIFICATE_PASSWORD is empty}"
: "${APPLE_TEAM_ID:?secret APPLE_TEAM_ID is empty}"
keychain_password=${KEYCHAIN_PASSWORD:-$(openssl rand -base64 32)}

work=$(mktemp -d "${RUNNER_TEMP:-/tmp}/codesign.XXXXXX")
keychain="$work/signing.keychain-db"
original_keychains=$(security list-keychains -d user | tr -d '"')
cleanup() {
    # Restore the search list before deleting, so later steps never see a dangling keychain.
    # shellcheck disable=SC2086 # the list is whitespace-separated paths without spaces
    security list-keychains -d user -s $original_keychains || true
    security delete-keychain "$keychain" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

printf '%s' "$APPLE_CERTIFICATE" | base64 --decode >"$work/certificate.p12"
security create-keychain -p "$keychain_password" "$keychain"
security set-keychain-settings -lut 21600 "$keychain"
security unlock-keychain -p "$keychain_password" "$keychain"
security import "$work/certificate.p12" -k "$keychain" -P "$APPLE_CERTIFICATE_PASSWORD" -f pkcs12 \
    -T /usr/bin/codesign
# Lets codesign use the key without a GUI prompt.
security set-key-partition-list -S apple-tool:,apple:,codesign: -s -k "$keychain_password" "$keychain" >/dev/null
# shellcheck disable=SC2086
security list-keychains -d user -s "$keychain" $original_keychains

identity=$(security find-identity -v -p codesigning "$keychain" |
    sed -n "s/.*\"\(Developer ID Application: .*($APPLE_TEAM_ID)\)\"$/\1/p" | head -n 1)
if [ -z "$identity" ]; then
    echo "error: the certificate in APPLE_CERTIFICATE has no 'Developer ID Application' identity for team $APPLE_TEAM_ID; export the right one from Keychain Access as .p12" >&2
    security find-identity -v -p codesigning "$keychain" >&2
    exit 1
fi

for file in "$@"; do
    codesign --force --options runtime --timestamp --keychain "$keychain" --sign "$identity" "$file"
    codesign --verify --strict --verbose=2 "$file"
done
echo "signed $# files as $identity"
