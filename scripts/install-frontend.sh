#!/usr/bin/env bash
# Install the console's front-end libraries (htmx, its SSE extension, uPlot) from the
# npm registry into .frontend/ (git-ignored), where callmask serves them under
# /console/static/vendor/. Versions and integrity hashes are pinned by
# scripts/frontend/package-lock.json (npm ci refuses anything else); nothing is fetched
# from a CDN at run time. Skips the install when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=scripts/frontend
target=.frontend
if ! command -v npm >/dev/null 2>&1; then
  echo "install-frontend: npm is missing (scripts/install-system.sh installs it)" >&2
  exit 1
fi
digest=$(cat "$source_dir/package.json" "$source_dir/package-lock.json" | sha256sum | cut -c1-16)
stamp="$target/.installed-$digest"
if [ -f "$stamp" ]; then
  exit 0
fi
mkdir -p "$target"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
# --ignore-scripts: these are browser files; no package gets to run code at install.
(cd "$target" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
for file in htmx.org/dist/htmx.min.js htmx-ext-sse/dist/sse.min.js uplot/dist/uPlot.iife.min.js uplot/dist/uPlot.min.css; do
  if [ ! -f "$target/node_modules/$file" ]; then
    echo "install-frontend: $file missing after npm ci" >&2
    exit 1
  fi
done
rm -f "$target"/.installed-*
touch "$stamp"
(cd "$target" && npm ls --depth=0)
