#!/usr/bin/env bash
# Renders assets/icon.svg into assets/icon.png (256x256: Linux desktop entry, README) and assets/icon.ico
# (Windows: the MSI's Add/Remove Programs and Start-menu icon, 16 to 256 px). Run it after editing the SVG
# and commit the results: release builds use the committed files, so they need neither tool.
# Needs rsvg-convert (Debian: librsvg2-bin) and ImageMagick's convert (Debian: imagemagick).
set -euo pipefail
cd "$(dirname "$0")/../assets"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rsvg-convert --width 256 --height 256 icon.svg --output icon.png
frames=()
for size in 16 24 32 48 64 128 256; do
    # Each size is drawn from the vector rather than shrunk from the 256 px image, so small ones stay sharp.
    rsvg-convert --width "$size" --height "$size" icon.svg --output "$work/icon-$size.png"
    frames+=("$work/icon-$size.png")
done
convert "${frames[@]}" icon.ico
