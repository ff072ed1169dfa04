"""Types the Discord layer shares: one alias for an interaction with Kahani's bot."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import discord

if TYPE_CHECKING:
    from bot.app import KahaniBot

# Every command, component, form and autocomplete receives this: ``interaction.client``
# is the KahaniBot, so ``interaction.client.db`` and friends are typed.
Interaction: TypeAlias = "discord.Interaction[KahaniBot]"
