"""`/chapter new|list|summary`: close a chapter with a summary the model writes, list
the chapters of the story's current path, and read or edit a chapter's summary.

The story is the one of the thread or DM, or the one named by the ``story`` option.
Whoever may see a story reads its chapters; closing a chapter or editing a summary is
for whoever may moderate it (core/access.py). Every reply is ephemeral.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import allows, story_for
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
    checked_text,
    fitted_embed,
    readable_story,
    shorten,
    story_to_manage,
    story_to_view,
)
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.errors import Conflict, KahaniError, NotFound
from core.ids import MAX_ID
from core.models import Chapter

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)

TITLE_MAX = 100
SUMMARY_MAX = 4000  # what a form's text input holds

ChapterList = list[tuple[Chapter, str | None]]


def chapter_name(chapter: Chapter) -> str:
    """"Chapter 2: The Bridge", or "Chapter 2" when it has no title of its own."""
    title = chapter.title.strip()
    if not title or title == f"Chapter {chapter.number}":
        return msg.CHAPTER_UNTITLED.format(number=chapter.number)
    return msg.CHAPTER_NAMED.format(number=chapter.number, title=title)


def chapters_embed(story_title: str, chapters: ChapterList) -> discord.Embed:
    """The chapters of the path, oldest first, with their summaries (the latest 25)."""
    shown = chapters[-EMBED_FIELDS:]
    fields = []
    for chapter, summary in shown:
        name = chapter_name(chapter)
        if chapter is chapters[-1][0]:
            name = msg.CHAPTER_CURRENT.format(name=name)
        closed = chapter is not chapters[-1][0]
        fields.append((name, summary or (msg.SUMMARY_PENDING if closed else msg.CHAPTER_NO_SUMMARY)))
    footer = msg.MORE_NOT_SHOWN.format(shown=len(shown), total=len(chapters)) if len(shown) < len(chapters) else ""
    return fitted_embed(msg.CHAPTER_LIST_TITLE.format(story=story_title), fields, footer=footer)


def summary_embed(story_title: str, chapter: Chapter, summary: str) -> discord.Embed:
    embed = discord.Embed(title=shorten(chapter_name(chapter), 256), description=shorten(summary, 4096))
    return embed.set_footer(text=shorten(story_title, 256))


def pick_chapter(chapters: ChapterList, number: int | None) -> tuple[Chapter, str | None]:
    """The chapter asked for; by default the latest closed one (the one /chapter new
    just closed, summarised or not yet), else the current one."""
    if number is not None:
        found = next((entry for entry in chapters if entry[0].number == number), None)
        if found is None:
            raise NotFound(msg.CHAPTER_UNKNOWN.format(number=number))
        return found
    return chapters[-2] if len(chapters) > 1 else chapters[-1]


class SummaryModal(KahaniModal):
    """Edit a chapter's summary. Opened straight from the button (a form must be the
    first answer): it is prefilled from what the view showed, no database read first."""

    def __init__(self, view: SummaryView) -> None:
        super().__init__(title=msg.SUMMARY_MODAL_TITLE.format(number=view.chapter.number), timeout=MODAL_TIMEOUT)
        self.summary_view = view
        fits = len(view.summary) <= SUMMARY_MAX
        self.text = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=SUMMARY_MAX, custom_id="summary",
            default=view.summary if fits else None,
            placeholder=None if fits else msg.SUMMARY_TOO_LONG_TO_PREFILL,
        )
        self.add_item(discord.ui.Label(text=msg.SUMMARY_MODAL_LABEL, component=self.text))

    async def on_submit(self, interaction: Interaction) -> None:
        text = checked_text(self.text.value, msg.FIELD_SUMMARY, SUMMARY_MAX, required=True)
        view = self.summary_view
        bot = interaction.client
        async with bot.db.transaction() as session:
            story, who = await story_to_manage(session, interaction, view.story_id)
        await bot.engine.edit_summary(story.id, view.chapter.id, text, user_id=who.user.id)
        view.summary = text
        view.show_undo(True)
        await interaction.response.edit_message(
            content=msg.SUMMARY_SAVED, embed=summary_embed(story.title, view.chapter, text), view=view,
            allowed_mentions=NO_PINGS,
        )


class SummaryView(PrivateView):
    """The **Edit** button under a summary shown to someone who may manage the story,
    and **Undo** once it has been edited (the text before is kept)."""

    def __init__(self, story_id: int, chapter: Chapter, summary: str, *, can_undo: bool = False) -> None:
        super().__init__()
        self.story_id = story_id
        self.chapter = chapter
        self.summary = summary
        self.edit.label = msg.SUMMARY_EDIT_BUTTON
        self.undo.label = msg.SUMMARY_UNDO_BUTTON
        self.show_undo(can_undo)

    def show_undo(self, shown: bool) -> None:
        if shown and self.undo not in self.children:
            self.add_item(self.undo)
        elif not shown and self.undo in self.children:
            self.remove_item(self.undo)

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def edit(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_modal(SummaryModal(self))

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def undo(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        bot = interaction.client
        await interaction.response.defer()
        async with bot.db.transaction() as session:
            story, who = await story_to_manage(session, interaction, self.story_id)
        self.summary = await bot.engine.undo_summary(story.id, self.chapter.id, user_id=who.user.id)
        await interaction.edit_original_response(
            content=msg.SUMMARY_RESTORED, embed=summary_embed(story.title, self.chapter, self.summary), view=self,
            allowed_mentions=NO_PINGS,
        )


async def autocomplete_chapter(interaction: Interaction, current: str) -> list[app_commands.Choice[int]]:
    """The chapters of the story's path whose name contains what was typed (never raises)."""
    bot = interaction.client
    try:
        async with bot.db.read() as session:  # an autocomplete writes nothing
            found = await readable_story(session, interaction)
        if found is None:
            return []
        chapters = await bot.engine.story_so_far(found.id)
    except Exception as exc:  # no story here, not allowed, database down: no choices
        log.info("chapter autocomplete offers nothing: %s", exc)
        return []
    typed = current.strip().lower()
    names = [(chapter_name(c), c.number) for c, _ in reversed(chapters)]
    return [app_commands.Choice(name=shorten(n, 100), value=number) for n, number in names if typed in n.lower()][:25]


