"""``/story …``: start a story (its thread, its first scene), list, resume, inspect, end,
delete and export stories, and the group commands (invite, kick, vote settings).

Scenes are played and shown by the scene player (``bot/player.py``); what a scene's
components do is ``cogs/scenes.py``. Who may do what is asked of ``bot/access.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Caller, allows, check, story_for, thread_view, visible_stories
from bot.errors import KahaniModal, KahaniView, send_ephemeral
from bot.types import Interaction
from bot.ui.common import (
    EMBED_FIELDS,
    STORY_OPTION_HELP,
    NotAllowed,
    StoryOption,
    answer,
    autocomplete_story,
    before_a_modal,
    caller,
    checked_text,
    fitted_embed,
    shorten,
    within_the_deadline,
)
from bot.ui.memory import memory_embed
from bot.ui.reader import ReaderView, tree_text
from bot.ui.render import post_paced, split_text, within_global_budget
from cogs.chapters import SummaryView, autocomplete_chapter, chapter_name
from cogs.votes import settings_text
from core import access, cooldowns, recap, servers, stories
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.engine import StoryEngine
from core.errors import KahaniError, NotFound
from core.ids import MAX_ID
from core.models import Chapter, SceneLength, Story, StoryMode, StoryStatus, utcnow
from core.reading import ReadScene, reader_pages
from core.stories import AUTHOR_NOTE_MAX
from core.text import storable
from core.votes import MAX_DURATION, MAX_MIN_OPEN, MIN_DURATION, VoteService, VoteSettings

if TYPE_CHECKING:
    from bot.app import KahaniBot
    from bot.player import ScenePlayer

log = logging.getLogger(__name__)
TITLE_MAX, SHORT_FIELD_MAX, LONG_FIELD_MAX = 100, 100, 1000  # the form's limits
NO_PINGS = discord.AllowedMentions.none()
SWEEP_EVERY = 10.0  # seconds between looks for generations whose process died

LENGTH_CHOICES = [app_commands.Choice(name=f"{m.value} ({lo}–{hi} words)", value=m.value)
                  for m, (lo, hi) in zip(SceneLength, ((100, 150), (200, 300), (400, 500)), strict=True)]
POV_CHOICES = [app_commands.Choice(name=n, value=v) for n, v in
               (("second person (you)", "second"), ("first person (I)", "first"), ("third person", "third"))]


class StoryDetailsModal(KahaniModal):
    """A story's title, genre, tone, world and premise (``/story new``, ``/story edit``)."""

    def __init__(self, title: str, story: Story | None = None) -> None:
        super().__init__(title=title, timeout=900)
        self.story_title = discord.ui.TextInput(label="Title", max_length=TITLE_MAX,
                                                placeholder="The Lighthouse Keeper")
        self.genre = discord.ui.TextInput(label="Genre", max_length=SHORT_FIELD_MAX, required=False,
                                          placeholder="mystery, fantasy…")
        self.tone = discord.ui.TextInput(label="Tone", max_length=SHORT_FIELD_MAX, required=False,
                                         placeholder="eerie, whimsical…")
        self.world = discord.ui.TextInput(label="World / setting", style=discord.TextStyle.paragraph,
                                          max_length=LONG_FIELD_MAX, required=False)
        self.premise = discord.ui.TextInput(label="Premise: how does it start?", style=discord.TextStyle.paragraph,
                                            max_length=LONG_FIELD_MAX, required=False)
        if story is not None:  # the story's details as they are, to change
            for item, value in ((self.story_title, story.title), (self.genre, story.genre), (self.tone, story.tone),
                                (self.world, story.world_setting), (self.premise, story.premise)):
                item.default = (value or "")[:item.max_length]
        for item in (self.story_title, self.genre, self.tone, self.world, self.premise):
            self.add_item(item)

    def details(self) -> stories.StoryDetails:
        """What was sent, re-checked: a client need not keep to the form's limits."""
        title = " ".join(checked_text(storable(str(self.story_title.value)), msg.FIELD_STORY_TITLE, TITLE_MAX).split())
        if not title:
            raise KahaniError(msg.STORY_NEEDS_TITLE)
        return stories.StoryDetails(
            title=title,
            genre=checked_text(storable(str(self.genre.value)), msg.FIELD_GENRE, SHORT_FIELD_MAX),
            tone=checked_text(storable(str(self.tone.value)), msg.FIELD_TONE, SHORT_FIELD_MAX),
            world_setting=checked_text(storable(str(self.world.value)), msg.FIELD_WORLD, LONG_FIELD_MAX),
            premise=checked_text(storable(str(self.premise.value)), msg.FIELD_PREMISE, LONG_FIELD_MAX),
        )


