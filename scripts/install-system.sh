#!/usr/bin/env bash
# Install the Debian packages callmask needs, and only those that are missing.
# Runs as root on Debian 12 (bookworm); prints what it installs and why it stops.
set -euo pipefail

packages=(
  rtpengine-daemon   # media anchoring (userspace mode, started by callmask itself)
  sip-tester         # SIPp: the carrier on both sides of a call in the interop tests
  espeak-ng          # text-to-speech for OTP announcements
  lame               # MP3 encoding of test and TTS audio, and of call recordings
  kamailio           # SIP edge (dispatcher) in front of several nodes; deploy/ and tests/cluster start their own
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

# Debian's kamailio package starts a system Kamailio on port 5060 (all addresses) with
# its sample configuration. callmask's tests and benches start Kamailio themselves, and
# a node on this host may want 5060: keep the packaged service stopped and disabled.
# With systemd that is its unit; without (containers), its init script.
keep_system_kamailio_off() {
  dpkg-query -W -f='${Status}' kamailio 2>/dev/null | grep -q 'install ok installed' || return 0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet kamailio.service 2>/dev/null \
      || systemctl is-active --quiet kamailio.service 2>/dev/null; then
      echo "install-system: stopping and disabling the packaged kamailio service"
      systemctl disable --now kamailio.service >/dev/null 2>&1 || true
    fi
  elif [ -x /etc/init.d/kamailio ]; then
    if [ -s /run/kamailio/kamailio.pid ] && kill -0 "$(cat /run/kamailio/kamailio.pid)" 2>/dev/null; then
      echo "install-system: stopping the packaged kamailio service"
      /etc/init.d/kamailio stop >/dev/null 2>&1 || true
    fi
    update-rc.d kamailio disable >/dev/null 2>&1 || true
  fi
}

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    keep_system_kamailio_off
  fi
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: missing Debian packages: ${missing[*]}; run as root or install them first" >&2
  exit 1
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# While installing, tell invoke-rc.d not to start kamailio at all (policy-rc.d, exit 101
# "action forbidden"), unless the machine already has a policy (containers often do).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# callmask install-system.sh, removed after the install\n[ "$1" = kamailio ] && exit 101\nexit 0\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
keep_system_kamailio_off
