#!/usr/bin/env bash
# Pack the one-folder build DIST/spdesk into DIST/spdesk-VERSION-linux-ARCH.tar.gz, with the desktop
# entry, the icon and install.sh (which installs it for the user, and uninstalls it).
# Usage: bash installer/linux/pack.sh DIST VERSION        (build.sh runs it after the smoke test)
set -euo pipefail
dist="$1"
version="$2"
here="$(cd "$(dirname "$0")" && pwd)"
cp "$here/install.sh" "$here/spdesk.desktop" "$here/../../resources/icons/spdesk-256.png" \
   "$dist/spdesk/"
# The licences where a person unpacking the tarball looks: PyInstaller puts them in _internal.
for notice in LICENSE NOTICES.txt licenses; do
  if [ -e "$dist/spdesk/_internal/$notice" ]; then cp -R "$dist/spdesk/_internal/$notice" "$dist/spdesk/"; fi
done
archive="$dist/spdesk-${version}-linux-$(uname -m).tar.gz"
tar -C "$dist" -czf "$archive" spdesk
echo "archive: $archive"
