"""``/story export`` end to end: the real bot against the Discord stand-in sends the file
as an attachment within the interaction's ``attachment_size_limit``."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from pypdf import PdfReader

from bot.app import KahaniBot
from core import messages as msg
from core import repository as repo
from core.db import Database
from tests.discord_standin import Channel, DiscordStandin, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message
from tests.harness import running_bot
from tests.test_export import PATH_MARKERS, build_story, in_order

pytestmark = pytest.mark.asyncio(loop_scope="module")
LIMIT = 10 * 1024 * 1024  # what the stand-in's interactions carry as attachment_size_limit


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    channel: Channel
    alice: User
    bob: User

    @property
    def db(self) -> Database:
        return self.bot.db


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("export") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with DiscordStandin() as standin:
        guild = standin.add_guild("Library")
        channel = standin.add_channel(guild, "books")
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        # Exports one after another: the cooldown has its own test (tests/test_faults.py).
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", export_cooldown_seconds=0) as running:
            yield World(standin, running.bot, channel, alice, bob)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def answer(world: World, rec: InteractionRecord) -> Message:
    """The deferred command's answer (its first followup)."""
    assert (await rec.wait_response()).type == 5  # deferred: building a book takes a moment
    await world.standin.wait_until(lambda: rec.followups, timeout=30, what="the export")
    return rec.followups[-1]


async def test_story_export_sends_the_pdf_privately(world: World) -> None:
    built = await build_story(world.db, owner_discord_id=world.alice.id)
    rec = await world.standin.slash(world.alice, world.channel, "story export", format="pdf", story=built.story_id)
    reply = await answer(world, rec)
    assert reply.flags & EPHEMERAL and reply.ephemeral_for is world.alice
    assert reply.content == "📖 **The Lighthouse 灯台** — 6 scenes as PDF."
    [attachment] = reply.attachments
    assert attachment.filename == "the-lighthouse-灯台.pdf" and 0 < len(attachment.data) <= LIMIT
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(attachment.data)).pages)
    assert in_order(text, PATH_MARKERS)


async def test_story_export_public_posts_the_epub_in_the_channel(world: World) -> None:
    built = await build_story(world.db, owner_discord_id=world.alice.id)
    rec = await world.standin.slash(world.alice, world.channel, "story export", format="epub", public=True,
                                    summaries=True, story=built.story_id)
    reply = await answer(world, rec)
    assert not reply.flags & EPHEMERAL and reply in world.channel.messages
    [attachment] = reply.attachments
    archive = zipfile.ZipFile(io.BytesIO(attachment.data))
    assert archive.namelist()[0] == "mimetype" and "EPUB/summaries.xhtml" in archive.namelist()


async def test_whole_tree_as_pdf_is_refused_before_any_work(world: World) -> None:
    built = await build_story(world.db, owner_discord_id=world.alice.id)
    rec = await world.standin.slash(world.alice, world.channel, "story export", format="pdf", whole_tree=True,
                                    story=built.story_id)
    response = await rec.wait_response()
    assert response.data["content"] == msg.EXPORT_TREE_FORMATS and response.data["flags"] & EPHEMERAL


async def test_a_file_over_the_channel_limit_gets_a_smaller_option(world: World) -> None:
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, world.alice.id, "alice")
        story = await repo.create_story(s, owner, "Epic", mode="solo")
        parent = None
        for n in range(110):  # 110 scenes of 100 KB: an 11 MB file
            _, variant = await repo.add_scene(s, story.id, parent, f"Scene {n}. " + "word " * 20_000)
            parent = variant.id
    rec = await world.standin.slash(world.alice, world.channel, "story export", format="markdown", story=story.id)
    reply = await answer(world, rec)
    assert not reply.attachments and reply.flags & EPHEMERAL
    # Stopped when the file passed the limit, not after all of it was written.
    assert reply.content == msg.EXPORT_TOO_BIG_WHILE_WRITING.format(
        format="Markdown", limit="10.0 MB", smaller=msg.EXPORT_TRY_CLI.format(story_id=story.id))

    rec = await world.standin.slash(world.bob, world.channel, "story export", format="markdown", story=story.id)
    assert (await rec.wait_response()).data["content"] == msg.STORY_NOT_FOUND  # someone else's: as if none
