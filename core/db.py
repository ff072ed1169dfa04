"""Database engine, sessions and migrations, for SQLite (default) and PostgreSQL.

SQLite connections get ``foreign_keys=ON`` (cascades do nothing without it), WAL and a
busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so two writers queue
instead of failing half-way (docs/architecture.md, "Databases"). Read-only units of work use a plain deferred
``BEGIN``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.errors import KahaniError
from core.urls import public_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Any fixed 64-bit number: several processes starting together migrate one at a time.
MIGRATION_LOCK_KEY = 0x4B6168616E69  # "Kahani"
_READ_ONLY = "kahani_read_only"
CONNECT_TIMEOUT = 5  # seconds to open a PostgreSQL connection
# asyncpg's errors for a connection that is gone or cannot be made now.
_ASYNCPG_GONE = frozenset({
    "ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError",
    "ConnectionRejectionError", "TooManyConnectionsError", "AdminShutdownError", "CrashShutdownError",
})


class DatabaseError(KahaniError):
    """The database cannot be used (bad URL, unreachable server, unwritable file)."""


def parse_database_url(url: str) -> URL:
    """Parse and check a database URL; raise DatabaseError naming what is wrong."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Said without its password (the URL may hold one), as every URL Kahani shows.
        raise DatabaseError(f"DATABASE_URL is not a valid database URL: {public_url(url)!r}") from None
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise DatabaseError(
            f"DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
            f"(got {parsed.drivername}://)"
        )
    if parsed.drivername.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise DatabaseError("DATABASE_URL must name a SQLite file, e.g. sqlite+aiosqlite:///data/kahani.db")
    return parsed


def ensure_sqlite_directory(url: URL) -> None:
    """Create the directory of a SQLite file and check that it can be written."""
    if not url.drivername.startswith("sqlite") or not url.database:
        return
    directory = Path(url.database).expanduser().resolve().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the data directory {directory}: {exc.strerror}") from exc
    probe = directory / ".kahani-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatabaseError(f"the data directory {directory} is not writable: {exc.strerror}") from exc


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (the driver's implicit BEGIN is always deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str | URL, *, foreign_keys: bool = True, **kwargs: Any) -> AsyncEngine:
    """Create an async engine with Kahani's connection settings for its database."""
    parsed = parse_database_url(str(url) if isinstance(url, str) else url.render_as_string(False))
    if parsed.drivername.startswith("sqlite"):
        engine = create_async_engine(parsed, **kwargs)
        _configure_sqlite(engine, foreign_keys=foreign_keys)
    else:
        kwargs.setdefault("pool_pre_ping", True)  # a restarted server's dead connections are replaced
        kwargs.setdefault("pool_timeout", 10)
        if parsed.drivername.endswith("asyncpg"):
            # A server that accepts and never answers fails a request in seconds, not a minute.
            kwargs.setdefault("connect_args", {"timeout": CONNECT_TIMEOUT})
        engine = create_async_engine(parsed, **kwargs)
    return engine


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _raised_by_the_database_layer(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if "/sqlalchemy/" in filename or "/asyncpg/" in filename or "/aiosqlite/" in filename:
            return True
        traceback = traceback.tb_next
    return False


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached (down, restarting,
    refusing or dropping connections), rather than a bug: players are told to try again.
    A refused connection counts only when the database layer raised it (Kokoro or Discord
    being down is not the database)."""
    for cause in _causes(error):
        if isinstance(cause, sqlalchemy.exc.TimeoutError):
            return True
        if isinstance(cause, ConnectionError | socket.gaierror) and _raised_by_the_database_layer(cause):
            return True
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return True
        if type(cause).__module__.startswith("asyncpg") and type(cause).__name__ in _ASYNCPG_GONE:
            return True
    return False


def busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (another writer held it too long)."""
    return any(isinstance(c, sqlalchemy.exc.OperationalError) and "database is locked" in str(c)
               for c in _causes(error))


async def _to_the_end(step: Awaitable[Any]) -> None:
    """Finish a commit, rollback or close even when the task is being cancelled (a bot
    shutting down cancels its background loops wherever they are): cancelled half-way,
    the connection's reset fails, SQLAlchemy logs a traceback and drops the connection.
    The cancellation is raised once the step is done."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:  # retrieved: the cancellation wins
            log.info("database: %s failed while the task was cancelled: %r", step, task.exception())
        raise


@asynccontextmanager
async def _unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session, one transaction: committed when the block ends, rolled back when it
    raises (a cancellation too); the session is closed either way."""
    session = sessions()
    try:
        await session.begin()
        try:
            yield session
        except BaseException:
            await _to_the_end(session.rollback())
            raise
        await _to_the_end(session.commit())
    finally:
        await _to_the_end(session.close())


class Database:
    """The engine and its session factories; one AsyncSession per unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Writers of this process queue here, in order,
        # instead of in SQLite's busy handler, which sleeps and retries (up to 100 ms a
        # try): with a burst of clicks that made each write wait seconds. Other processes
        # still wait in the busy handler (busy_timeout).
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] | None = (
            weakref.WeakKeyDictionary() if engine.dialect.name == "sqlite" else None
        )
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(make_engine(url, **kwargs))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write unit of work: committed when the block ends, rolled back on error."""
        if self._writers is None:
            async with _unit_of_work(self._sessions) as session:
                yield session
            return
        loop = asyncio.get_running_loop()
        lock = self._writers.get(loop)
        if lock is None:
            lock = self._writers[loop] = asyncio.Lock()
        async with lock, _unit_of_work(self._sessions) as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (no write lock on SQLite)."""
        async with _unit_of_work(self._read_sessions) as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


# --- migrations -----------------------------------------------------------------------


def migrations_path() -> Path:
    """The migrations folder, shipped inside the package so installed copies find it."""
    return Path(str(resources.files("migrations")))


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


async def _run_migration(url: str, action: Any, revision: str) -> None:
    # A dedicated engine: SQLite batch migrations copy tables, which must not fire
    # foreign-key cascades, and nothing else should share these connections.
    engine = make_engine(url, foreign_keys=False)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                # Several processes starting together: one migrates, the others wait.
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.commit()
            try:
                # Alembic is synchronous and its stock env.py calls asyncio.run(), which
                # fails inside the running bot: run it on this connection with run_sync.
                await conn.run_sync(action, revision)
                await conn.commit()
            finally:
                if engine.dialect.name == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    await conn.commit()
    except (TimeoutError, OperationalError, DBAPIError, OSError) as exc:
        raise DatabaseError(describe_connection_error(url, exc)) from exc
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (``alembic upgrade head``), in one transaction."""
    parsed = parse_database_url(url)
    ensure_sqlite_directory(parsed)
    await _run_migration(url, _upgrade, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Take the schema back to ``revision``."""
    await _run_migration(url, _downgrade, revision)


def describe_connection_error(url: str, exc: BaseException) -> str:
    """One line saying which database could not be used and why, without the password."""
    safe = make_url(url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot use the database {safe}: {reason}"
