#!/usr/bin/env bash
# Install the Debian packages callmask needs, and only those that are missing.
# Runs as root on Debian 12 (bookworm); prints what it installs and why it stops.
set -euo pipefail

packages=(
  rtpengine-daemon   # media anchoring (userspace mode, started by callmask itself)
  sip-tester         # SIPp: the carrier on both sides of a call in the interop tests
  espeak-ng          # text-to-speech for OTP announcements
  lame               # MP3 encoding of test and TTS audio
  kamailio           # SIP edge with the dispatcher module over several nodes (tests start it themselves)
  ca-certificates
  chromium           # the browser the console's Playwright tests drive (tests/console)
)
# npm installs the console's pinned front-end libraries (scripts/install-frontend.sh).
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi
# A Python without venv/ensurepip (Debian's own python3) needs python3-venv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  packages+=(python3-venv python3-dev)
fi
if ! command -v gcc >/dev/null 2>&1; then
  packages+=(gcc)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: missing Debian packages: ${missing[*]}; run as root or install them first" >&2
  exit 1
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
