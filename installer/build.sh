#!/usr/bin/env bash
# Build the one-folder app with PyInstaller, then smoke-test it: a build that does not pass
# `spdesk --self-test` (a missing module or resource) or cannot fine-tune a photo against an
# encoder fails this script, whatever PyInstaller said.
# Usage: bash installer/build.sh            (uses the active Python environment)
# Output: dist/spdesk/ (and dist/spdesk-<version>-linux-x86_64.tar.gz on Linux)
set -euo pipefail
cd "$(dirname "$0")"
# The PyInstaller this build was last checked with, into the build venv when it has none.
python -c "import PyInstaller" 2>/dev/null || python -m pip install -q "pyinstaller==6.22.3"
if [ "$(uname -s)" = "Darwin" ] && [ ! -f macos/spdesk.icns ]; then
  echo "== macOS icon (the step in installer/macos/README.md)"
  (cd macos && rm -rf spdesk.iconset && mkdir spdesk.iconset \
    && for n in 16 32 128 256 512; do
         sips -z $n $n ../../resources/icons/spdesk-512.png --out "spdesk.iconset/icon_${n}x${n}.png"
       done \
    && iconutil -c icns spdesk.iconset && rm -rf spdesk.iconset)
fi
rm -rf ../build/spdesk ../dist/spdesk ../dist/spdesk-*.tar.gz  # where PyInstaller writes
python -m PyInstaller --noconfirm --clean --distpath ../dist --workpath ../build spdesk.spec
cd ..
echo "== smoke test of the frozen build"
QT_QPA_PLATFORM=offscreen ./dist/spdesk/spdesk --version
home=$(mktemp -d)  # a first run's: the protection key is made there, the builder's is left alone
trap 'rm -rf "$home"' EXIT
# --self-test also fine-tunes a photo against an encoder file it writes (random TAESD-shaped
# weights): diffusers and the files it needs, as the real encoders do.
SPDESK_HOME="$home" QT_QPA_PLATFORM=offscreen ./dist/spdesk/spdesk --self-test
# The window: a missing Qt plugin or module fails here, not on a user's desktop.
shown=$(SPDESK_HOME="$home" SPDESK_STARTUP_PROBE=1 QT_QPA_PLATFORM=offscreen ./dist/spdesk/spdesk)
[[ "$shown" == *window-shown* ]] || { echo "the frozen window did not start: $shown" >&2; exit 1; }
du -sh dist/spdesk
if [ "$(uname -s)" = "Linux" ]; then
  version=$(./dist/spdesk/spdesk --version | awk '{print $2}')
  bash installer/linux/pack.sh dist "$version"
fi
