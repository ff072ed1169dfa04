"""A story's characters: adding, listing, finding (by name, case-insensitively),
changing (by name, or by id so they can be renamed) and removing them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core.errors import Conflict, NotFound
from core.models import Character

MAX_CHARACTERS = 50  # per story: the cast goes into every prompt


async def add_character(
    session: AsyncSession,
    story_id: int,
    name: str,
    *,
    description: str = "",
    personality: str = "",
    voice: str | None = None,
) -> Character:
    exists = await session.scalar(
        select(Character.id).where(Character.story_id == story_id, func.lower(Character.name) == name.lower())
    )
    if exists:
        raise Conflict(f"This story already has a character called {name}.")
    count = await session.scalar(select(func.count()).select_from(Character).where(Character.story_id == story_id))
    if (count or 0) >= MAX_CHARACTERS:
        raise Conflict(msg.CHARACTER_LIMIT.format(limit=MAX_CHARACTERS))
    character = Character(
        story_id=story_id, name=name, description=description, personality=personality, voice=voice
    )
    session.add(character)
    await session.flush()
    return character


async def list_characters(session: AsyncSession, story_id: int) -> Sequence[Character]:
    query = select(Character).where(Character.story_id == story_id).order_by(Character.name)
    return (await session.scalars(query)).all()


async def get_character(session: AsyncSession, story_id: int, name: str) -> Character:
    character = await session.scalar(
        select(Character).where(Character.story_id == story_id, func.lower(Character.name) == name.lower())
    )
    if character is None:
        raise NotFound(f"This story has no character called {name}.")
    return character


async def update_character(session: AsyncSession, story_id: int, name: str, **changes: Any) -> Character:
    character = await get_character(session, story_id, name)
    for field in ("name", "description", "personality", "voice"):
        if field in changes and changes[field] is not None:
            setattr(character, field, changes[field])
    await session.flush()
    return character


async def remove_character(session: AsyncSession, story_id: int, name: str) -> None:
    character = await get_character(session, story_id, name)
    await session.delete(character)
    await session.flush()


async def character_name_taken(
    session: AsyncSession, story_id: int, name: str, *, except_id: int | None = None
) -> bool:
    """Whether another character of the story already has this name (case-insensitive,
    like :func:`add_character`); ``except_id`` is the character being renamed."""
    query = select(Character.id).where(
        Character.story_id == story_id, func.lower(Character.name) == name.lower()
    )
    if except_id is not None:
        query = query.where(Character.id != except_id)
    return await session.scalar(query.limit(1)) is not None


async def edit_character(
    session: AsyncSession,
    story_id: int,
    character_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    personality: str | None = None,
    voice: str | None = None,
) -> Character:
    """Change a character found by id (so it can be renamed; :func:`update_character`
    finds it by a ``name`` that its changes cannot also carry). None leaves a field as
    it is; NotFound when the character is gone."""
    character = await session.scalar(
        select(Character).where(Character.id == character_id, Character.story_id == story_id)
    )
    if character is None:
        raise NotFound("That character is not in this story any more.")
    changes = {"name": name, "description": description, "personality": personality, "voice": voice}
    for field, value in changes.items():
        if value is not None:
            setattr(character, field, value)
    await session.flush()
    return character
