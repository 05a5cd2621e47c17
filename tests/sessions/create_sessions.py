"""One process of the concurrency test: ``python -m tests.sessions.create_sessions URL
ACCOUNT SERVICE COUNT`` creates COUNT sessions for the same customer and agent at once,
each in its own transaction, and prints one JSON line: the created sids and the error
codes of the refusals."""

from __future__ import annotations

import asyncio
import json
import sys

from callmask.sessions.errors import ProxyError
from callmask.sessions.repository import ParticipantRequest, Sessions
from callmask.store.database import Database

CUSTOMER = "+41793026001"
AGENT = "+41793026002"


async def create_one(database: Database, account: str, service: str) -> str | int:
    try:
        async with database.session() as session:
            created = await Sessions(session).create(
                account,
                service,
                participants=[
                    ParticipantRequest(identifier=CUSTOMER),
                    ParticipantRequest(identifier=AGENT),
                ],
            )
            return created.sid
    except ProxyError as exc:
        return exc.code


async def main(url: str, account: str, service: str, count: int) -> None:
    database = Database(url)
    try:
        results = await asyncio.gather(
            *(create_one(database, account, service) for _ in range(count))
        )
    finally:
        await database.close()
    print(
        json.dumps(
            {
                "created": [r for r in results if isinstance(r, str)],
                "refused": [r for r in results if isinstance(r, int)],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
