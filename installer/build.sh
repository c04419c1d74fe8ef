#!/usr/bin/env bash
# Build the one-folder app with PyInstaller, then smoke-test it.
# Usage: bash installer/build.sh            (uses the active Python environment)
# Output: dist/spdesk/ (and dist/spdesk-<version>-linux-x86_64.tar.gz on Linux)
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q "pyinstaller>=6.5" >/dev/null
rm -rf build dist
python -m PyInstaller --noconfirm --clean --distpath ../dist --workpath ../build spdesk.spec
cd ..
echo "== smoke test of the frozen build"
QT_QPA_PLATFORM=offscreen ./dist/spdesk/spdesk --version
QT_QPA_PLATFORM=offscreen ./dist/spdesk/spdesk --self-test
du -sh dist/spdesk
if [ "$(uname -s)" = "Linux" ]; then
  version=$(./dist/spdesk/spdesk --version | awk '{print $2}')
  cp installer/linux/spdesk.desktop resources/icons/spdesk-256.png dist/spdesk/
  tar -C dist -czf "dist/spdesk-${version}-linux-$(uname -m).tar.gz" spdesk
  echo "archive: dist/spdesk-${version}-linux-$(uname -m).tar.gz"
fi
