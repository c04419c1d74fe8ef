#!/usr/bin/env bash
# Install the unpacked one-folder build for the current user (no root needed):
#   tar xzf spdesk-*-linux-x86_64.tar.gz && bash spdesk/install.sh   (run from the folder above)
# Uninstall: bash ~/.local/share/spdesk-app/install.sh --uninstall
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
dest="${XDG_DATA_HOME:-$HOME/.local/share}"
bin="$HOME/.local/bin"
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$dest/spdesk-app" "$bin/spdesk" "$dest/applications/spdesk.desktop" \
         "$dest/icons/hicolor/256x256/apps/spdesk.png"
  echo "spdesk removed (your models, settings and photos were left alone)."
  exit 0
fi
# An upgrade replaces the old build whole: merged into it, files the old build had and the new one
# does not (an older torch's libraries) stayed and were loaded. Run from the installed folder
# itself, the build stays as it is and only the links below are made again.
if [ "$src" != "$(cd "$dest/spdesk-app" 2>/dev/null && pwd || true)" ]; then
  rm -rf "$dest/spdesk-app"
  mkdir -p "$dest/spdesk-app"
  cp -a "$src/." "$dest/spdesk-app/"
fi
mkdir -p "$bin" "$dest/applications" "$dest/icons/hicolor/256x256/apps"
ln -sf "$dest/spdesk-app/spdesk" "$bin/spdesk"
# The menu and "Open with" run the installed program by its full path: ~/.local/bin is not on
# every desktop session's PATH.
sed "s|^Exec=spdesk |Exec=\"$dest/spdesk-app/spdesk\" |" "$src/spdesk.desktop" \
  > "$dest/applications/spdesk.desktop"
cp "$src/spdesk-256.png" "$dest/icons/hicolor/256x256/apps/spdesk.png"
echo "spdesk installed: run 'spdesk' or find it in your applications menu."
