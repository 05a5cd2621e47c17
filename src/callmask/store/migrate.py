"""Alembic, driven from code: ``callmask db upgrade`` and the tests call ``upgrade``.

The Alembic configuration is built here rather than read from an ini file, so the
installed package carries everything it needs and the database URL comes from the
same settings as the rest of the node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would treat '%' in passwords as syntax.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py runs its own event loop for the async driver; keep it off ours.
    await asyncio.to_thread(upgrade, database_url, revision)
