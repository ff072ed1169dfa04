"""Small key/value facts the bot keeps between starts (the ``app_state`` table).

Front ends use it for things such as the hash of the slash commands last synced to
Discord, so that a restart does not sync them again.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from core.db import Database
from core.models import AppState, utcnow


async def get_state(db: Database, key: str) -> str | None:
    """The value stored under ``key``, or None."""
    async with db.read() as session:
        return await session.scalar(select(AppState.value).where(AppState.key == key))


async def set_state(db: Database, key: str, value: str) -> None:
    """Store ``value`` under ``key`` (insert or replace; safe when two processes race)."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(AppState).values(key=key, value=value, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[AppState.key], set_={"value": value, "updated_at": now}
    )
    async with db.transaction() as session:
        await session.execute(statement)
