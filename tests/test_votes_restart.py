"""A bot process killed (SIGKILL) in the middle of a group vote, whose deadline passes
while it is down: the votes are kept, the vote closes when the bot starts again, and
the story goes on exactly once."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core import repository as repo
from core.db import Database
from core.models import Ballot, Vote, utcnow
from tests.discord_standin import DiscordStandin
from tests.discord_standin.models import Message
from tests.fakes.llm import FakeLLM
from tests.harness import BotProcess, tally


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "kahani.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def scene(text: str) -> str:
    return text + "\n\n### Choices\n1. Climb\n2. Call out\n3. Wait\n4. Leave"


def choice_buttons(message: Message) -> list[dict]:
    return [c for c in message.component_items() if c.get("custom_id", "").startswith("kahani:v1:choose:")]


async def test_a_vote_whose_deadline_passed_while_the_bot_was_down_closes_on_start_up_once(
        sqlite_url: str) -> None:
    async with DiscordStandin() as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        host = standin.add_user("host", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        carol = standin.add_user("carol", guild=guild)
        llm.script(scene("The lighthouse door creaks open."))

        first_bot = await BotProcess(standin, sqlite_url, llm_base_url=llm.base_url).start()
        try:
            await (await standin.slash(host, general, "story new")).wait_response()
            [modal] = standin.modals_for(host)
            await (await standin.submit_modal(host, modal, {"Title": "Tides"})).wait_response()
            thread = await standin.wait_until(
                lambda: next((c for c in standin.channels.values() if c.is_thread and c.name == "Tides"), None),
                what="the thread")
            first: Message = await standin.wait_until(
                lambda: next((m for m in thread.messages if choice_buttons(m)), None), timeout=10,
                what="the first scene")
            await standin.wait_until(lambda: tally(first), what="the tally")
            await (await standin.click(bob, first, "2. Call out")).wait_response()
            await (await standin.click(carol, first, "2. Call out")).wait_response()
            first_bot.kill()
            assert await first_bot.wait() == -9
        finally:
            await first_bot.close()

        db = Database.from_url(sqlite_url)
        try:
            async with db.transaction() as s:
                [story] = await repo.list_stories(s)
                [ballot] = (await s.scalars(select(Ballot))).all()
                assert ballot.closed_at is None
                assert len((await s.scalars(select(Vote))).all()) == 2  # the votes survived
                # The deadline passes while the bot is down.
                await s.execute(update(Ballot).values(deadline=utcnow() - timedelta(seconds=5)))

            llm.script(scene("Your voice echoes from the top of the stair."))
            async with BotProcess(standin, sqlite_url, llm_base_url=llm.base_url) as second_bot:
                second: Message = await standin.wait_until(
                    lambda: next((m for m in thread.messages if m is not first and choice_buttons(m)), None),
                    timeout=15, what="the scene the vote chose")
                assert second.text.startswith("-# → Call out\n")
                await standin.wait_until(lambda: all(c.get("disabled") for c in first.component_items()),
                                         what="the closed vote's buttons greyed out")
                async with db.read() as s:
                    path = await repo.active_path(s, story.id)
                    ballots = (await s.scalars(select(Ballot).order_by(Ballot.id))).all()
                assert len(path) == 2  # the story went on once
                assert (ballots[0].closed_by, ballots[0].winner_position) == ("deadline", 2)
                assert [b.closed_at is None for b in ballots] == [False, True]  # the new scene's vote
                assert len(llm.chat_requests) == 2
                assert await second_bot.stop() == 0
        finally:
            await db.dispose()
        standin.assert_clean()
