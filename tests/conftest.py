"""Shared fixtures: fresh migrated databases on SQLite and PostgreSQL.

Every database test runs on both engines (the ``db`` fixture is parametrised). Each
test gets a fresh database: a copy of a migrated SQLite file, or a PostgreSQL database
created from a migrated template, so tests that commit (the bot, leases across
connections) are isolated too.

PostgreSQL is at ``KAHANI_TEST_POSTGRES_URL`` (default: the local server). When it is
unreachable its tests are skipped loudly — unless ``CI`` is set, where they fail.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.settings import Settings
from core import db as dbmod
from core.db import Database

pytest_plugins = ["tests.fakes.llm"]

POSTGRES_URL = os.environ.get(
    "KAHANI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()

# Property-based tests (Hypothesis) draw the same examples on every run: a fixed seed,
# no example database carried between runs, no per-example deadline on a busy machine.
settings.register_profile(
    "kahani", derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("kahani")


def _pg_url(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def _pg_admin(*statements: str) -> None:
    engine = dbmod.make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


class PostgresTemplates:
    """A migrated template database; tests get copies (CREATE DATABASE … TEMPLATE)."""

    def __init__(self) -> None:
        self.template = f"kahani_tpl_{_RUN_ID}"
        self.available: bool | None = None
        self.error = ""
        self.created: list[str] = []

    async def ensure(self) -> None:
        if self.available is not None:
            return
        try:
            await _pg_admin(f"DROP DATABASE IF EXISTS {self.template}", f"CREATE DATABASE {self.template}")
            await dbmod.upgrade(_pg_url(self.template))
            self.available = True
        except Exception as exc:  # unreachable server, refused login, …
            self.available = False
            self.error = f"{type(exc).__name__}: {exc}"

    async def fresh(self, migrated: bool = True) -> str:
        name = f"kahani_t_{_RUN_ID}_{next(_counter)}"
        template = f" TEMPLATE {self.template}" if migrated else ""
        await _pg_admin(f"CREATE DATABASE {name}{template}")
        self.created.append(name)
        return _pg_url(name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def cleanup(self) -> None:
        if self.available:
            await _pg_admin(
                *(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)" for n in self.created),
                f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)",
            )


_pg = PostgresTemplates()


def require_postgres() -> None:
    """Skip (loudly) or, in CI, fail when PostgreSQL is not reachable."""
    asyncio.run(_pg.ensure())
    if _pg.available:
        return
    message = f"PostgreSQL at {POSTGRES_URL} is not reachable ({_pg.error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the PostgreSQL tests", pytrace=False)
    warnings.warn(f"SKIPPING PostgreSQL tests: {message}", stacklevel=1)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


@pytest.fixture(scope="session", autouse=True)
def _no_settings_from_the_environment() -> Iterator[None]:
    """Settings exported in the shell of whoever runs the tests (METRICS_PORT, LLM_MODEL,
    LOG_FORMAT, …) reach neither the bots in this process nor the ones it starts."""
    names = {name.upper() for name in Settings.model_fields}
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.upper() in names]:
            patch.delenv(key)
        yield


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port that refuses connections: bound for the whole test and never
    listening, so no other program can be listening there (127.0.0.1:9 might be)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "kahani.db"
    asyncio.run(dbmod.upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_databases() -> Iterator[None]:
    yield
    if _pg.available:
        asyncio.run(_pg.cleanup())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgres()
    return request.param


@pytest.fixture
async def database_url(engine_name: str, sqlite_template: Path, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database on the engine under test."""
    if engine_name == "sqlite":
        path = tmp_path / "kahani.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = await _pg.fresh()
        yield url
        await _pg.drop(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_engine(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgres()
    return request.param


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def module_database_url(module_engine: str, sqlite_template: Path,
                              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh, migrated database on each engine, shared by a test module (one stand-in
    and one bot serve the module on each)."""
    if module_engine == "sqlite":
        path = tmp_path_factory.mktemp("module") / "kahani.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = await _pg.fresh()
        yield url
        await _pg.drop(url)


@pytest.fixture
async def empty_database_url(engine_name: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh database with no schema at all."""
    if engine_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        url = await _pg.fresh(migrated=False)
        yield url
        await _pg.drop(url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url)
    yield database
    await database.dispose()
