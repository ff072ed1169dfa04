"""Alembic environment.

The bot runs migrations itself at start-up (core.db.upgrade) and hands a connection in
through ``config.attributes["connection"]``; run from the command line (``alembic``
with alembic.ini), this opens its own async engine from DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from core.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only change tables by copying them
        compare_type=True,
        # All of an upgrade in one transaction on SQLite too: nothing half-migrated.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url() -> None:
    from core.db import make_engine

    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "DATABASE_URL", "sqlite+aiosqlite:///data/kahani.db"
    )
    engine = make_engine(url, foreign_keys=False)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `kahani migrate`")
else:
    asyncio.run(_run_from_url())
