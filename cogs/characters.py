"""`/character add|list|edit|remove`: the cast the storyteller keeps in mind for a story.

The story is the one of the thread or DM, or the one named by the ``story`` option.
Anyone who may play a story sees its cast; changing it is for whoever may manage the
story (its owner, or a member with Manage Threads). Every reply is ephemeral.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import KahaniModal
from bot.types import Interaction
from bot.ui.common import (
    MODAL_TIMEOUT,
    NO_PINGS,
    STORY_OPTION_HELP,
    PrivateView,
    StoryOption,
    autocomplete_story,
    before_a_modal,
    checked_text,
    fitted_embed,
    readable_story,
    shorten,
    story_to_manage,
    story_to_view,
)
from bot.ui.voices import autocomplete_voice, checked_voice_name
from core import messages as msg
from core import repository as repo
from core.errors import Conflict
from core.models import Character, Story

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)

NAME_MAX = 100
TEXT_MAX = 1000
VOICE_MAX = 200  # the column's size; voices are named by the narration issue


def checked_voice(voice: str | None) -> str | None:
    """The voice option: None when not given, else its stripped text."""
    return None if voice is None else checked_text(voice, msg.FIELD_VOICE, VOICE_MAX) or None


def character_details(character: Character) -> str:
    """What /character list shows under a character's name."""
    lines = [character.description.strip()] if character.description.strip() else []
    if character.personality.strip():
        lines.append(msg.CHARACTER_PERSONALITY.format(text=character.personality.strip()))
    if character.voice:
        lines.append(msg.CHARACTER_VOICE.format(voice=character.voice))
    return "\n".join(lines) or msg.CHARACTER_NO_DETAILS


class CharacterModal(KahaniModal):
    """The form that adds a character, or (with ``character``) edits one, prefilled."""

    def __init__(self, story_id: int, *, voice: str | None, character: Character | None = None,
                 voice_checked: bool = True) -> None:
        title = (msg.CHARACTER_MODAL_EDIT.format(name=shorten(character.name, 35)) if character
                 else msg.CHARACTER_MODAL_ADD)
        super().__init__(title=title, timeout=MODAL_TIMEOUT)
        self.story_id = story_id
        self.voice, self.voice_checked = voice, voice_checked
        self.original_id = character.id if character else None
        self.name = discord.ui.TextInput(
            max_length=NAME_MAX, default=character.name if character else None, custom_id="name"
        )
        self.description = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, required=False, max_length=TEXT_MAX, custom_id="description",
            default=(character.description or None) if character else None,
        )
        self.personality = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, required=False, max_length=TEXT_MAX, custom_id="personality",
            default=(character.personality or None) if character else None,
        )
        self.add_item(discord.ui.Label(text=msg.CHARACTER_NAME_LABEL, component=self.name))
        self.add_item(discord.ui.Label(
            text=msg.CHARACTER_DESCRIPTION_LABEL, component=self.description,
            description=msg.CHARACTER_DESCRIPTION_HINT.format(limit=TEXT_MAX),
        ))
        self.add_item(discord.ui.Label(
            text=msg.CHARACTER_PERSONALITY_LABEL, component=self.personality,
            description=msg.CHARACTER_PERSONALITY_HINT.format(limit=TEXT_MAX),
        ))

    async def on_submit(self, interaction: Interaction) -> None:
        name = checked_text(self.name.value, msg.FIELD_NAME, NAME_MAX, required=True)
        description = checked_text(self.description.value, msg.FIELD_DESCRIPTION, TEXT_MAX)
        personality = checked_text(self.personality.value, msg.FIELD_PERSONALITY, TEXT_MAX)
        bot = interaction.client
        async with bot.db.transaction() as session:
            story, _ = await story_to_manage(session, interaction, self.story_id)
            if await repo.character_name_taken(session, story.id, name, except_id=self.original_id):
                raise Conflict(msg.CHARACTER_NAME_TAKEN.format(name=name))
            if self.original_id is None:
                await repo.add_character(session, story.id, name, description=description,
                                         personality=personality, voice=self.voice)
                text = msg.CHARACTER_ADDED.format(name=name, story=story.title)
            else:
                await repo.edit_character(session, story.id, self.original_id, name=name, description=description,
                                          personality=personality, voice=self.voice)
                text = msg.CHARACTER_UPDATED.format(name=name)
        if self.voice and not self.voice_checked:
            text += " " + msg.VOICE_UNCHECKED.format(voice=self.voice)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)


