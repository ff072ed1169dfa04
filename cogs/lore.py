"""`/lore add|edit|remove|list|show`: a story's world info — places, factions, items,
rules and secrets the storyteller is told about when one of their keywords comes up,
or always when pinned (core/lore.py; the engine picks them for each prompt).

The story is the one of the thread or DM, or the one named by the ``story`` option.
Whoever may see a story reads its lore; adding, editing and removing entries is for
whoever may moderate it (its owner, or a moderator of its thread; core/access.py).
Every reply is ephemeral and pings nobody.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import allows
from bot.errors import KahaniModal
from bot.types import Interaction
from bot.ui.common import (
    EMBED_FIELDS,
    MODAL_TIMEOUT,
    NO_PINGS,
    STORY_OPTION_HELP,
    PrivateView,
    StoryOption,
    autocomplete_story,
    before_a_modal,
    fitted_embed,
    readable_story,
    shorten,
    story_to_manage,
    story_to_view,
)
from bot.ui.render import post_paced
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.errors import KahaniError
from core.lore import MAX_KEYWORD_LENGTH, MAX_KEYWORDS, MAX_NAME_LENGTH, MAX_TEXT_LENGTH
from core.models import LoreEntry, LoreStatus, Story

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)

# The keywords input holds the longest list an entry can have, as it is stored ("a, b").
KEYWORDS_INPUT_MAX = MAX_KEYWORDS * (MAX_KEYWORD_LENGTH + 2)
# What /lore list shows of an entry's text.
EXCERPT = 150


def keywords_text(keywords: str) -> str:
    """An entry's stored keywords as the answers name them ("none" for none)."""
    return keywords or msg.LORE_NO_KEYWORDS


def entry_embed(story: Story, entry: LoreEntry) -> discord.Embed:
    """What /lore show (and the answer to /lore remove) shows of an entry."""
    fields = [
        (msg.LORE_FIELD_KEYWORDS, keywords_text(entry.keywords)),
        (msg.LORE_FIELD_PINNED, msg.LORE_PINNED_YES if entry.pinned else msg.LORE_PINNED_NO),
    ]
    if entry.status == LoreStatus.PROPOSED:
        fields.append((msg.LORE_FIELD_STATUS, msg.LORE_STATUS_PROPOSED))
    return fitted_embed(entry.name, fields, description=entry.content or msg.LORE_NO_TEXT, footer=story.title)


def lore_list_embed(story: Story, entries: list[LoreEntry]) -> discord.Embed:
    """The story's entries by name (the first 25), each with its keywords and an excerpt."""
    shown = entries[:EMBED_FIELDS]
    fields = []
    for entry in shown:
        name = msg.LORE_LIST_PINNED.format(name=entry.name) if entry.pinned else entry.name
        lines = [msg.LORE_LIST_KEYWORDS.format(keywords=keywords_text(entry.keywords))]
        if entry.content:
            lines.append(shorten(" ".join(entry.content.split()), EXCERPT))
        fields.append((name, "\n".join(lines)))
    footer = msg.MORE_NOT_SHOWN.format(shown=len(shown), total=len(entries)) if len(shown) < len(entries) else ""
    return fitted_embed(msg.LORE_LIST_TITLE.format(story=story.title), fields, footer=footer)


