"""What the benchmarks share: the databases they run on and a statement counter."""

from __future__ import annotations

import contextlib
import tempfile
import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from core import db as dbmod

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def sqlite_database() -> AsyncIterator[str]:
    """A scratch SQLite file (deleted afterwards)."""
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite+aiosqlite:///{directory}/bench.db"


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A scratch PostgreSQL database created next to ``admin_url`` (dropped afterwards)."""
    admin = dbmod.make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        await admin.dispose()


@contextlib.contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block (transaction control aside)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def parse_args(description: str, runs: int) -> argparse.Namespace:
    """``--postgres URL`` ('' skips PostgreSQL) and ``--runs N``, as every DB bench takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES,
                        help="an admin URL; a scratch database is created next to it ('' to skip)")
    parser.add_argument("--runs", type=int, default=runs)
    return parser.parse_args()


async def on_both_databases(
    bench: Callable[[str, str, int], Awaitable[list[Any]]], args: argparse.Namespace, scratch: str
) -> list[Any]:
    """Run ``bench(engine name, url, runs)`` on a scratch SQLite file and, unless skipped,
    a scratch PostgreSQL database; the results of both, SQLite first."""
    results: list[Any] = []
    async with sqlite_database() as url:
        results += await bench("sqlite", url, args.runs)
    if args.postgres:
        async with postgres_database(args.postgres, scratch) as url:
            results += await bench("postgresql", url, args.runs)
    return results
