#!/usr/bin/env bash
# Builds the Debian package of the launcher: /usr/bin/personal-ai-agent, the desktop entry, the icons and
# the AppStream metainfo, so the app shows in the menu and in software centres, and `apt remove` takes it
# away cleanly; the manual page, and what Debian policy asks of every package in
# /usr/share/doc/personal-ai-agent/ (the copyright file, DEP-5, and the changelog of this native package,
# changelog.gz). scripts/check-packaging.sh checks the result with lintian. The launcher updates the agent
# in the user's data folder; a launcher installed this way is updated by the package manager (a newer
# .deb), not by replacing itself.
#
# SOURCE_DATE_EPOCH, when set, dates the changelog entry (a reproducible build); otherwise it is now.
#
# Usage: scripts/package-deb.sh VERSION ARCH LAUNCHER OUT_DIR
#   VERSION   the release version (1.4.0, 1.5.0-beta.1)
#   ARCH      Debian architecture: amd64 or arm64
#   LAUNCHER  the built launcher executable
#   OUT_DIR   where personal-ai-agent_<version>_<arch>.deb is written
# Needs dpkg-deb (Debian, Ubuntu). Prints the path of the package.
set -euo pipefail
cd "$(dirname "$0")/.."
# Files and folders in the package are readable by all, whatever the caller's umask.
umask 022

if [ $# -ne 4 ]; then
    echo "usage: $0 VERSION ARCH LAUNCHER OUT_DIR" >&2
    exit 2
fi
version=$1 arch=$2 launcher=$3 out=$4
case "$arch" in
    amd64 | arm64) ;;
    *)
        echo "error: ARCH must be amd64 or arm64, not '$arch'" >&2
        exit 2
        ;;
esac
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
    echo "error: VERSION must be a semantic version such as 1.4.0, not '$version'" >&2
    exit 2
fi
if [ ! -f "$launcher" ] || [ ! -x "$launcher" ]; then
    echo "error: $launcher is not an executable file; build the launcher first" >&2
    exit 1
fi
for tool in dpkg-deb gzip md5sum; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing; install dpkg, gzip and coreutils" >&2
        exit 1
    }
done
# Debian orders 1.5.0~beta.1 before 1.5.0, as semver orders 1.5.0-beta.1 before 1.5.0.
deb_version=${version/-/\~}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -D -m 0755 "$launcher" "$stage/usr/bin/personal-ai-agent"
install -D -m 0644 assets/personal-ai-agent.desktop "$stage/usr/share/applications/personal-ai-agent.desktop"
install -D -m 0644 assets/icon.png "$stage/usr/share/icons/hicolor/256x256/apps/personal-ai-agent.png"
install -D -m 0644 assets/icon.svg "$stage/usr/share/icons/hicolor/scalable/apps/personal-ai-agent.svg"
metainfo="$stage/usr/share/metainfo/ai.personalaiagent.PersonalAIAgent.metainfo.xml"
install -D -m 0644 assets/personal-ai-agent.metainfo.xml "$metainfo"
# This release, as software centres list it.
sed -i "s|</component>|  <releases>\n    <release version=\"$version\" date=\"$(date -u +%Y-%m-%d)\"/>\n  </releases>\n</component>|" "$metainfo"

maintainer="The Personal AI Agent developers <noreply@personalaiagent.invalid>"
when=${SOURCE_DATE_EPOCH:-$(date +%s)}
# The manual page, compressed as policy asks (-n: no name or time stamp, so the bytes are reproducible).
install -d -m 0755 "$stage/usr/share/man/man1"
sed "s|^\.TH PERSONAL-AI-AGENT 1 \"\" \"personal-ai-agent\"|.TH PERSONAL-AI-AGENT 1 \"$(date -u -d "@$when" +%Y-%m-%d)\" \"personal-ai-agent $version\"|" \
    assets/personal-ai-agent.1 | gzip -9n >"$stage/usr/share/man/man1/personal-ai-agent.1.gz"
chmod 0644 "$stage/usr/share/man/man1/personal-ai-agent.1.gz"
# Policy 12.5 and 12.7: every package carries its copyright file and its changelog. The version has no
# Debian revision (a native package), so the changelog is changelog.gz, in Debian's format; it names the
# release whose notes say what changed.
doc="$stage/usr/share/doc/personal-ai-agent"
install -D -m 0644 assets/debian/copyright "$doc/copyright"
{
    printf 'personal-ai-agent (%s) unstable; urgency=medium\n\n' "$deb_version"
    printf '  * Release %s. What changed is in the release notes:\n' "$version"
    printf '    https://github.com/personal-ai-agent/personal-ai-agent/releases/tag/v%s\n\n' "$version"
    printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$when")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
# Lintian tags accepted for this package, each with its reason, if any must be (none today: lintian finds
# no error or warning in it, see scripts/check-packaging.sh).
if [ -f assets/debian/lintian-overrides ]; then
    install -D -m 0644 assets/debian/lintian-overrides "$stage/usr/share/lintian/overrides/personal-ai-agent"
fi

size_kib=$(du -sk "$stage/usr" | cut -f1)
mkdir -p "$stage/DEBIAN"
# What `dpkg --verify` checks the installed files against.
(cd "$stage" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: personal-ai-agent
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size_kib
Depends: libc6 (>= 2.35), libgl1, libxkbcommon-x11-0
Recommends: xdg-utils
Section: utils
Priority: optional
Homepage: https://github.com/personal-ai-agent/personal-ai-agent
Description: Run and update your local, private AI agent
 Installs a local, privacy-first AI agent, fetches the models it needs, runs it
 on this computer and keeps it up to date from signed, health-checked releases.
CONTROL

mkdir -p "$out"
deb="$out/personal-ai-agent_${deb_version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "$deb"
