#!/usr/bin/env bash
# The whole check of the project: lint, format, types, then the test suite on SQLite
# and, when a server answers on 127.0.0.1:5432, on PostgreSQL too.
set -uo pipefail
venv=.venv/bin

"$venv/ruff" check src tests bench || exit 1
"$venv/ruff" format --check src tests bench || exit 1
"$venv/mypy" || exit 1

postgres_url=${CALLMASK_TEST_DATABASE_URL:-}
if [ -z "$postgres_url" ]; then
  if "$venv/python" - <<'PY'
import asyncio, sys
import asyncpg
async def main() -> None:
    connection = await asyncio.wait_for(
        asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test"), timeout=3
    )
    await connection.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"PostgreSQL at 127.0.0.1:5432 not usable: {exc}", file=sys.stderr)
    sys.exit(1)
PY
  then
    postgres_url="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
  fi
fi
if [ -n "$postgres_url" ]; then
  export CALLMASK_TEST_DATABASE_URL="$postgres_url"
  echo "== store and API tests also run on PostgreSQL: $postgres_url"
else
  echo "!!"
  echo "!! PostgreSQL NOT AVAILABLE: the postgres-marked tests are SKIPPED."
  echo "!! Start a server on 127.0.0.1:5432 (trust auth, database test) or set"
  echo "!! CALLMASK_TEST_DATABASE_URL to run them."
  echo "!!"
fi

"$venv/pytest" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
