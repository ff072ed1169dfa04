"""``/server content-notes|default-mode``: a server's own settings (core/servers.py).

Content notes ("no graphic violence", "no spiders") are part of every story's
instructions in the server and shown in ``/story info``; anyone may read them, only the
server's moderators (Manage Server, or Manage Threads where they ask) change them. The
default mode is what ``/story new`` starts there when the player does not choose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord import app_commands
from discord.ext import commands

from bot.types import Interaction
from bot.ui.common import NotAllowed, answer, within_the_deadline
from core import messages as msg
from core import servers
from core.servers import CONTENT_NOTES_MAX

if TYPE_CHECKING:
    from bot.app import KahaniBot

MODES = [app_commands.Choice(name="solo: only the player who starts it plays", value="solo"),
         app_commands.Choice(name="group: the thread votes on every choice", value="group")]


def _guild_of(interaction: Interaction) -> int:
    if interaction.guild_id is None:
        raise NotAllowed(msg.SERVER_ONLY)
    return interaction.guild_id


def _moderator(interaction: Interaction) -> int:
    guild_id = _guild_of(interaction)
    perms = interaction.permissions
    if not (perms.manage_guild or perms.manage_threads):
        raise NotAllowed(msg.SERVER_MODERATORS_ONLY)
    return guild_id


class Server(commands.GroupCog, group_name="server", group_description="This server's Kahani settings"):
    """Per-server settings."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot

    @app_commands.command(name="content-notes",
                          description="Content notes every story in this server follows (moderators change them)")
    @app_commands.describe(notes="e.g. no graphic violence, no spiders (leave out to see the current ones)",
                           clear="Remove the content notes")
    async def content_notes(self, interaction: Interaction,
                            notes: app_commands.Range[str, 1, CONTENT_NOTES_MAX] | None = None,
                            clear: bool = False) -> None:
        if notes is None and not clear:
            guild_id = _guild_of(interaction)

            async def read() -> str:
                async with self.bot.db.read() as s:
                    return await servers.content_notes(s, guild_id)

            shown = await within_the_deadline(interaction, read())
            await answer(interaction, msg.SERVER_NOTES_SHOWN.format(notes=shown) if shown else msg.SERVER_NOTES_NONE)
            return
        guild_id = _moderator(interaction)

        async def write() -> str:
            async with self.bot.db.transaction() as s:
                return (await servers.set_content_notes(s, guild_id, "" if clear else notes or "")).content_notes

        saved = await within_the_deadline(interaction, write())
        await answer(interaction, msg.SERVER_NOTES_SET.format(notes=saved) if saved else msg.SERVER_NOTES_CLEARED)

    @app_commands.command(name="default-mode",
                          description="What /story new starts in this server when the player does not choose")
    @app_commands.choices(mode=MODES)
    async def default_mode(self, interaction: Interaction, mode: str) -> None:
        guild_id = _moderator(interaction)

        async def write() -> str:
            async with self.bot.db.transaction() as s:
                return (await servers.set_default_mode(s, guild_id, mode)).default_mode

        await answer(interaction, msg.SERVER_MODE_SET.format(mode=await within_the_deadline(interaction, write())))


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Server(bot))