class NewStoryModal(StoryDetailsModal):
    """``/story new``: the story's title, genre, tone, world and premise."""

    def __init__(self, cog: Stories, *, scene_length: str | None, mode: str | None, private: bool) -> None:
        super().__init__("A new story")
        self.cog, self.scene_length, self.mode, self.private = cog, scene_length, mode, private

    async def on_submit(self, interaction: Interaction) -> None:
        await self.cog.create_story(interaction, self.details(), scene_length=self.scene_length, mode=self.mode,
                                    private=self.private)


class EditStoryModal(StoryDetailsModal):
    """``/story edit``: the story's details, filled in as they are."""

    def __init__(self, cog: Stories, story: Story) -> None:
        super().__init__("Edit the story", story)
        self.cog, self.story_id = cog, story.id

    async def on_submit(self, interaction: Interaction) -> None:
        await self.cog.edit_story(interaction, self.story_id, self.details())


class ConfirmDelete(KahaniView):
    """A short-lived confirmation (not persistent: discord.py's own custom_ids)."""

    def __init__(self, cog: Stories, story_id: int, user_id: int) -> None:
        super().__init__(timeout=120)
        self.cog, self.story_id, self.user_id = cog, story_id, user_id

    @discord.ui.button(label="Delete it for good", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: Interaction, _: discord.ui.Button[Any]) -> None:
        if interaction.user.id != self.user_id:
            raise NotAllowed(msg.NOT_YOUR_STORY_TO_MANAGE)
        async with self.cog.db.transaction() as s:
            story = await repo.get_story(s, self.story_id)
            await check(s, interaction, story, Need.MODERATE)
            title, thread_id = story.title, story.thread_id
            await repo.delete_story(s, self.story_id)
        self.stop()
        await interaction.response.edit_message(content=msg.STORY_DELETED.format(title=title), view=None,
                                                allowed_mentions=NO_PINGS)
        if thread_id is not None:
            await self.cog.retire_thread(thread_id)

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, _: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=msg.STORY_KEPT, view=None)


