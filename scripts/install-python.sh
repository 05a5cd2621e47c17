#!/usr/bin/env bash
# Create .venv and install callmask (and, with "test", its test tools) from the pinned
# pyproject. Skips the install when pyproject.toml has not changed since the last one.
set -euo pipefail
extras=${1:-}
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
digest=$(sha256sum pyproject.toml | cut -c1-16)
stamp="$venv/.installed-$digest-${extras:-base}"
# The test install is a superset of the plain one.
if [ ! -f "$stamp" ] && { [ -n "$extras" ] || [ ! -f "$venv/.installed-$digest-test" ]; }; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$target"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
