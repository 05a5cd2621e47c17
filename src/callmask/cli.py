"""The ``callmask`` command: run the node and do the operator's chores.

Output meant for people goes to stdout through ``typer.echo``; errors go to stderr
with a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.exc import DBAPIError

from callmask.accounts import create_account
from callmask.config import Settings
from callmask.errors import CallmaskError
from callmask.logs import configure as configure_logging
from callmask.phone import digits, normalise, region_of
from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.store.repositories import Accounts, Numbers
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.repository import Deliveries, as_utc

app = typer.Typer(help="callmask: self-hosted number masking over your own SIP trunk.")
db_app = typer.Typer(help="Database schema.")
accounts_app = typer.Typer(help="Customer accounts.")
numbers_app = typer.Typer(help="The operator's DID inventory.")
webhooks_app = typer.Typer(help="Webhook deliveries (the outbox).")
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(numbers_app, name="numbers")
app.add_typer(webhooks_app, name="webhooks")

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _with_database(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = _settings()

    async def main() -> T:
        database = Database(settings.effective_database_url)
        try:
            return await work(database, settings)
        finally:
            await database.close()

    try:
        return asyncio.run(main())
    except CallmaskError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except DBAPIError as exc:
        # Usually a store that was never migrated ("no such table") or a database server
        # that is down: the operator needs the sentence, not a traceback.
        typer.echo(
            f"error: database: {exc.orig}; is it up and at head (callmask db upgrade)?", err=True
        )
        raise typer.Exit(1) from exc


@app.command()
def run() -> None:
    """Start the whole node: API, SIP, media, workers (migrates the database first)."""
    from callmask.node import serve

    settings = _settings()
    configure_logging(settings.log_level)
    upgrade(settings.effective_database_url)
    try:
        serve(settings)
    except KeyboardInterrupt:
        # uvicorn shuts down cleanly on Ctrl-C and then re-raises SIGINT for whoever
        # embeds it; here that would turn a clean shutdown into exit status 130.
        logging.getLogger(__name__).info("stopped")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    settings = _settings()
    upgrade(settings.effective_database_url)
    typer.echo(f"database at head: {settings.effective_database_url}")


@accounts_app.command("create")
def accounts_create(name: str) -> None:
    """Create an account; prints its id and API key (shown only this once)."""

    async def work(database: Database, _settings: Settings) -> tuple[str, str]:
        async with database.session() as session:
            account, api_key = await create_account(session, name)
            return account.id, api_key

    account_id, api_key = _with_database(work)
    typer.echo(f"account id: {account_id}")
    typer.echo(f"api key:    {api_key}")


@accounts_app.command("list")
def accounts_list() -> None:
    """List accounts."""

    async def work(database: Database, _settings: Settings) -> list[tuple[str, str]]:
        async with database.session() as session:
            return [(a.id, a.name) for a in await Accounts(session).list()]

    for account_id, name in _with_database(work):
        typer.echo(f"{account_id}  {name}")


@numbers_app.command("add")
def numbers_add(
    numbers: Annotated[list[str], typer.Argument(help="DIDs, E.164 or national")],
    account: Annotated[str | None, typer.Option(help="assign to this account")] = None,
) -> None:
    """Add trunk DIDs to the inventory (all or none)."""

    async def work(database: Database, settings: Settings) -> list[tuple[str, str]]:
        e164s = [normalise(raw, settings.default_region) for raw in numbers]
        async with database.session() as session:
            if account is not None:
                await Accounts(session).get(account)
            repository = Numbers(session)
            added = [await repository.add_to_inventory(e, region_of(e), account) for e in e164s]
            return [(n.number_key, n.e164) for n in added]

    for number_key, e164 in _with_database(work):
        typer.echo(f"{number_key}  {digits(e164)}")


@numbers_app.command("list")
def numbers_list() -> None:
    """List the inventory with owners."""

    async def work(database: Database, _settings: Settings) -> list[tuple[str, str, str]]:
        async with database.session() as session:
            return [
                (n.number_key, digits(n.e164), n.account_id or "(available)")
                for n in await Numbers(session).inventory()
            ]

    for number_key, number, owner in _with_database(work):
        typer.echo(f"{number_key}  {number:<16} {owner}")


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[EventStatus | None, typer.Option(help="only this status")] = None,
    account: Annotated[str | None, typer.Option(help="only this account")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="at most this many")] = 50,
) -> None:
    """List webhook deliveries, newest first."""

    async def work(database: Database, _settings: Settings) -> list[str]:
        async with database.session() as session:
            events, _total = await Deliveries(session).search(
                account_id=account, status=status, limit=limit
            )
            return [
                f"{e.id}  {e.status:<9} {e.attempt_count:>2}  "
                f"{as_utc(e.created_at).isoformat(timespec='seconds')}  {e.account_id}  "
                f"{e.event_type}  {e.url}  {e.last_error or ''}".rstrip()
                for e in events
            ]

    for line in _with_database(work):
        typer.echo(line)


@webhooks_app.command("retry")
def webhooks_retry(event_id: str) -> None:
    """Send a delivery again now, whatever its status.

    A running node picks it up within its poll interval (1 s)."""

    async def work(database: Database, _settings: Settings) -> str:
        async with database.session() as session:
            event = await Deliveries(session).retry(event_id, account_id=None)
            return f"{event.id} queued for {event.url}"

    typer.echo(_with_database(work))


def main() -> None:
    app()
