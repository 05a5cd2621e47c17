"""The operator's ``callmask webhooks list|retry`` against a store on disk."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callmask.accounts import create_account
from callmask.cli import app
from callmask.store.database import Database
from callmask.store.models import WebhookEvent
from callmask.webhooks.outbox import enqueue


@pytest.fixture
def store(tmp_path: Path, sqlite_template: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A store with a dead and a pending event of one account and a delivered one of
    another; returns the ids by status and the environment for the CLI."""
    path = tmp_path / "callmask.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"

    async def seed() -> dict[str, str]:
        database = Database(url)
        try:
            async with database.session() as session:
                acme, _ = await create_account(session, "acme")
                globex, _ = await create_account(session, "globex")
                ids = {}
                for status, account in [
                    ("dead", acme.id),
                    ("pending", acme.id),
                    ("delivered", globex.id),
                ]:
                    ids[status] = await enqueue(
                        session,
                        account_id=account,
                        event_type="call.status",
                        url=f"https://example.com/{status}",
                        payload={"status": status},
                    )
                ids["acme"], ids["globex"] = acme.id, globex.id
            async with database.session() as session:
                for status in ("dead", "delivered"):
                    event = await session.get(WebhookEvent, ids[status])
                    assert event is not None
                    event.status = status
                    event.attempt_count = 1
            return ids
        finally:
            await database.close()

    ids = asyncio.run(seed())
    env = {"CALLMASK_DATABASE_URL": url, "CALLMASK_DATA_DIR": str(tmp_path / "var")}
    return ids, env


def test_the_operator_lists_deliveries_with_filters(
    store: tuple[dict[str, str], dict[str, str]],
) -> None:
    ids, env = store
    runner = CliRunner()
    everything = runner.invoke(app, ["webhooks", "list"], env=env)
    assert everything.exit_code == 0, everything.output
    lines = everything.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [ids["delivered"], ids["pending"], ids["dead"]]
    assert "https://example.com/dead" in everything.output

    dead = runner.invoke(app, ["webhooks", "list", "--status", "dead"], env=env)
    assert [line.split()[0] for line in dead.output.strip().splitlines()] == [ids["dead"]]
    acme = runner.invoke(app, ["webhooks", "list", "--account", ids["acme"]], env=env)
    assert len(acme.output.strip().splitlines()) == 2
    one = runner.invoke(app, ["webhooks", "list", "--limit", "1"], env=env)
    assert len(one.output.strip().splitlines()) == 1
    bad = runner.invoke(app, ["webhooks", "list", "--status", "lost"], env=env)
    assert bad.exit_code != 0


def test_the_operator_requeues_a_dead_delivery(
    store: tuple[dict[str, str], dict[str, str]],
) -> None:
    ids, env = store
    runner = CliRunner()
    result = runner.invoke(app, ["webhooks", "retry", ids["dead"]], env=env)
    assert result.exit_code == 0, result.output
    assert ids["dead"] in result.output
    pending = runner.invoke(app, ["webhooks", "list", "--status", "pending"], env=env)
    assert {line.split()[0] for line in pending.output.strip().splitlines()} == {
        ids["dead"],
        ids["pending"],
    }
    missing = runner.invoke(app, ["webhooks", "retry", "no-such-event"], env=env)
    assert missing.exit_code == 1
    assert "not found" in missing.output