class ConfirmRemoval(PrivateView):
    """Remove / Cancel under the question; removing re-checks everything first."""

    def __init__(self, story_id: int, name: str) -> None:
        super().__init__()
        self.story_id = story_id
        self.name = name
        self.remove.label = msg.CHARACTER_REMOVE_BUTTON
        self.cancel.label = msg.CHARACTER_CANCEL_BUTTON

    @discord.ui.button(style=discord.ButtonStyle.danger)
    async def remove(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        bot = interaction.client
        async with bot.db.transaction() as session:
            story, _ = await story_to_manage(session, interaction, self.story_id)
            await repo.remove_character(session, story.id, self.name)
        self.stop()
        await interaction.response.edit_message(
            content=msg.CHARACTER_REMOVED.format(name=self.name), view=None, allowed_mentions=NO_PINGS
        )

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=msg.CHARACTER_KEPT, view=None)


async def autocomplete_character(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The story's characters whose name contains what was typed (never raises)."""
    bot = interaction.client
    try:
        async with bot.db.read() as session:  # an autocomplete writes nothing
            story = await readable_story(session, interaction)
            if story is None:
                return []
            characters = await repo.list_characters(session, story.id)
    except Exception as exc:  # no story here, not allowed, database down: no choices
        log.info("character autocomplete offers nothing: %s", exc)
        return []
    typed = current.strip().lower()
    return [app_commands.Choice(name=c.name, value=c.name) for c in characters if typed in c.name.lower()][:25]


class Characters(commands.GroupCog, group_name="character", group_description="The characters of a story"):
    """Add, list, edit and remove a story's characters."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot

    @app_commands.command(name="add", description="Add a character to the story (opens a form)")
    @app_commands.describe(voice="Narration voice for this character", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(voice=autocomplete_voice)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def add(self, interaction: Interaction,
                  voice: app_commands.Range[str, 1, VOICE_MAX] | None = None,
                  story: StoryOption | None = None) -> None:
        story_id, (voice, checked) = await asyncio.gather(
            before_a_modal(self._story_to_manage(interaction, story)), self._voice(voice))
        await interaction.response.send_modal(CharacterModal(story_id, voice=voice, voice_checked=checked))

    @app_commands.command(name="list", description="The story's characters")
    @app_commands.describe(story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def show_list(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_view(session, interaction, story)
            characters = await repo.list_characters(session, found.id)
        if not characters:
            await interaction.response.send_message(
                msg.CHARACTERS_NONE.format(story=found.title), ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        shown = characters[:25]
        footer = msg.MORE_NOT_SHOWN.format(shown=len(shown), total=len(characters)) if len(characters) > 25 else ""
        embed = fitted_embed(msg.CHARACTERS_TITLE.format(story=found.title),
                             [(c.name, character_details(c)) for c in shown], footer=footer)
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(name="edit", description="Change a character (opens a form)")
    @app_commands.describe(name="The character to change", voice="A new narration voice", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(name=autocomplete_character, voice=autocomplete_voice)
    @app_commands.autocomplete(story=autocomplete_story)
    async def edit(self, interaction: Interaction, name: app_commands.Range[str, 1, NAME_MAX],
                   voice: app_commands.Range[str, 1, VOICE_MAX] | None = None,
                   story: StoryOption | None = None) -> None:
        (found, character), (voice, checked) = await asyncio.gather(
            before_a_modal(self._character_to_manage(interaction, story, name)), self._voice(voice))
        await interaction.response.send_modal(CharacterModal(found.id, voice=voice, character=character,
                                                             voice_checked=checked))

    async def _voice(self, voice: str | None) -> tuple[str | None, bool]:
        """The voice option, checked with Kokoro in time for the form (an unknown voice is
        refused; Kokoro not answering keeps it unchecked)."""
        voice = checked_voice(voice)
        if voice is None:
            return None, True
        return await checked_voice_name(self.bot.tts, voice)

    @app_commands.command(name="remove", description="Remove a character from the story")
    @app_commands.describe(name="The character to remove", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(name=autocomplete_character)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def remove(self, interaction: Interaction, name: app_commands.Range[str, 1, NAME_MAX],
                     story: StoryOption | None = None) -> None:
        found, character = await self._character_to_manage(interaction, story, name)
        view = ConfirmRemoval(found.id, character.name)
        sent = await interaction.response.send_message(
            msg.CHARACTER_REMOVE_CONFIRM.format(name=character.name, story=found.title), view=view,
            ephemeral=True, allowed_mentions=NO_PINGS,
        )
        view.message = sent.resource if isinstance(sent.resource, discord.InteractionMessage) else None

    async def _story_to_manage(self, interaction: Interaction, story_id: int | None) -> int:
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story_id)
            return found.id

    async def _character_to_manage(
        self, interaction: Interaction, story_id: int | None, name: str
    ) -> tuple[Story, Character]:
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story_id)
            return found, await repo.get_character(session, found.id, name.strip())


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Characters(bot))
