#!/usr/bin/env bash
# The browser the explorer's test drives: Debian's chromium and chromium-driver (a browser build
# that downloads itself at install time cannot be fetched everywhere; Debian's packages can).
# Installs them with apt-get when /usr/bin/chromium or /usr/bin/chromedriver is missing, as root
# or through sudo; says what to do otherwise (the browser test then fails with the same reason).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_browser: no apt-get here; install chromium and its chromedriver, and point" \
       "ENTITYNET_CHROMIUM / ENTITYNET_CHROMEDRIVER at them" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install_browser: run as root, or install the Debian packages chromium chromium-driver" >&2
    exit 1
  fi
fi
echo "installing Debian's chromium and chromium-driver (the explorer's browser test)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver \
  >/dev/null || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }
/usr/bin/chromium --version
