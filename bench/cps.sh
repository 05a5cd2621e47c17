#!/usr/bin/env bash
# Highest sustained calls per second (>= 99.9 % success) and the post-dial delay callmask
# adds, SIPp UAC -> callmask -> SIPp UAS with the callback on loopback and media anchored
# in rtpengine, 1 s calls, offered in steps. Arguments go to bench/cps.py
# (e.g. --start 100 --step 100 --max 700 --step-seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/cps.py "$@"
