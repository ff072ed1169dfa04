"""A server's own settings (``/server``, moderators): content notes every story there
follows (the storyteller is told in every scene's instructions; ``/story info`` shows
them), and whether ``/story new`` starts a solo or a group story there by default."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core.errors import KahaniError
from core.models import GuildSettings, StoryMode, utcnow
from core.text import storable

CONTENT_NOTES_MAX = 1000


async def guild_settings(session: AsyncSession, guild_id: int | None) -> GuildSettings | None:
    """The server's settings; None for DMs and for a server that never set any."""
    return None if guild_id is None else await session.get(GuildSettings, guild_id)


async def content_notes(session: AsyncSession, guild_id: int | None) -> str:
    found = await guild_settings(session, guild_id)
    return found.content_notes if found is not None else ""


async def default_mode(session: AsyncSession, guild_id: int) -> str:
    found = await guild_settings(session, guild_id)
    return found.default_mode if found is not None else StoryMode.GROUP.value


async def _settings_row(session: AsyncSession, guild_id: int) -> GuildSettings:
    found = await session.get(GuildSettings, guild_id)
    if found is None:
        found = GuildSettings(guild_id=guild_id, content_notes="", default_mode=StoryMode.GROUP.value)
        session.add(found)
    return found


async def set_content_notes(session: AsyncSession, guild_id: int, notes: str) -> GuildSettings:
    """Set (blank: clear) the server's content notes. The caller checked the user may
    (Manage Server, or Manage Threads, in that server)."""
    notes = " ".join(storable(notes).split())
    if len(notes) > CONTENT_NOTES_MAX:
        raise KahaniError(msg.TEXT_TOO_LONG.format(field=msg.FIELD_CONTENT_NOTES, limit=CONTENT_NOTES_MAX,
                                                   length=len(notes)))
    row = await _settings_row(session, guild_id)
    row.content_notes, row.updated_at = notes, utcnow()
    return row


async def set_default_mode(session: AsyncSession, guild_id: int, mode: str) -> GuildSettings:
    if mode not in {m.value for m in StoryMode}:
        raise KahaniError(msg.SERVER_BAD_MODE)
    row = await _settings_row(session, guild_id)
    row.default_mode, row.updated_at = mode, utcnow()
    return row
