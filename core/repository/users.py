"""Users and their settings: who a Discord account is to Kahani, and the defaults a
player chose for themselves (/settings)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import User, UserSettings


async def find_user(session: AsyncSession, discord_id: int) -> User | None:
    """The user with this Discord id, if Kahani has stored them (nothing is created)."""
    return await session.scalar(select(User).where(User.discord_id == discord_id))


async def get_or_create_user(
    session: AsyncSession, discord_id: int | None, display_name: str
) -> User:
    """The user with this Discord id (created on first sight; display name kept fresh)."""
    if discord_id is not None:
        user = await session.scalar(select(User).where(User.discord_id == discord_id))
        if user is not None:
            if display_name and user.display_name != display_name:
                user.display_name = display_name[:100]
            return user
    user = User(discord_id=discord_id, display_name=display_name[:100])
    session.add(user)
    await session.flush()
    return user


async def get_user_settings(session: AsyncSession, user_id: int) -> UserSettings:
    """The user's settings; a row with the defaults is created on first use."""
    settings = await session.get(UserSettings, user_id)
    if settings is None:
        settings = UserSettings(user_id=user_id, preferences={})
        session.add(settings)
        await session.flush()
    return settings


async def update_user_settings(session: AsyncSession, user_id: int, **changes: Any) -> UserSettings:
    """Change some of a user's settings (scene_length, tts_voice, tts_speed, auto_narrate…)."""
    settings = await get_user_settings(session, user_id)
    for name, value in changes.items():
        if not hasattr(UserSettings, name) or name in ("user_id", "user"):
            raise ValueError(f"unknown user setting {name!r}")
        setattr(settings, name, value)
    await session.flush()
    return settings
