"""`/settings show|set`: a player's own defaults — scene length for new stories, and the
narration voice, speed and auto-narrate that the narration cog reads. Only the player
sees them (every reply is ephemeral)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.types import Interaction
from bot.ui.common import NO_PINGS, answer, caller, checked_text
from bot.ui.voices import DEFERRED_CHECK_SECONDS, autocomplete_voice, checked_voice_name
from core import messages as msg
from core import repository as repo
from core.errors import KahaniError
from core.models import SceneLength, UserSettings

if TYPE_CHECKING:
    from bot.app import KahaniBot

VOICE_MAX = 200  # the column's size
SPEED_MIN, SPEED_MAX = 0.5, 2.0
# Saying this as the voice goes back to the narrator's default voice.
DEFAULT_VOICE_WORD = "default"


def settings_embed(settings: UserSettings) -> discord.Embed:
    body = msg.SETTINGS_BODY.format(
        scene_length=settings.scene_length,
        voice=settings.tts_voice or msg.SETTINGS_DEFAULT_VOICE,
        speed=settings.tts_speed,
        auto_narrate=msg.SETTINGS_ON if settings.auto_narrate else msg.SETTINGS_OFF,
    )
    return discord.Embed(title=msg.SETTINGS_TITLE, description=body)


def changes_from(scene_length: str | None, voice: str | None, speed: float | None,
                 auto_narrate: bool | None) -> dict[str, Any]:
    """The settings to store, checked (Discord's client checks the same; others may not)."""
    changes: dict[str, Any] = {}
    if scene_length is not None:
        if scene_length not in {length.value for length in SceneLength}:
            raise KahaniError(msg.SETTINGS_BAD_SCENE_LENGTH)
        changes["scene_length"] = scene_length
    if voice is not None:
        text = checked_text(voice, msg.FIELD_VOICE, VOICE_MAX, required=True)
        changes["tts_voice"] = None if text.lower() == DEFAULT_VOICE_WORD else text
    if speed is not None:
        if not (math.isfinite(speed) and SPEED_MIN <= speed <= SPEED_MAX):
            raise KahaniError(msg.SETTINGS_BAD_SPEED.format(speed=speed))
        changes["tts_speed"] = round(speed, 2)
    if auto_narrate is not None:
        changes["auto_narrate"] = auto_narrate
    if not changes:
        raise KahaniError(msg.SETTINGS_NOTHING_GIVEN)
    return changes


class PlayerSettings(commands.GroupCog, group_name="settings", group_description="Your own Kahani defaults"):
    """Per-user defaults."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Your scene length and narration defaults")
    async def show(self, interaction: Interaction) -> None:
        async with self.bot.db.transaction() as session:
            who = await caller(session, interaction)
            settings = await repo.get_user_settings(session, who.user.id)
        await interaction.response.send_message(embed=settings_embed(settings), ephemeral=True,
                                                allowed_mentions=NO_PINGS)

    @app_commands.command(name="set", description="Change your defaults (only the options you fill in)")
    @app_commands.describe(
        scene_length="How long scenes are in the stories you start",
        voice=f"Narration voice (\u201c{DEFAULT_VOICE_WORD}\u201d for the narrator's default)",
        speed="Narration speed, 0.5 to 2.0",
        auto_narrate="Read every new scene aloud when you are in the voice channel",
    )
    @app_commands.choices(scene_length=[app_commands.Choice(name=length.value, value=length.value)
                                        for length in SceneLength])
    @app_commands.autocomplete(voice=autocomplete_voice)
    async def change(self, interaction: Interaction, scene_length: str | None = None,
                  voice: app_commands.Range[str, 1, VOICE_MAX] | None = None,
                  speed: app_commands.Range[float, SPEED_MIN, SPEED_MAX] | None = None,
                  auto_narrate: bool | None = None) -> None:
        changes = changes_from(scene_length, voice, speed, auto_narrate)
        saved = msg.SETTINGS_SAVED
        if changes.get("tts_voice"):  # an unknown voice is refused here, not when a scene is read
            await interaction.response.defer(ephemeral=True, thinking=True)
            changes["tts_voice"], checked = await checked_voice_name(self.bot.tts, changes["tts_voice"],
                                                                     within=DEFERRED_CHECK_SECONDS)
            if not checked:
                saved += " " + msg.VOICE_UNCHECKED.format(voice=changes["tts_voice"])
        async with self.bot.db.transaction() as session:
            who = await caller(session, interaction)
            settings = await repo.update_user_settings(session, who.user.id, **changes)
        await answer(interaction, saved, embed=settings_embed(settings))


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(PlayerSettings(bot))
