"""The metrics and health endpoint (METRICS_PORT): the real bot against the Discord
stand-in, the fake LLM and the fake Kokoro plays a scene; /metrics is scraped over HTTP
and /healthz says what is reachable."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.app import KahaniBot
from bot.settings import SettingsError, load_settings
from bot.ui.audio import PlaybackStats
from tests.discord_standin import AdjustableClock, DiscordStandin
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.fakes.kokoro import FakeKokoro
from tests.fakes.llm import FakeLLM
from tests.harness import running_bot
from tests.test_play import World, new_story, scene, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MetricsWorld(World):
    port: int

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}{path}") as response:
            return response.status, await response.text()

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = await self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body) for s in family.samples}


def total(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for (n, have), value in samples.items()
               if n == name and set(labels.items()) <= set(have))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[MetricsWorld]:
    path = tmp_path_factory.mktemp("metrics") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    port = free_port()
    async with (
        DiscordStandin(clock=AdjustableClock()) as standin,
        FakeLLM(token_rate=400) as llm,
        FakeKokoro() as kokoro,
    ):
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=llm.base_url,
                               kokoro_url=kokoro.base_url, metrics_port=port) as running:
            yield MetricsWorld(standin, running.bot, llm, guild, general, alice, bob, port)


@pytest.fixture(scope="module")
def standin(world: MetricsWorld) -> DiscordStandin:
    return world.standin


async def test_a_played_scene_moves_the_counters_on_metrics(world: MetricsWorld) -> None:
    before = await world.samples()
    assert total(before, "kahani_generations_started_total") == 0

    world.llm.script(scene("The lighthouse door creaks open. Salt wind fills the stair."))
    thread = await new_story(world, world.alice, world.general, "The Lighthouse", mode="group")
    await wait_scene(world, thread)

    after = await world.samples()
    assert total(after, "kahani_generations_started_total", kind="open") == 1
    assert total(after, "kahani_generations_started_total") == 1
    assert total(after, "kahani_generations_finished_total", kind="open") == 1
    assert total(after, "kahani_generations_failed_total") == 0
    assert total(after, "kahani_generation_first_token_seconds_count") == 1
    assert total(after, "kahani_generation_tokens_per_second_count") == 1
    assert total(after, "kahani_generation_tokens_per_second_sum") > 0
    assert total(after, "kahani_discord_rest_requests_total") > total(before, "kahani_discord_rest_requests_total")
    assert total(after, "kahani_discord_rest_requests_total", method="PATCH") > 0  # the streamed edits
    assert total(after, "kahani_discord_rest_requests_total", status="429") == 0
    assert total(after, "kahani_discord_rest_ratelimited_total") == 0


async def test_a_vote_close_and_the_next_scene_are_counted(world: MetricsWorld) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    first = await wait_scene(world, thread)
    world.llm.script(scene("You climb. The keeper's logbook lies open on the landing."))
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    await (await world.standin.click(world.alice, first, "Close vote")).wait_response()  # a table of one
    await wait_scene(world, thread, after=1)

    samples = await world.samples()
    assert total(samples, "kahani_vote_closes_total", reason="host") == 1
    assert total(samples, "kahani_generations_finished_total", kind="choose") == 1
    assert total(samples, "kahani_generation_first_token_seconds_count") == 2


async def test_ended_narrations_feed_the_underrun_counter(world: MetricsWorld) -> None:
    # The narration cog's "job ended" callback (cogs/narration.py), as the player thread's
    # after() calls it, with the job's PlaybackStats.
    job = SimpleNamespace(source=SimpleNamespace(stats=PlaybackStats(audio_frames=500, underruns=3)), chunks_read=[])
    world.bot.get_cog("Narration")._log_finished(world.guild.id, job)

    samples = await world.samples()
    assert total(samples, "kahani_narrations_finished_total") == 1
    assert total(samples, "kahani_narration_underruns_total") == 3


async def test_healthz_reports_database_llm_and_kokoro_ok(world: MetricsWorld) -> None:
    assert world.port in listening_ports()
    status, body = await world.get("/healthz")
    assert status == 200
    assert json.loads(body) == {"database": "ok", "llm": "ok", "kokoro": "ok"}


async def test_healthz_says_error_for_a_dead_llm_and_kokoro_but_stays_200(sqlite_template: Path, tmp_path: Path,
                                                                        closed_port: int) -> None:
    dead = f"http://127.0.0.1:{closed_port}"  # nothing listens here
    path = tmp_path / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    port = free_port()
    async with (
        DiscordStandin() as standin,
        running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=dead + "/v1", kokoro_url=dead,
                    metrics_port=port),
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"database": "ok", "llm": "error", "kokoro": "error"}
    assert port not in listening_ports()  # closed on shutdown


def listening_ports() -> set[int]:
    """TCP ports this process listens on (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs Linux /proc to list listening sockets")
async def test_metrics_are_off_by_default(sqlite_template: Path, tmp_path: Path) -> None:
    assert load_settings(_env_file=None).metrics_port is None
    path = tmp_path / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with DiscordStandin() as standin:
        ports = listening_ports()
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}") as running:
            assert running.settings.metrics_port is None
            assert listening_ports() == ports  # the bot opened no port of its own
            assert isinstance(running.bot, KahaniBot) and running.bot.metrics is not None  # counted, not served


@pytest.mark.parametrize("port", ["0", "65536", "http"])
async def test_metrics_port_must_be_a_port(port: str) -> None:
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        load_settings(_env_file=None, metrics_port=port)
