"""Alembic migrations: the only way the schema changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from core import db as dbmod
from core.models import Base


async def _tables(url: str) -> set[str]:
    engine = dbmod.make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_diff(url: str) -> list:
    engine = dbmod.make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    model_tables = set(Base.metadata.tables)

    await dbmod.upgrade(empty_database_url)
    assert await _tables(empty_database_url) == model_tables | {"alembic_version"}

    await dbmod.downgrade(empty_database_url, "base")
    assert await _tables(empty_database_url) <= {"alembic_version"}

    await dbmod.upgrade(empty_database_url)
    assert await _tables(empty_database_url) == model_tables | {"alembic_version"}


async def test_autogenerate_finds_no_difference_between_models_and_migrations(
    database_url: str,
) -> None:
    assert await _schema_diff(database_url) == []


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    await dbmod.upgrade(database_url)
    assert await _schema_diff(database_url) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "DATABASE_URL is not a valid database URL"),
        ("mysql://localhost/kahani", "DATABASE_URL must start with"),
        ("sqlite+aiosqlite://", "must name a SQLite file"),
    ],
)
async def test_a_malformed_database_url_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(dbmod.DatabaseError, match=message):
        await dbmod.upgrade(url)


async def test_an_unreachable_postgresql_is_one_clear_error(closed_port: int) -> None:
    url = f"postgresql+asyncpg://kahani:secret@127.0.0.1:{closed_port}/kahani"  # the connection is refused
    with pytest.raises(dbmod.DatabaseError) as caught:
        await dbmod.upgrade(url)
    shown = f"postgresql+asyncpg://kahani:***@127.0.0.1:{closed_port}/kahani"
    assert f"cannot use the database {shown}" in str(caught.value)
    assert "secret" not in str(caught.value)


async def test_a_data_path_that_cannot_be_a_directory_is_one_clear_error(tmp_path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(dbmod.DatabaseError, match="cannot create the data directory"):
        await dbmod.upgrade(f"sqlite+aiosqlite:///{blocker}/kahani.db")


async def test_a_failed_upgrade_leaves_nothing_half_migrated(empty_database_url: str) -> None:
    # A table in the way makes the initial migration fail part-way through.
    engine = dbmod.make_engine(empty_database_url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE votes (stray INTEGER)")
    await engine.dispose()

    with pytest.raises(dbmod.DatabaseError, match="cannot use the database"):
        await dbmod.upgrade(empty_database_url)

    # Everything before the failure was rolled back with it.
    assert await _tables(empty_database_url) == {"votes"}
