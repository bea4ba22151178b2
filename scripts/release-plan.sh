#!/usr/bin/env bash
# Decides what a run of the release workflow publishes, and prints it as `key=value` lines for
# $GITHUB_OUTPUT. Kept out of the workflow so it can be run and checked locally:
#
#   EVENT=push REF_NAME=v1.2.0 scripts/release-plan.sh
#   EVENT=workflow_dispatch INPUT_VERSION=1.3.0-beta.1 INPUT_DRAFT=true INPUT_WITH_MODELS=false scripts/release-plan.sh
#
# Inputs (environment): EVENT (github.event_name); REF_NAME (the tag, on push); INPUT_VERSION,
# INPUT_DRAFT, INPUT_WITH_MODELS (workflow_dispatch inputs).
# Outputs: version (no leading v), tag (v + version), prerelease (true when the version has a `-`),
# draft, with_models, and msi_version (major.minor.patch; empty for pre-releases, which get no MSI because
# MSI versions cannot order a beta before its final release).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "::error::$*" >&2
    exit 1
}

case "${EVENT:?EVENT must be set (github.event_name)}" in
    push)
        version=${REF_NAME:?REF_NAME must be set to the pushed tag}
        version=${version#v}
        # A tag is a promise made in public: releases from tags are always drafts first, without models.
        draft=true
        with_models=false
        ;;
    workflow_dispatch)
        version=${INPUT_VERSION:?the workflow input version is required}
        version=${version#v}
        draft=${INPUT_DRAFT:-true}
        with_models=${INPUT_WITH_MODELS:-false}
        ;;
    *) fail "the release workflow runs on a tag push or workflow_dispatch, not on '$EVENT'" ;;
esac

for flag in "$draft" "$with_models"; do
    [[ $flag == true || $flag == false ]] || fail "draft and with_models must be true or false, not '$flag'"
done

semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
if ! [[ $version =~ $semver ]]; then
    fail "'$version' is not a semantic version (like 1.4.0 or 1.5.0-beta.1); the launcher skips releases whose tag is not one"
fi
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]} patch=${BASH_REMATCH[3]}

prerelease=false
[[ $version == *-* ]] && prerelease=true

msi_version=
if [ "$prerelease" = false ]; then
    if [ "$major" -le 255 ] && [ "$minor" -le 255 ] && [ "$patch" -le 65535 ]; then
        msi_version="$major.$minor.$patch"
    else
        echo "::warning::$version does not fit an MSI version (major and minor at most 255, patch at most 65535); no MSI this time" >&2
    fi
fi

# The launcher reports the version it was built as; a tag that disagrees with Cargo.toml would publish a
# launcher that calls itself something else.
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ "$cargo_version" != "$version" ]; then
    message="Cargo.toml says version $cargo_version but the release is $version"
    if [ "$EVENT" = push ]; then
        fail "$message: set the version in Cargo.toml (and Cargo.lock), commit, and tag that commit"
    fi
    echo "::warning::$message; the launcher in this release will report $cargo_version" >&2
fi

echo "version=$version"
echo "tag=v$version"
echo "prerelease=$prerelease"
echo "draft=$draft"
echo "with_models=$with_models"
echo "msi_version=$msi_version"