class Chapters(commands.GroupCog, group_name="chapter", group_description="The chapters of a story"):
    """Close chapters, list them, read and edit their summaries."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot

    @app_commands.command(name="new", description="Close this chapter with a summary; the next scene starts a new one")
    @app_commands.describe(title="The new chapter's title", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def new(self, interaction: Interaction,
                  title: app_commands.Range[str, 1, TITLE_MAX] | None = None,
                  story: StoryOption | None = None) -> None:
        title = checked_text(title, msg.FIELD_TITLE, TITLE_MAX)
        await self.close_chapter(interaction, story, title)

    async def new_chapter_button(self, interaction: Interaction, variant_id: int) -> None:
        """The **New chapter** button under a scene: the same as ``/chapter new``."""
        async with self.bot.db.read() as session:
            story_id = await repo.variant_story_id(session, variant_id)
        await self.close_chapter(interaction, story_id, "", shown=True)

    async def close_chapter(self, interaction: Interaction, story_id: int | None, title: str, *,
                            shown: bool = False) -> None:
        """Close the story's current chapter (``/chapter new`` and the New chapter button);
        its summary is a job the worker runs (core/summaries.py). ``shown``: asked from the
        story's own message."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, who = await story_for(session, interaction, story_id, Need.MODERATE, shown=shown)
        try:
            chapter = await self.bot.engine.new_chapter(found.id, title=title, user_id=who.user.id, actor=who.actor)
        except (Conflict, NotFound):
            raise
        except KahaniError as exc:  # the model failed: say so, and that nothing changed
            raise KahaniError(msg.CHAPTER_NOT_CLOSED.format(reason=exc.message)) from exc
        await interaction.followup.send(
            msg.CHAPTER_CLOSED.format(closed=chapter.number - 1, name=chapter_name(chapter)),
            ephemeral=True, allowed_mentions=NO_PINGS,
        )
        if chapter.opened_after_variant_id is not None:  # the live scene's New chapter button goes away
            await self.bot.player.refresh_live(chapter.opened_after_variant_id)

    @app_commands.command(name="list", description="The story's chapters and their summaries")
    @app_commands.describe(story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def show_list(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_view(session, interaction, story)
        chapters = await self.bot.engine.story_so_far(found.id)
        await interaction.followup.send(embed=chapters_embed(found.title, chapters), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(name="summary", description="Read a chapter's summary (and edit it, if it is your story)")
    @app_commands.describe(chapter="The chapter's number (default: the latest summarised one)", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(chapter=autocomplete_chapter, story=autocomplete_story)
    async def summary(self, interaction: Interaction, chapter: app_commands.Range[int, 1, MAX_ID] | None = None,
                      story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.db.transaction() as session:
            found, _ = await story_to_view(session, interaction, story)
            may_edit = await allows(session, interaction, found, Need.MODERATE)
        chapters = await self.bot.engine.story_so_far(found.id)
        picked, text = pick_chapter(chapters, chapter)
        if not text:
            closed = picked is not chapters[-1][0]
            none = msg.CHAPTER_SUMMARY_PENDING if closed else msg.CHAPTER_SUMMARY_NONE
            await interaction.followup.send(none.format(number=picked.number), ephemeral=True)
            return
        embed = summary_embed(found.title, picked, text)
        if not may_edit:
            await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        view = SummaryView(found.id, picked, text, can_undo=await self.bot.engine.summary_edited(found.id, picked.id))
        view.message = await interaction.followup.send(embed=embed, view=view, ephemeral=True,
                                                       allowed_mentions=NO_PINGS, wait=True)


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Chapters(bot))
