"""``/privacy show|delete-me``: what Kahani keeps about you, and forgetting you.

Kahani stores your Discord id and display name, your settings, the stories you own (every
scene and version), your memberships and votes in group stories. ``delete-me`` (after a
confirmation) deletes your settings, solo stories (and their threads) and votes; in group
stories you stay as "a former player" (core/privacy.py). Answers are ephemeral."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import KahaniView
from bot.types import Interaction
from bot.ui.common import NotAllowed, answer, fitted_embed, shorten, within_the_deadline
from core import messages as msg
from core.privacy import Kept, forget, kept_about

if TYPE_CHECKING:
    from bot.app import KahaniBot


def kept_embed(kept: Kept) -> discord.Embed:
    titles = "\n".join(f"• {shorten(title, 80)}" for _, title, _ in kept.solo[:20]) or msg.PRIVACY_NONE
    if len(kept.solo) > 20:
        titles += "\n" + msg.MORE_NOT_SHOWN.format(shown=20, total=len(kept.solo))
    fields = [
        (msg.PRIVACY_STORIES.format(count=len(kept.solo)), titles),
        (msg.PRIVACY_TABLES, msg.PRIVACY_TABLES_TEXT.format(hosted=kept.hosted, tables=kept.tables,
                                                            votes=kept.votes)),
        (msg.PRIVACY_SETTINGS, msg.PRIVACY_YES if kept.has_settings else msg.PRIVACY_NONE),
    ]
    return fitted_embed(msg.PRIVACY_TITLE, fields, description=msg.PRIVACY_WHAT.format(name=kept.display_name))


class ConfirmForget(KahaniView):
    def __init__(self, cog: Privacy, discord_id: int) -> None:
        super().__init__(timeout=120)
        self.cog, self.discord_id = cog, discord_id

    @discord.ui.button(label="Delete everything about me", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: Interaction, _: discord.ui.Button[Any]) -> None:
        if interaction.user.id != self.discord_id:
            raise NotAllowed(msg.PRIVACY_NOT_YOURS)
        self.stop()

        async def work() -> Kept | None:
            async with self.cog.bot.db.transaction() as s:
                return await forget(s, self.discord_id)

        kept = await within_the_deadline(interaction, work(), thinking=False)
        text = msg.PRIVACY_FORGOTTEN.format(count=len(kept.solo) if kept else 0)
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, view=None, embed=None)
        else:
            await interaction.response.edit_message(content=text, view=None, embed=None)
        stories = self.cog.bot.get_cog("Stories")
        for _, _, thread_id in kept.solo if kept else []:
            if thread_id is not None and stories is not None:
                await stories.retire_thread(thread_id)  # type: ignore[attr-defined]

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, _: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=msg.PRIVACY_KEPT, view=None, embed=None)


class Privacy(commands.GroupCog, group_name="privacy", group_description="What Kahani keeps about you"):
    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot

    async def _kept(self, interaction: Interaction) -> Kept | None:
        async with self.bot.db.read() as s:
            return await kept_about(s, interaction.user.id)

    @app_commands.command(name="show", description="What Kahani keeps about you")
    async def show(self, interaction: Interaction) -> None:
        kept = await within_the_deadline(interaction, self._kept(interaction))
        if kept is None:
            await answer(interaction, msg.PRIVACY_NOTHING)
            return
        await answer(interaction, msg.PRIVACY_HOW_TO_DELETE, embed=kept_embed(kept))

    @app_commands.command(name="delete-me", description="Delete your stories and everything Kahani keeps about you")
    async def delete_me(self, interaction: Interaction) -> None:
        kept = await within_the_deadline(interaction, self._kept(interaction))
        if kept is None:
            await answer(interaction, msg.PRIVACY_NOTHING)
            return
        await answer(interaction, msg.PRIVACY_CONFIRM.format(count=len(kept.solo)), embed=kept_embed(kept),
                     view=ConfirmForget(self, interaction.user.id))


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Privacy(bot))