class LoreModal(KahaniModal):
    """The form that adds an entry, or (with ``entry``) edits one, prefilled.

    Discord's client enforces the inputs' lengths; a client that does not is refused by
    core/lore.py (check_name, parse_keywords, check_text run before anything is stored),
    which also takes NUL and control characters out."""

    def __init__(self, story_id: int, *, pinned: bool | None = None, entry: LoreEntry | None = None,
                 accept: bool = False) -> None:
        title = msg.LORE_MODAL_EDIT.format(name=shorten(entry.name, 35)) if entry else msg.LORE_MODAL_ADD
        super().__init__(title=title, timeout=MODAL_TIMEOUT)
        self.story_id = story_id
        self.pinned = pinned
        self.accept = accept  # a proposal: saving the form also accepts it
        self.lore_id = entry.id if entry else None
        self.name = discord.ui.TextInput(
            max_length=MAX_NAME_LENGTH, custom_id="name", default=entry.name if entry else None
        )
        self.keywords = discord.ui.TextInput(
            required=False, max_length=KEYWORDS_INPUT_MAX, custom_id="keywords",
            placeholder=msg.LORE_KEYWORDS_PLACEHOLDER, default=(entry.keywords or None) if entry else None,
        )
        self.text = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, required=False, max_length=MAX_TEXT_LENGTH, custom_id="text",
            default=(entry.content or None) if entry else None,
        )
        self.add_item(discord.ui.Label(
            text=msg.LORE_NAME_LABEL, component=self.name,
            description=msg.LORE_NAME_HINT.format(limit=MAX_NAME_LENGTH),
        ))
        self.add_item(discord.ui.Label(
            text=msg.LORE_KEYWORDS_LABEL, component=self.keywords,
            description=msg.LORE_KEYWORDS_HINT.format(limit=MAX_KEYWORDS),
        ))
        self.add_item(discord.ui.Label(
            text=msg.LORE_TEXT_LABEL, component=self.text,
            description=msg.LORE_TEXT_HINT.format(limit=MAX_TEXT_LENGTH),
        ))

    async def on_submit(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with interaction.client.db.transaction() as session:
            story, who = await story_to_manage(session, interaction, self.story_id)
            if self.lore_id is None:
                entry = await repo.add_lore(
                    session, story.id, self.name.value, keywords=self.keywords.value, content=self.text.value,
                    pinned=bool(self.pinned), user_id=who.user.id,
                )
                text = msg.LORE_ADDED.format(name=entry.name, story=story.title,
                                             keywords=keywords_text(entry.keywords))
                if entry.pinned:
                    text += msg.LORE_ADDED_PINNED
            else:
                # By id: the entry may have been renamed since the form opened.
                current = await repo.get_lore_by_id(session, story.id, self.lore_id)
                entry = await repo.edit_lore(
                    session, story.id, current.name, new_name=self.name.value, keywords=self.keywords.value,
                    content=self.text.value, user_id=who.user.id,
                )
                if self.accept and entry.status == LoreStatus.PROPOSED:
                    entry = await repo.accept_lore(session, story.id, entry.id, user_id=who.user.id)
                    text = msg.LORE_ACCEPTED.format(name=entry.name)
                else:
                    text = msg.LORE_UPDATED.format(name=entry.name, keywords=keywords_text(entry.keywords))
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)


