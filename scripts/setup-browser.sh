#!/usr/bin/env bash
# Make the headless browser the real-browser test (tests/test_browser.py) drives.
#
# No browser can be downloaded by a test tool on these machines (`playwright install` fails), so
# playwright launches Debian's chromium at /usr/bin/chromium. This script installs that package
# when it is missing, then checks that the binary answers. Idempotent: when chromium is already
# there it only runs `chromium --version` (well under a second). Run as root.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "[browser] installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends chromium >/tmp/straightline-chromium-install.log 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium >/tmp/straightline-chromium-install.log 2>&1 || {
            echo "[browser] apt-get install chromium failed; see /tmp/straightline-chromium-install.log" >&2
            exit 1
        }
    fi
fi

# the package's wrapper script prints a harmless shell warning on stderr on some hosts
version=$("$CHROMIUM" --headless --no-sandbox --version 2>/dev/null) || {
    echo "[browser] $CHROMIUM is installed but does not start; run it by hand to see why" >&2
    exit 1
}
echo "[browser] $version at $CHROMIUM"
