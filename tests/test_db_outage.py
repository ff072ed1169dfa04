"""The story database goes away mid-session (PostgreSQL behind a proxy that cuts every
connection and refuses new ones) and comes back: players are told "not reachable, try
again" with a reference, nothing crashes, and play goes on by itself once it is back."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from core import messages as msg
from tests.conftest import _pg, require_postgres
from tests.discord_standin import AdjustableClock, DiscordStandin
from tests.fakes.llm import FakeLLM
from tests.fakes.tcpproxy import TcpProxy
from tests.harness import ephemeral_answer, running_bot, scripted_scene, submit_new_story, wait_scene

REF = "(ref "


@pytest.fixture
def postgres() -> None:
    require_postgres()  # (outside the test's event loop: it checks with a loop of its own)


async def test_the_database_going_away_gets_a_clear_answer_and_play_resumes_when_it_is_back(postgres: None) -> None:
    url = make_url(await _pg.fresh())
    try:
        async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy, \
                DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=None) as llm:
            guild = standin.add_guild("Tavern")
            general = standin.add_channel(guild, "stories")
            alice = standin.add_user("alice", guild=guild)
            via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            async with running_bot(standin, via_proxy, llm_base_url=llm.base_url) as running:
                llm.script(scripted_scene("The harbour lights go out one by one."))
                await ephemeral_answer(standin, await submit_new_story(standin, alice, general, "Dark Harbour",
                                                                       mode="solo"))
                thread = next(c for c in standin.channels.values() if c.is_thread and c.name == "Dark Harbour")
                first = await wait_scene(standin, thread)

                await proxy.down()
                info = await ephemeral_answer(standin, await standin.slash(alice, thread, "story info"))
                assert info.startswith(msg.DB_UNREACHABLE.split("(ref")[0]) and REF in info
                click = await standin.click(alice, first, "1. Climb the stair")
                refused = await ephemeral_answer(standin, click)
                assert REF in refused and "not reachable" in refused
                assert len(thread.messages) == 2  # the intro and the scene: nothing half-made

                await proxy.up()  # back: the next click plays on
                llm.script(scripted_scene("A lantern answers from the lighthouse."))
                await (await standin.click(alice, first, "1. Climb the stair")).wait_response()
                second = await wait_scene(standin, thread, after=1)
                assert second.text.startswith("-# → Climb the stair\nA lantern answers")
                info = await ephemeral_answer(standin, await standin.slash(alice, thread, "story info"))
                assert REF not in info and "Context used" in info
                bot = running.bot
                assert bot.summaries._task is not None and not bot.summaries._task.done()  # loops still run
            standin.assert_clean()
    finally:
        await _pg.drop(url.render_as_string(hide_password=False))

