"""A bot process killed (SIGKILL) in the middle of a scene, then started again: the story
is exactly as it was, the interrupted message says so and offers Retry, and Retry works."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import Summary, SummaryJob, SummaryKind, utcnow
from core.repository import jobs
from tests.discord_standin import DiscordStandin
from tests.discord_standin.models import Message
from tests.fakes.llm import SUMMARY_PROMPT_START, FakeLLM, Fault, tags_in
from tests.fakes.server import RecordedRequest
from tests.harness import BotProcess

LONG = " ".join(["The tide climbs the lighthouse rocks, grey and patient."] * 40)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "kahani.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def test_a_killed_bot_leaves_no_half_scene_and_the_next_one_offers_retry(sqlite_url: str) -> None:
    async with DiscordStandin() as standin, FakeLLM(token_rate=40) as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        llm.script(LONG + "\n\n### Choices\n1. a\n2. b\n3. c\n4. d")  # ~10 s at 40 tokens/s

        first = await BotProcess(standin, sqlite_url, llm_base_url=llm.base_url).start()
        try:
            await (await standin.slash(alice, general, "story new")).wait_response()
            [modal] = standin.modals_for(alice)
            await (await standin.submit_modal(alice, modal, {"Title": "Tides"})).wait_response()
            thread = await standin.wait_until(
                lambda: next((c for c in standin.channels.values() if c.is_thread and c.name == "Tides"), None),
                what="the thread")
            scene: Message = await standin.wait_until(
                lambda: next((m for m in thread.messages if "The tide climbs" in m.text), None),
                timeout=10, what="the scene streaming")
            first.kill()  # mid-stream
            assert await first.wait() == -9
        finally:
            await first.close()

        db = Database.from_url(sqlite_url)
        try:
            async with db.read() as s:
                [story] = await repo.list_stories(s)
                assert await repo.active_path(s, story.id) == []  # no half scene
                lease = await repo.get_lease(s, story.id)
                assert lease is not None and lease.frontend_ref.startswith(f"{thread.id}:{scene.id}:")

            async with BotProcess(standin, sqlite_url, llm_base_url=llm.base_url) as second:
                await standin.wait_until(lambda: msg.INTERRUPTED in scene.text, timeout=15,
                                         what="the message marked interrupted")
                assert any(c.get("label") == "Retry" for c in scene.component_items())
                async with db.read() as s:
                    assert await repo.get_lease(s, story.id) is None
                    assert await repo.active_path(s, story.id) == []

                llm.script("The lamp flares back to life.\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
                await (await standin.click(alice, scene, "Retry")).wait_response()
                await standin.wait_until(
                    lambda: "The lamp flares back to life." in scene.text
                    and any(c.get("label") == "1. a" for c in scene.component_items()),
                    timeout=10, what="the retried scene")
                async with db.read() as s:
                    path = await repo.active_path(s, story.id)
                    assert [p.variant.content for p in path] == ["The lamp flares back to life."]
                assert await second.stop() == 0
        finally:
            await db.dispose()
        standin.assert_clean()


async def test_a_stopped_bot_marks_the_scene_it_was_writing_and_frees_the_story(sqlite_url: str) -> None:
    async with DiscordStandin() as standin, FakeLLM(token_rate=40) as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        llm.script(LONG + "\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
        async with BotProcess(standin, sqlite_url, llm_base_url=llm.base_url) as bot:
            await (await standin.slash(alice, general, "story new")).wait_response()
            [modal] = standin.modals_for(alice)
            await (await standin.submit_modal(alice, modal, {"Title": "Ebb"})).wait_response()
            thread = await standin.wait_until(
                lambda: next((c for c in standin.channels.values() if c.is_thread and c.name == "Ebb"), None),
                what="the thread")
            scene: Message = await standin.wait_until(
                lambda: next((m for m in thread.messages if "The tide climbs" in m.text), None),
                timeout=10, what="the scene streaming")
            assert await bot.stop() == 0  # SIGTERM mid-stream
        assert msg.INTERRUPTED_SHUTDOWN in scene.text
        assert any(c.get("label") == "Retry" for c in scene.component_items())
        db = Database.from_url(sqlite_url)
        try:
            async with db.read() as s:
                [story] = await repo.list_stories(s)
                assert await repo.get_lease(s, story.id) is None
                assert await repo.active_path(s, story.id) == []
        finally:
            await db.dispose()
        standin.assert_clean()


async def test_a_summary_job_survives_a_killed_bot_and_runs_once_after_start_up(sqlite_url: str) -> None:
    """A chapter's summary is being written when the bot is killed (SIGKILL): the next
    bot takes the job over once the dead one's claim lapses, and it is written once."""
    db = Database.from_url(sqlite_url)
    async with DiscordStandin() as standin, FakeLLM() as llm:
        try:
            async with db.transaction() as s:
                owner = await repo.get_or_create_user(s, 42, "Asha")
                story = await repo.create_story(s, owner, "Tides")
                parent = None
                for depth in range(3):
                    _, variant = await repo.add_scene(s, story.id, parent, f"[#{depth}] The tide climbs.")
                    parent = variant.id
                assert parent is not None
                chapter_id = await repo.current_chapter_id(s, story.id)
                assert chapter_id is not None
                await repo.open_chapter(s, story.id, parent, summary=None)
                await jobs.schedule_summary(s, story.id, SummaryKind.CHAPTER, parent, chapter_id, now=utcnow())

            def summary_request(r: RecordedRequest) -> bool:
                body = r.body if isinstance(r.body, dict) else {}
                return str((body.get("messages") or [{}])[0].get("content", "")).startswith(SUMMARY_PROMPT_START)

            llm.script(fault=Fault.STALL_HEADERS, stall=60)  # the first bot's summary never comes
            env = {"SUMMARY_CLAIM_SECONDS": "2"}
            first = await BotProcess(standin, sqlite_url, llm_base_url=llm.base_url, env=env).start()
            try:
                await llm.wait_for_requests(summary_request, timeout=15)
                first.kill()
                assert await first.wait() == -9
            finally:
                await first.close()
            async with db.read() as s:
                [job] = await jobs.pending_jobs(s, story.id)
                assert (job.state, job.attempts) == ("running", 1)  # claimed by the dead bot

            async with BotProcess(standin, sqlite_url, llm_base_url=llm.base_url, env=env) as second:
                await llm.wait_for_requests(summary_request, count=2, timeout=15)
                async with asyncio.timeout(10):  # the job row is another process's write
                    while (await job_state(db, job.id)) != "done":
                        await asyncio.sleep(0.05)
                assert await second.stop() == 0
            async with db.read() as s:
                [job] = await s.scalars(select(SummaryJob))
                assert (job.state, job.attempts) == ("done", 2)
                summaries = list(await s.scalars(select(Summary)))
                assert len(summaries) == 1 and tags_in(summaries[0].content) == {0, 1, 2}
            assert len([r for r in llm.requests if summary_request(r)]) == 2  # the killed one, then once
        finally:
            await db.dispose()
        standin.assert_clean()


async def job_state(db: Database, job_id: int) -> str | None:
    async with db.read() as s:
        job = await jobs.get_job(s, job_id)
        return job.state if job else None