class Stories(commands.Cog):
    """``/story``: start, list, resume, inspect, manage and export stories."""

    story = app_commands.Group(name="story", description="Start, resume and manage your stories")

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        self.db = bot.db
        self.engine: StoryEngine = bot.engine
        self.player: ScenePlayer = bot.player
        # Exports built at once in this process (each may hold a large story in memory).
        self._exports = asyncio.Semaphore(bot.settings.exports_at_once)

    # --- /story new ----------------------------------------------------------------

    @story.command(name="new", description="Start a new story (in a server: in its own thread)")
    @app_commands.describe(length="How long each scene is", mode="Solo: only you play. Group: the thread votes",
                           private="Make the story's thread private (servers only)")
    @app_commands.choices(length=LENGTH_CHOICES, mode=[app_commands.Choice(name="solo", value="solo"),
                                                       app_commands.Choice(name="group", value="group")])
    async def new(self, interaction: Interaction, length: str | None = None,
                  mode: str | None = None, private: bool = False) -> None:
        # The modal must be the first response: no database work before it (the server's
        # default mode, when the player names none, is read when the form comes back).
        await interaction.response.send_modal(NewStoryModal(self, scene_length=length, mode=mode, private=private))

    async def create_story(self, interaction: Interaction, details: stories.StoryDetails, *,
                           scene_length: str | None, mode: str | None, private: bool) -> None:
        title, genre, tone = details.title, details.genre, details.tone
        if mode is not None and mode not in {m.value for m in StoryMode}:
            raise KahaniError(msg.SERVER_BAD_MODE)
        await interaction.response.defer(ephemeral=True, thinking=True)
        in_guild = interaction.guild_id is not None
        if in_guild:
            self._check_thread_permission(interaction, private)
        # The story's rows first (within the hourly limit), then its thread: a refusal
        # leaves no thread behind, and a thread never exists without its story.
        async with self.db.transaction() as s:
            who = await caller(s, interaction)
            await stories.check_new_story_limit(s, who.user.id, per_hour=self.bot.settings.stories_per_user_per_hour,
                                                now=utcnow())
            if scene_length is None:
                scene_length = (await repo.get_user_settings(s, who.user.id)).scene_length
            if not in_guild:
                mode = StoryMode.SOLO.value
            elif mode is None:  # the server's default (/server default-mode), group unless set
                mode = await servers.default_mode(s, interaction.guild_id or 0)
            story = await repo.create_story(
                s, who.user, title, genre=genre, tone=tone, world_setting=details.world_setting,
                premise=details.premise, scene_length=scene_length, mode=mode,
                guild_id=interaction.guild_id, private=private and in_guild,
            )
            story_id, user_id = story.id, who.user.id
        intro = msg.STORY_INTRO.format(title=title, genre=genre or "—", tone=tone or "—")
        try:
            channel, intro_posted = await self._story_channel(interaction, title, private, intro)
        except BaseException:
            async with self.db.transaction() as s:
                await repo.delete_story(s, story_id)
            raise
        async with self.db.transaction() as s:
            story = await repo.get_story(s, story_id)
            story.channel_id = channel.id if not in_guild else interaction.channel_id
            story.thread_id = channel.id if in_guild else None
        where = channel.mention if isinstance(channel, discord.Thread) else msg.HERE_IN_DMS
        await interaction.followup.send(msg.STORY_STARTED.format(title=title, where=where),
                                        ephemeral=True, allowed_mentions=NO_PINGS)
        if not intro_posted:
            await post_paced(channel, intro, scheduler=self.bot.scheduler)
        self.player.spawn(self.player.play(channel, "", lambda ref: self.engine.next_scene(
            story_id, user_id=user_id, frontend_ref=ref), retry=("open", story_id, None)))

    @staticmethod
    def _check_thread_permission(interaction: Interaction, private: bool) -> None:
        """The player may start a story in a channel only where they could start a
        thread themselves (the bot makes it for them)."""
        perms = interaction.permissions
        allowed = perms.create_private_threads if private else perms.create_public_threads
        if not (allowed and perms.send_messages_in_threads):
            where = getattr(interaction.channel, "mention", "this channel")
            raise KahaniError(msg.STORY_YOU_CANNOT_CREATE_THREADS.format(channel=where))

    async def _story_channel(self, interaction: Interaction, title: str, private: bool,
                             intro: str) -> tuple[discord.Thread | discord.DMChannel | discord.GroupChannel, bool]:
        """In a server: a new thread for the story (in a forum: a new post, ``intro`` its
        first message). In DMs: the DM channel. The bool says whether ``intro`` was posted."""
        if interaction.guild is None:
            dm = interaction.channel
            if isinstance(dm, discord.DMChannel | discord.GroupChannel):
                return dm, False
            return await interaction.user.create_dm(), False
        parent = interaction.channel
        if isinstance(parent, discord.Thread):
            parent = parent.parent
        # Thread, player and title card pass the global limit the scene streams share
        # (many /story new at once would draw a 429 otherwise).
        gate = self.bot.scheduler
        if isinstance(parent, discord.ForumChannel):  # a forum: a post per story, the title card its first message
            forum = parent
            if private:
                raise KahaniError(msg.STORY_FORUM_NOT_PRIVATE.format(channel=forum.mention))
            try:
                made = await within_global_budget(gate, lambda: forum.create_thread(
                    name=title[:100], content=intro, auto_archive_duration=10080, allowed_mentions=NO_PINGS))
            except discord.Forbidden as exc:
                raise KahaniError(msg.STORY_NO_THREAD_PERMISSION.format(channel=forum.mention)) from exc
            return made.thread, True
        if not isinstance(parent, discord.TextChannel):
            raise KahaniError(msg.STORY_NEEDS_TEXT_CHANNEL)
        kind = discord.ChannelType.private_thread if private else discord.ChannelType.public_thread
        try:
            # invitable only matters for a private thread: players are added by the bot
            thread = await within_global_budget(gate, lambda: parent.create_thread(
                name=title[:100], type=kind, auto_archive_duration=10080, invitable=not private))
        except discord.Forbidden as exc:
            # Asked for privacy: say so rather than open a thread everyone can read.
            refused = msg.STORY_NO_PRIVATE_THREAD_PERMISSION if private else msg.STORY_NO_THREAD_PERMISSION
            raise KahaniError(refused.format(channel=parent.mention)) from exc
        try:
            await within_global_budget(gate, lambda: thread.add_user(interaction.user))
        except discord.Forbidden as exc:
            with contextlib.suppress(discord.HTTPException):
                await thread.delete()  # no empty thread left behind
            raise KahaniError(msg.STORY_NO_THREAD_PERMISSION.format(channel=parent.mention)) from exc
        return thread, False

    # --- /story list, resume, info, end, delete, settings --------------------------------

    @story.command(name="list", description="Your stories (and, in a server, the server's)")
    async def list_(self, interaction: Interaction) -> None:
        async with self.db.read() as s:
            found = await visible_stories(s, interaction, limit=25)
        if not found:
            await send_ephemeral(interaction, msg.NO_STORIES)
            return
        lines = []
        for st in found:
            where = f"<#{st.thread_id}>" if st.thread_id else "DM"
            state = "" if st.status == StoryStatus.ACTIVE.value else f" · {st.status}"
            lines.append(f"**#{st.id} {discord.utils.escape_markdown(st.title)}** · {st.mode} · {where}{state}")
        embed = discord.Embed(title="Stories", description="\n".join(lines)[:4000])
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)

    @story.command(name="resume", description="Show a story's latest scene again, with its buttons")
    @app_commands.describe(story="The story (default: the one of this thread or DM)")
    @app_commands.autocomplete(story=autocomplete_story)
    async def resume(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            found, who = await story_for(s, interaction, story, Need.PLAY)
            tip = await repo.tip(s, found.id)
        try:
            channel = await self.player.channel_of(found)
        except NotFound:
            channel = await self._move_story_here(interaction, found)
        if isinstance(channel, discord.Thread) and channel.archived:
            try:
                await channel.edit(archived=False)
            except discord.HTTPException as exc:
                raise KahaniError(msg.THREAD_CANNOT_REOPEN) from exc
        if tip is None:
            await interaction.followup.send(msg.RESUME_NO_SCENE, ephemeral=True)
            self.player.spawn(self.player.play(channel, "", lambda ref: self.engine.next_scene(
                found.id, frontend_ref=ref, user_id=who.user.id), retry=("open", found.id, None)))
            return
        first = await channel.send(msg.WRITING, allowed_mentions=NO_PINGS)
        await self.player.show_variant(tip.variant.id, [first])
        await interaction.followup.send(msg.RESUMED.format(where=getattr(channel, "mention", "your DMs")),
                                        ephemeral=True, allowed_mentions=NO_PINGS)

    async def _move_story_here(self, interaction: Interaction,
                               story: Story) -> discord.Thread | discord.DMChannel | discord.GroupChannel:
        """The story's thread (or DM) is gone: give it a new thread in this channel (a DM
        story: this DM). Nothing of the story was lost with the old one."""
        if (story.guild_id is None) != (interaction.guild_id is None):
            raise NotFound(msg.STORY_CHANNEL_GONE)
        intro = msg.STORY_INTRO.format(title=story.title, genre=story.genre or "—", tone=story.tone or "—")
        channel, _ = await self._story_channel(interaction, story.title, story.private, intro)
        async with self.db.transaction() as s:
            moved = await repo.get_story(s, story.id)
            if interaction.guild_id is not None:
                moved.thread_id, moved.channel_id = channel.id, interaction.channel_id
            else:
                moved.channel_id = channel.id
        return channel

    @story.command(name="info", description="A story's settings, chapter, story so far and context use")
    @app_commands.autocomplete(story=autocomplete_story)
    async def info(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            found, _ = await story_for(s, interaction, story, Need.SEE)
            path = await repo.active_path(s, found.id, limit=1)
            notes = await servers.content_notes(s, found.guild_id)
        report = await self.engine.context_report(found.id)
        so_far = await self.engine.story_so_far(found.id)
        facts = [
            f"**Genre / tone:** {found.genre or '—'} / {found.tone or '—'}",
            f"**Mode:** {found.mode} · **Scene length:** {found.scene_length} · "
            f"**Scenes:** {path[0].depth + 1 if path else 0}",
            f"**Context used:** {report.percent}% of {report.budget} tokens"
            + (" — time for /chapter new" if report.flagged() else ""),
        ]
        if found.mode == StoryMode.GROUP.value:
            facts.append(settings_text(found.title, VoteSettings.of(found)))
        if notes:
            facts.append(msg.INFO_CONTENT_NOTES.format(notes=notes))
        premise = shorten(found.premise or "", 1500)
        chapters = [(c.title or f"Chapter {c.number}", summary or "—") for c, summary in so_far]
        shown = chapters[-EMBED_FIELDS:]
        footer = msg.MORE_NOT_SHOWN.format(shown=len(shown), total=len(chapters)) if len(shown) < len(chapters) else ""
        # Within Discord's limits whatever the story holds (6,000 characters in all).
        embed = fitted_embed(found.title, shown, description="\n\n".join(filter(None, [premise, "\n".join(facts)])),
                             footer=footer)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)

    @story.command(name="memory", description="What the storyteller will be given for the next scene, and its cost")
    @app_commands.autocomplete(story=autocomplete_story)
    async def memory(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            found, _ = await story_for(s, interaction, story, Need.SEE)
            may_edit = await allows(s, interaction, found, Need.MODERATE)
            chapter_id = await repo.current_chapter_id(s, found.id)
            chapter = await s.get(Chapter, chapter_id) if chapter_id is not None else None
        memory = await self.engine.memory(found.id)
        embed = memory_embed(found.title, memory)
        if not (may_edit and memory.rolling and chapter is not None):
            await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        # The owner (host) may fix what the storyteller remembers of this chapter.
        view = SummaryView(found.id, chapter, memory.rolling,
                           can_undo=await self.engine.summary_edited(found.id, chapter.id))
        view.message = await interaction.followup.send(msg.MEMORY_EDIT_HINT, embed=embed, view=view, ephemeral=True,
                                                       allowed_mentions=NO_PINGS, wait=True)

    @story.command(name="read", description="Read the story so far, page by page (only you see it)")
    @app_commands.describe(chapter="Start at this chapter (its number)", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(chapter=autocomplete_chapter)  # one call per choice type (int, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def read(self, interaction: Interaction, chapter: app_commands.Range[int, 1, MAX_ID] | None = None,
                   story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            found, _ = await story_for(s, interaction, story, Need.SEE)
            path = await repo.active_path(s, found.id)
            chapters = [c.chapter for c in await repo.path_chapters(s, found.id)]
        if not path:
            await answer(interaction, msg.READER_EMPTY)
            return
        position = {c.id: n for n, c in enumerate(chapters, 1)}
        names = [chapter_name(c) for c in chapters]
        scenes = [ReadScene(n, position.get(p.chapter_id, 1), names[position.get(p.chapter_id, 1) - 1],
                            shorten(p.variant.instruction, 200), p.variant.content)
                  for n, p in enumerate(path, 1)]
        view = ReaderView(found.title, reader_pages(scenes, split_text), names)
        if chapter is not None:
            wanted = next((n for n, c in enumerate(chapters, 1) if c.number == chapter), None)
            if wanted is None:
                await answer(interaction, msg.READER_NO_CHAPTER.format(number=chapter, count=len(chapters)))
                return
            view = ReaderView(found.title, view.pages, names, start=view.first_page_of(wanted))
        view.message = await interaction.followup.send(embed=view.embed(), view=view, ephemeral=True,
                                                       allowed_mentions=NO_PINGS, wait=True)

    @story.command(name="tree", description="The story's branches: which scenes have other versions")
    @app_commands.autocomplete(story=autocomplete_story)
    async def tree(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            found, _ = await story_for(s, interaction, story, Need.SEE)
            outline = await repo.story_outline(s, found.id)
        embed = discord.Embed(title=shorten(found.title, 256), description=tree_text(outline))
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_PINGS)

    @story.command(name="edit", description="Change a story's title, genre, tone, world or premise")
    @app_commands.autocomplete(story=autocomplete_story)
    async def edit(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        async def read() -> Story:
            async with self.db.transaction() as s:
                return (await story_for(s, interaction, story, Need.MODERATE))[0]

        found = await before_a_modal(read())
        await interaction.response.send_modal(EditStoryModal(self, found))

    async def edit_story(self, interaction: Interaction, story_id: int, details: stories.StoryDetails) -> None:
        async def work() -> Story:
            async with self.db.transaction() as s:
                found, who = await story_for(s, interaction, story_id, Need.MODERATE)
                return await stories.edit_details(s, found.id, who.actor, details)

        story = await within_the_deadline(interaction, work())
        renamed = ""
        try:
            thread = await self.player.channel_of(story) if story.thread_id else None
        except NotFound:
            thread = None  # the thread is gone: nothing to rename
        if isinstance(thread, discord.Thread) and thread.name != story.title[:100]:
            try:  # the thread's name follows the title
                await within_global_budget(self.bot.scheduler, lambda: thread.edit(name=story.title[:100]))
            except discord.HTTPException as exc:
                log.info("could not rename thread %s: %s", thread.id, exc)
                renamed = " " + msg.STORY_EDIT_NOT_RENAMED
        await answer(interaction, msg.STORY_EDITED.format(title=story.title) + renamed)

    @story.command(name="notify", description="A DM when a group story you play has a new scene (off by default)")
    @app_commands.describe(on="True: a DM for every new scene and vote; False: none (leave out to see)",
                           story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def notify(self, interaction: Interaction, on: bool | None = None, story: StoryOption | None = None) -> None:
        async def work() -> str:
            async with self.db.transaction() as s:
                found, who = await story_for(s, interaction, story, Need.PLAY if on is not None else Need.SEE)
                if on is None:
                    member = await repo.get_member(s, found.id, who.user.id)
                    asked = member is not None and member.notify
                    return (msg.NOTIFY_STATE_ON if asked else msg.NOTIFY_STATE_OFF).format(title=found.title)
                await stories.set_notify(s, found.id, who.user.id, on)
                return (msg.NOTIFY_ON if on else msg.NOTIFY_OFF).format(title=found.title)

        await answer(interaction, await within_the_deadline(interaction, work()))

    @story.command(name="note", description="The author's note: steers every scene (\"keep it grim\")")
    @app_commands.describe(text="The note to the storyteller (not part of the story)",
                           clear="Remove the author's note", story=STORY_OPTION_HELP)
    @app_commands.autocomplete(story=autocomplete_story)
    async def note(self, interaction: Interaction, text: app_commands.Range[str, 1, AUTHOR_NOTE_MAX] | None = None,
                   clear: bool = False, story: StoryOption | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.db.transaction() as s:
            if text is None and not clear:
                found, _ = await story_for(s, interaction, story, Need.SEE)
                shown = found.author_note
                reply = (msg.NOTE_SHOWN.format(title=found.title, note=shown) if shown
                          else msg.NOTE_NONE.format(title=found.title))
            else:
                found, who = await story_for(s, interaction, story, Need.MODERATE)
                changed = await stories.set_author_note(s, found.id, who.actor, "" if clear else text or "")
                reply = (msg.NOTE_SET.format(title=changed.title, note=changed.author_note) if changed.author_note
                          else msg.NOTE_CLEARED.format(title=changed.title))
        await interaction.followup.send(reply, ephemeral=True, allowed_mentions=NO_PINGS)

    @story.command(name="end", description="End a story (it stays readable; nothing is deleted)")
    @app_commands.autocomplete(story=autocomplete_story)
    async def end(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        async def work() -> Story:
            async with self.db.transaction() as s:
                found, who = await story_for(s, interaction, story, Need.MODERATE)
                return await stories.end(s, found.id, who.actor)

        # Every handler that touches the database answers within Discord's 3 s, however
        # slow the database is (deferred after a second, then a followup).
        ended = await within_the_deadline(interaction, work(), ephemeral=False)
        await answer(interaction, msg.STORY_ENDED_NOW.format(title=ended.title), ephemeral=False)
        await self._close_thread(ended)

    async def _close_thread(self, story: Story) -> None:
        """An ended story's thread is archived and locked: nothing in it looks playable
        (Kahani may lock only a thread it may manage; else it is only archived)."""
        if story.thread_id is None:
            return
        try:
            thread = await self.player.channel_of(story)
        except NotFound:
            return
        if not isinstance(thread, discord.Thread):
            return
        for lock in (True, False):
            try:
                await within_global_budget(self.bot.scheduler,
                                           lambda lock=lock: thread.edit(archived=True, locked=lock))
                return
            except discord.Forbidden:
                continue
            except discord.HTTPException as exc:
                log.info("could not archive the thread of ended story %s: %s", story.id, exc)
                return

    @story.command(name="delete", description="Delete a story and every scene of it, for good")
    @app_commands.autocomplete(story=autocomplete_story)
    async def delete(self, interaction: Interaction, story: StoryOption | None = None) -> None:
        async def work() -> Story:
            async with self.db.transaction() as s:
                return (await story_for(s, interaction, story, Need.MODERATE))[0]

        found = await within_the_deadline(interaction, work())
        await answer(interaction, msg.STORY_DELETE_CONFIRM.format(title=found.title),
                     view=ConfirmDelete(self, found.id, interaction.user.id))

    @story.command(name="settings", description="Change a story's scene length, point of view or recaps")
    @app_commands.describe(recap_after="Hours of quiet after which \"Previously on…\" comes before the next scene "
                                       f"(0: never; default {recap.DEFAULT_HOURS})")
    @app_commands.choices(length=LENGTH_CHOICES, pov=POV_CHOICES)
    @app_commands.autocomplete(story=autocomplete_story)
    async def settings(self, interaction: Interaction, length: str | None = None,
                       pov: str | None = None, recap_after: app_commands.Range[int, 0, recap.MAX_HOURS] | None = None,
                       story: StoryOption | None = None) -> None:
        async def work() -> str:
            async with self.db.transaction() as s:
                found, who = await story_for(s, interaction, story, Need.MODERATE)
                found = await stories.change_settings(s, found.id, who.actor, scene_length=length, point_of_view=pov,
                                                      recap_after_hours=recap_after)
                text = msg.STORY_SETTINGS.format(title=found.title, length=found.scene_length,
                                                 pov=found.point_of_view)
                after = recap.recap_after(found)
                text += "\n" + msg.RECAP_SETTING.format(
                    hours=f"{after.total_seconds() / 3600:g} h" if after else msg.RECAP_OFF)
                if found.mode == StoryMode.GROUP.value:  # where the vote settings are (/story vote-settings)
                    text += "\n" + settings_text(found.title, VoteSettings.of(found))
                return text

        await send_ephemeral(interaction, await within_the_deadline(interaction, work()))

    @story.command(name="export", description="The story as a file: Markdown, HTML, EPUB or PDF")
    @app_commands.describe(format="The file's format", whole_tree="Every version and branch too (Markdown/HTML)",
                           summaries="Add the chapter summaries at the end",
                           public="Post the file here for everyone (default: only you see it)")
    @app_commands.choices(format=[app_commands.Choice(name=n, value=v) for n, v in (
        ("Markdown", "markdown"), ("EPUB (e-book)", "epub"), ("PDF", "pdf"), ("HTML (web page)", "html"))])
    @app_commands.autocomplete(story=autocomplete_story)
    async def export(self, interaction: Interaction, format: str, whole_tree: bool = False,
                     summaries: bool = False, public: bool = False, story: StoryOption | None = None) -> None:
        # Imported here so that this command stays one self-contained block of the cog.
        import tempfile

        from core.export import ExportError, ExportFormat, check_fits, export_story

        fmt = ExportFormat.parse(format)
        if whole_tree and not fmt.streams:
            raise ExportError(msg.EXPORT_TREE_FORMATS)
        async def check() -> Story:
            async with self.db.transaction() as s:
                found, who = await story_for(s, interaction, story, Need.SEE)
                if public and not self._may_post_publicly(interaction, found):
                    raise NotAllowed(msg.EXPORT_PRIVATE_NOT_PUBLIC)
                if self._exports.locked():  # as many being built as this process allows
                    raise KahaniError(msg.EXPORT_BUSY)
                await cooldowns.take(s, "export", who.user.id, now=utcnow(),
                                     every=timedelta(seconds=self.bot.settings.export_cooldown_seconds))
                return found

        found = await within_the_deadline(interaction, check())
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=not public, thinking=True)
        async with self._exports:
            with tempfile.TemporaryFile() as file:
                # Stopped as soon as it passes the limit Discord gave this interaction (the
                # channel's, boosts included), not after the whole file is written.
                result = await export_story(self.db, found.id, fmt, file, whole_tree=whole_tree, summaries=summaries,
                                            max_bytes=interaction.filesize_limit)
                check_fits(result, interaction.filesize_limit, whole_tree=whole_tree, story_id=found.id)
                file.seek(0)
                text = msg.EXPORT_READY.format(title=discord.utils.escape_markdown(result.title),
                                               scenes=result.scenes, format=fmt.label)
                await interaction.followup.send(text, file=discord.File(file, result.filename), ephemeral=not public,
                                                allowed_mentions=NO_PINGS)

    @staticmethod
    def _may_post_publicly(interaction: Interaction, story: Story) -> bool:
        """A story only its members may see (private thread, invite-only table) is
        posted only in its own thread, where only they read it; others anywhere."""
        facts = access.facts_of(story, None, private_thread=thread_view(interaction, story).private)
        return not access.members_only(facts) or interaction.channel_id == (story.thread_id or story.channel_id)

    # --- group stories: who plays, and how votes work ------------------------------------

    @story.command(name="invite", description="Let someone vote in a group story (needed at an invite-only table)")
    @app_commands.describe(player="Who may vote", story="Which story (default: the story of this thread)")
    @app_commands.autocomplete(story=autocomplete_story)
    async def invite(self, interaction: Interaction, player: discord.User,
                     story: StoryOption | None = None) -> None:
        async def work() -> tuple[str, int | None, int | None]:
            async with self.db.transaction() as s:
                found, who, invited = await self._story_and_player(s, interaction, story, player)
                found = await stories.invite(s, found.id, who.actor, invited.id)
                return found.title, found.thread_id, found.guild_id

        title, thread_id, guild_id = await within_the_deadline(interaction, work())
        await self._add_to_private_thread(guild_id, thread_id, player)
        await send_ephemeral(interaction, msg.MEMBER_INVITED.format(user=player.mention, title=title))

    async def retire_thread(self, thread_id: int) -> None:
        """A deleted story's thread goes too: deleted if the bot may (Manage Threads),
        else archived and locked, so nobody plays on in a thread whose story is gone."""
        thread = self.bot.get_channel(thread_id)
        if not isinstance(thread, discord.Thread):
            return
        try:
            await thread.delete()
            return
        except discord.Forbidden:
            pass
        except discord.HTTPException as exc:
            log.info("could not delete thread %s of a deleted story: %s", thread_id, exc)
            return
        try:
            await thread.edit(archived=True, locked=True)
        except discord.HTTPException as exc:
            log.info("could not archive thread %s of a deleted story: %s", thread_id, exc)

    def _private_thread(self, guild_id: int | None, thread_id: int | None) -> discord.Thread | None:
        guild = self.bot.get_guild(guild_id) if guild_id else None
        thread = guild.get_thread(thread_id) if guild is not None and thread_id else None
        return thread if thread is not None and thread.type == discord.ChannelType.private_thread else None

    async def _add_to_private_thread(self, guild_id: int | None, thread_id: int | None, player: discord.User) -> None:
        """An invited player of a story in a private thread is added to the thread, or
        they could not see where they are invited to play."""
        thread = self._private_thread(guild_id, thread_id)
        if thread is None:
            return
        try:
            await thread.add_user(player)
        except discord.HTTPException as exc:
            log.warning("could not add invited user %s to private thread %s: %s", player.id, thread_id, exc)
            raise KahaniError(msg.MEMBER_INVITED_NOT_ADDED.format(user=player.mention)) from exc

    @story.command(name="kick", description="Take someone off a group story's table: their votes stop counting")
    @app_commands.describe(player="Who to remove", story="Which story (default: the story of this thread)")
    @app_commands.autocomplete(story=autocomplete_story)
    async def kick(self, interaction: Interaction, player: discord.User, story: StoryOption | None = None) -> None:
        async def work() -> tuple[int, int, str, discord.Thread | None]:
            async with self.db.transaction() as s:
                found, who, kicked = await self._story_and_player(s, interaction, story, player)
                found = await stories.kick(s, found.id, who.actor, kicked.id)
                return found.id, kicked.id, found.title, self._private_thread(found.guild_id, found.thread_id)

        story_id, user_id, title, thread = await within_the_deadline(interaction, work())
        if thread is not None:  # a private table's thread is for its players only
            try:
                await thread.remove_user(player)
            except discord.HTTPException as exc:
                log.warning("could not remove kicked user %s from private thread %s: %s", player.id, thread.id, exc)
        await send_ephemeral(interaction, msg.MEMBER_KICKED.format(user=player.mention, title=title))
        await self.player.ballots.after_kick(story_id, user_id)

    async def _story_and_player(self, s: Any, interaction: Interaction, story_id: int | None,
                                player: discord.User) -> tuple[Story, Caller, Any]:
        """The story a command is about, if its user may moderate it, and the player."""
        found, who = await story_for(s, interaction, story_id, Need.MODERATE)
        return found, who, await repo.get_or_create_user(s, player.id, player.display_name)

    @story.command(name="vote-settings", description="How a group story votes: time to vote, own actions, who closes")
    @app_commands.describe(
        seconds=f"How long each vote stays open, in seconds ({MIN_DURATION}–{MAX_DURATION}; default 60)",
        own_actions="Players may propose their own action as a 5th option",
        host_closes="Only the host (or a moderator) may close a vote early",
        invite_only="Only invited players may vote (see /story invite)",
        readers_wait="Seconds after a scene appears before \"everyone voted\" may close its vote (default 10)",
        story="Which story (default: the story of this thread)")
    @app_commands.autocomplete(story=autocomplete_story)
    async def vote_settings(self, interaction: Interaction,
                            seconds: app_commands.Range[int, MIN_DURATION, MAX_DURATION] | None = None,
                            own_actions: bool | None = None, host_closes: bool | None = None,
                            invite_only: bool | None = None,
                            readers_wait: app_commands.Range[int, 0, MAX_MIN_OPEN] | None = None,
                            story: StoryOption | None = None) -> None:
        async def work() -> str:
            async with self.db.transaction() as s:
                found, _ = await story_for(s, interaction, story, Need.MODERATE)
                if found.mode != StoryMode.GROUP.value:
                    raise KahaniError(msg.GROUP_ONLY)
            settings = await VoteService(self.db).update_settings(
                found.id, duration=seconds, own_actions=own_actions, host_closes=host_closes,
                open_table=None if invite_only is None else not invite_only, min_open=readers_wait)
            return settings_text(found.title, settings)

        await send_ephemeral(interaction, await within_the_deadline(interaction, work()))

async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Stories(bot))
