"""`/help`: how to play Kahani, in a few lines only the asker sees."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from core import messages as msg


class Meta(commands.Cog):
    """Commands about the bot itself."""

    @app_commands.command(name="help", description="How to play Kahani")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            msg.HELP_TEXT, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Meta())
