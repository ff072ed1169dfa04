"""`/help`: how to play Kahani, how group votes work, and every command — only the asker
sees it. The command list is read from the bot's own command tree, so it never misses one."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from core import messages as msg

FIELD_LIMIT = 1024  # characters in an embed field's value


def command_fields(tree: app_commands.CommandTree) -> list[tuple[str, str]]:
    """Every slash command, grouped under its top-level name, as embed fields (a group
    too long for one field goes on in the next)."""
    groups: dict[str, list[str]] = {}
    for command in tree.walk_commands():
        if isinstance(command, app_commands.Group):
            continue
        top, _, rest = command.qualified_name.partition(" ")
        groups.setdefault(top, []).append(f"`{rest or '/' + top}` {command.description}")
    fields: list[tuple[str, str]] = []
    for top, lines in groups.items():
        value = ""
        for line in lines:
            if value and len(value) + 1 + len(line) > FIELD_LIMIT:
                fields.append((f"/{top}", value))
                value = ""
            value = f"{value}\n{line}" if value else line[:FIELD_LIMIT]
        fields.append((f"/{top}", value))
    return fields


def help_embeds(tree: app_commands.CommandTree) -> list[discord.Embed]:
    votes = discord.Embed(title=msg.HELP_VOTES_TITLE, description=msg.HELP_VOTES)
    commands_ = discord.Embed(title=msg.HELP_COMMANDS_TITLE)
    for name, value in command_fields(tree):
        commands_.add_field(name=name, value=value, inline=False)
    return [votes, commands_]


class Meta(commands.Cog):
    """Commands about the bot itself."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="How to play Kahani, how votes work, and every command")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            msg.HELP_TEXT, embeds=help_embeds(self.bot.tree), ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Meta(bot))
