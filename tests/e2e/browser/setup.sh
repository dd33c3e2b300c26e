#!/bin/sh
# Installs what tests/e2e/test_browser.py needs on a fresh Debian machine, and nothing when it is
# already there: Debian's Chromium (the browser the test drives; no browser download from npm),
# Node.js and npm when missing, and the exact hls.js and mpegts.js versions of package-lock.json
# into tests/e2e/browser/node_modules (not committed).  Called by `make system-deps`; safe to rerun.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    echo "setup.sh: installing$missing"
    $sudo apt-get update -qq
    # Recommends would pull in a desktop's worth of packages a headless test never uses.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
fi

# node_modules is reinstalled when package-lock.json changed since the last install, so a version
# bump in the lock file reaches every checkout that already has an older node_modules.
stamp="$here/node_modules/.installed-lock"
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
    echo "setup.sh: npm ci in $here"
    # --ignore-scripts: two player libraries need no install scripts, and none should run here.
    (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    cp "$here/package-lock.json" "$stamp"
fi