class UndoView(PrivateView):
    """The **Undo** button under an entry shown to someone who may edit it: its keywords
    and text go back to before the last edit (pressed again, the edit comes back)."""

    def __init__(self, story_id: int, lore_id: int) -> None:
        super().__init__()
        self.story_id = story_id
        self.lore_id = lore_id
        self.undo.label = msg.LORE_UNDO_BUTTON

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def undo(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.defer()
        async with interaction.client.db.transaction() as session:
            story, who = await story_to_manage(session, interaction, self.story_id)
            current = await repo.get_lore_by_id(session, story.id, self.lore_id)
            entry = await repo.undo_lore(session, story.id, current.name, user_id=who.user.id)
            embed = entry_embed(story, entry)
        await interaction.edit_original_response(
            content=msg.LORE_UNDONE.format(name=entry.name), embed=embed, view=self, allowed_mentions=NO_PINGS
        )


class ProposalsView(PrivateView):
    """The storyteller's proposals (at most five shown), each with **Accept**, **Edit**
    and **Dismiss**: nothing joins the story's lore without a person's yes."""

    def __init__(self, story: Story, proposals: list[LoreEntry]) -> None:
        super().__init__()
        self.story_id = story.id
        for row, entry in enumerate(proposals[:5]):
            for label, style, handler in (
                (msg.LORE_ACCEPT_BUTTON, discord.ButtonStyle.success, self._accept),
                (msg.LORE_EDIT_BUTTON, discord.ButtonStyle.secondary, self._edit),
                (msg.LORE_DISMISS_BUTTON, discord.ButtonStyle.danger, self._dismiss),
            ):
                button: discord.ui.Button[Any] = discord.ui.Button(
                    label=f"{label}: {shorten(entry.name, 60)}", style=style, row=row)
                button.callback = functools.partial(handler, entry.id)
                self.add_item(button)

    async def _accept(self, lore_id: int, interaction: Interaction) -> None:
        await interaction.response.defer()
        async with interaction.client.db.transaction() as session:
            story, who = await story_to_manage(session, interaction, self.story_id)
            entry = await repo.accept_lore(session, story.id, lore_id, user_id=who.user.id)
        await self._refresh(interaction, msg.LORE_ACCEPTED.format(name=entry.name))

    async def _dismiss(self, lore_id: int, interaction: Interaction) -> None:
        await interaction.response.defer()
        async with interaction.client.db.transaction() as session:
            story, _ = await story_to_manage(session, interaction, self.story_id)
            entry = await repo.get_lore_by_id(session, story.id, lore_id)
            name = entry.name
            await repo.dismiss_lore(session, story.id, lore_id)
        await self._refresh(interaction, msg.LORE_DISMISSED.format(name=name))

    async def _edit(self, lore_id: int, interaction: Interaction) -> None:
        async def read() -> LoreEntry:
            async with interaction.client.db.transaction() as session:
                story, _ = await story_to_manage(session, interaction, self.story_id)
                return await repo.get_lore_by_id(session, story.id, lore_id)

        entry = await before_a_modal(read())
        await interaction.response.send_modal(LoreModal(self.story_id, entry=entry, accept=True))

    async def _refresh(self, interaction: Interaction, said: str) -> None:
        async with interaction.client.db.read() as session:
            story = await repo.get_story(session, self.story_id)
            left = list(await repo.list_lore(session, story.id, status=LoreStatus.PROPOSED))
        view = ProposalsView(story, left) if left else None
        await interaction.edit_original_response(
            content=said, embed=proposals_embed(story, left) if left else None, view=view, allowed_mentions=NO_PINGS)
        if view is not None:
            view.message = self.message
        self.stop()


def proposals_embed(story: Story, proposals: list[LoreEntry]) -> discord.Embed:
    fields = [(entry.name, msg.LORE_PROPOSAL_FIELD.format(keywords=keywords_text(entry.keywords),
                                                          text=entry.content)) for entry in proposals[:5]]
    footer = msg.MORE_NOT_SHOWN.format(shown=5, total=len(proposals)) if len(proposals) > 5 else ""
    return fitted_embed(msg.LORE_PROPOSALS_TITLE.format(story=story.title), fields, footer=footer)


async def autocomplete_entry(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The story's entry names that start with (then contain) what was typed. Never
    raises: a failure offers nothing (and is logged)."""
    try:
        async with interaction.client.db.read() as session:
            story = await readable_story(session, interaction)
            if story is None:
                return []
            names = await repo.lore_names(session, story.id, current)
    except Exception as exc:  # no such story, database down: no choices
        log.info("lore autocomplete offers nothing: %s", exc)
        return []
    return [app_commands.Choice(name=name, value=name) for name in names]


class Lorebook(commands.GroupCog, group_name="lore", group_description="The world info of a story"):
    """Add, edit, remove, list and show a story's lore entries."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        bot.engine.on_lore_proposed(self.announce)

    async def announce(self, story_id: int, names: list[str]) -> None:
        """Tell the story's channel that the storyteller proposed lore (no pings; the
        owner reviews them with /lore proposals)."""
        async with self.bot.db.read() as session:
            story = await repo.get_story(session, story_id)
        try:
            channel = await self.bot.player.channel_of(story)
            await post_paced(channel, msg.LORE_PROPOSED_NOTICE.format(
                count=len(names), names=", ".join(f"**{shorten(n, 60)}**" for n in names)),
                scheduler=self.bot.scheduler)  # posts ping nobody
        except (KahaniError, discord.HTTPException) as exc:
            log.info("story %s: could not announce lore proposals: %s", story_id, exc)

    @app_commands.command(name="proposals", description="Review the lore the storyteller proposed")
    @app_commands.describe(story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def proposals(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story)
            proposed = list(await repo.list_lore(session, found.id, status=LoreStatus.PROPOSED))
        if not proposed:
            await interaction.followup.send(msg.LORE_NO_PROPOSALS.format(story=found.title), ephemeral=True,
                                            allowed_mentions=NO_PINGS)
            return
        view = ProposalsView(found, proposed)
        view.message = await interaction.followup.send(embed=proposals_embed(found, proposed), view=view,
                                                       ephemeral=True, allowed_mentions=NO_PINGS, wait=True)

    @app_commands.command(name="add", description="Add a lore entry to the story (opens a form)")
    @app_commands.describe(pinned="Always give it to the storyteller, keywords or not", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def add(self, interaction: Interaction, pinned: bool = False, story: StoryOption | None = None) -> None:
        story_id = await before_a_modal(self._story_to_manage(interaction, story))
        await interaction.response.send_modal(LoreModal(story_id, pinned=pinned))

    @app_commands.command(name="edit", description="Change a lore entry (opens a form, unless you only pin or unpin)")
    @app_commands.describe(entry="The entry to change",
                           pinned="Pin or unpin it at once, without the form", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(entry=autocomplete_entry)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def edit(self, interaction: Interaction, entry: app_commands.Range[str, 1, MAX_NAME_LENGTH],
                   pinned: bool | None = None, story: StoryOption | None = None) -> None:
        if pinned is None:
            found, lore = await before_a_modal(self._entry_to_manage(interaction, story, entry))
            await interaction.response.send_modal(LoreModal(found.id, entry=lore))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, who = await story_to_manage(session, interaction, story)
            lore = await repo.edit_lore(session, found.id, entry, pinned=pinned, user_id=who.user.id)
            text = (msg.LORE_PINNED_NOW if lore.pinned else msg.LORE_UNPINNED_NOW).format(name=lore.name)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(name="remove", description="Remove a lore entry from the story")
    @app_commands.describe(entry="The entry to remove", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(entry=autocomplete_entry)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def remove(self, interaction: Interaction, entry: app_commands.Range[str, 1, MAX_NAME_LENGTH],
                     story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story)
            lore = await repo.get_lore(session, found.id, entry)
            # Shown with the answer: a removal has no Undo, so its text is not lost.
            embed = entry_embed(found, lore)
            await repo.remove_lore(session, found.id, lore.name)
        await interaction.followup.send(msg.LORE_REMOVED.format(name=lore.name, story=found.title), embed=embed,
                                        ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(name="list", description="The story's lore entries")
    @app_commands.describe(story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def show_list(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_view(session, interaction, story)
            entries = list(await repo.list_lore(session, found.id))
        if not entries:
            await interaction.followup.send(msg.LORE_NONE.format(story=found.title), ephemeral=True,
                                            allowed_mentions=NO_PINGS)
            return
        await interaction.followup.send(embed=lore_list_embed(found, entries), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(name="show", description="Read a lore entry (and undo its last edit, if it is your story)")
    @app_commands.describe(entry="The entry to read", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(entry=autocomplete_entry)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def show(self, interaction: Interaction, entry: app_commands.Range[str, 1, MAX_NAME_LENGTH],
                   story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_view(session, interaction, story)
            lore = await repo.get_lore(session, found.id, entry)
            undoable = lore.previous_keywords is not None or lore.previous_content is not None
            may_edit = undoable and await allows(session, interaction, found, Need.MODERATE)
        embed = entry_embed(found, lore)
        if not may_edit:
            await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        view = UndoView(found.id, lore.id)
        view.message = await interaction.followup.send(embed=embed, view=view, ephemeral=True,
                                                       allowed_mentions=NO_PINGS, wait=True)

    async def _story_to_manage(self, interaction: Interaction, story_id: int | None) -> int:
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story_id)
            return found.id

    async def _entry_to_manage(
        self, interaction: Interaction, story_id: int | None, name: str
    ) -> tuple[Story, LoreEntry]:
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_manage(session, interaction, story_id)
            return found, await repo.get_lore(session, found.id, name)


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Lorebook(bot))
