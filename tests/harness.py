"""Run the real Kahani bot against the Discord stand-in: in this process, or as a
subprocess started the way users start it (``python -m bot run``).

In-process (fast; the test can reach the bot's objects)::

    async with running_bot(standin, database_url, llm_base_url=fake.base_url) as running:
        rec = await standin.slash(alice, general, "help")
        running.bot.db ...

``running_bot`` runs :func:`bot.app.run_bot` itself — migrations, resources, the bot,
the command sync — with ``KAHANI_TEST_FAST_START`` on and without signal handlers
(pytest keeps SIGINT). ``setup=`` adds test-only cogs before the command sync.

As a subprocess (start-up, signals, crashes, restarts)::

    async with BotProcess(standin, database_url) as proc:   # waits until ready
        ...
        assert await proc.stop() == 0                       # SIGTERM, waits for exit
    proc.kill()                                             # SIGKILL, e.g. mid-stream
    proc.stderr                                             # everything it logged

Both wait for events (the stand-in's IDENTIFY, the bot's "ready" log line), never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.app import KahaniBot, SetupHook, run_bot
from bot.settings import Settings, load_settings
from core.db import Database
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, User
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message, ModalRecord
from tests.fakes.llm import FakeLLM

ROOT = Path(__file__).resolve().parents[1]
# What the bot logs once discord.py dispatched on_ready (bot/app.py, KahaniBot.on_ready).
READY_LINE = "bot.app: ready as "
# Settings the parent's environment must not leak into a bot under test.
SETTING_NAMES = (
    "DISCORD_TOKEN", "DATABASE_URL", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_CONTEXT_LENGTH",
    "LLM_CONNECT_TIMEOUT", "LLM_FIRST_TOKEN_TIMEOUT", "LLM_IDLE_TIMEOUT", "KOKORO_URL", "DISCORD_API_BASE",
    "DISCORD_GATEWAY_URL", "SHARD_COUNT", "SHARD_IDS", "LOG_LEVEL", "KAHANI_TEST_FAST_START",
    "METRICS_PORT", "METRICS_HOST", "LLM_MAX_CONCURRENCY", "GENERATIONS_PER_USER_PER_MINUTE",
    "GENERATIONS_PER_GUILD_PER_MINUTE", "LOG_FORMAT", "DISCORD_GLOBAL_RATE",
)


# Bound by closed_port_address() and held open (never listening) until the process ends.
_closed_sockets: list[socket.socket] = []


@functools.cache
def closed_port_address() -> str:
    """``127.0.0.1:<port>`` where connections are refused for as long as this process runs.

    On the first call a socket is bound to a free port and kept open without listening,
    so nothing else can listen there (unlike 127.0.0.1:9, where something might). For
    addresses that outlive one test (module-scoped worlds, the harness default); a
    single test takes the ``closed_port`` fixture (tests/conftest.py) instead."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _closed_sockets.append(sock)
    return f"127.0.0.1:{sock.getsockname()[1]}"


def no_llm() -> str:
    """An LLM address where nothing listens: the bot starts and warns that the storyteller is down."""
    return f"http://{closed_port_address()}/v1"


def bot_env(standin: DiscordStandin, database_url: str, *, llm_base_url: str | None = None) -> dict[str, str]:
    """The settings (as environment variables) of a bot talking to ``standin``."""
    return {
        "DISCORD_TOKEN": standin.token,
        "DISCORD_API_BASE": standin.api_base,
        "DISCORD_GATEWAY_URL": standin.gateway_url,
        "DATABASE_URL": database_url,
        "LLM_BASE_URL": llm_base_url or no_llm(),
        "KAHANI_TEST_FAST_START": "1",
        # Tests run many generations at once and fast: no LLM queue and no per-user limit
        # unless a test asks for them (tests/test_llm_queue.py, tests/test_scale.py).
        "LLM_MAX_CONCURRENCY": "0",
        "GENERATIONS_PER_USER_PER_MINUTE": "0",
    }


def bot_settings(standin: DiscordStandin, database_url: str, *, llm_base_url: str | None = None,
                 **overrides: Any) -> Settings:
    """Settings for an in-process bot: the same values ``bot_env`` gives a subprocess."""
    values: dict[str, Any] = {k.lower(): v for k, v in bot_env(standin, database_url,
                                                              llm_base_url=llm_base_url).items()}
    values.update(shard_count=None, shard_ids=None, _env_file=None)
    values.update(overrides)
    return load_settings(**values)


@dataclass
class RunningBot:
    """A bot running in this process; ``ready_seconds`` is from run_bot() to on_ready."""

    bot: KahaniBot
    settings: Settings
    ready_seconds: float
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_bot(
    standin: DiscordStandin,
    database_url: str,
    *,
    llm_base_url: str | None = None,
    setup: SetupHook | None = None,
    ready_timeout: float = 10.0,
    **overrides: Any,
) -> AsyncIterator[RunningBot]:
    """Run :func:`bot.app.run_bot` against the stand-in until on_ready; stop it on exit.

    ``setup(bot)`` runs in setup_hook after the cogs are loaded and before the command
    sync; ``overrides`` are extra settings (``shard_count=2`` …)."""
    settings = bot_settings(standin, database_url, llm_base_url=llm_base_url, **overrides)
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY  # run_bot points discord.py at the stand-in
    loop = asyncio.get_running_loop()
    built: asyncio.Future[KahaniBot] = loop.create_future()

    async def _setup(bot: KahaniBot) -> None:
        built.set_result(bot)
        if setup is not None:
            await setup(bot)

    started = time.perf_counter()
    task = asyncio.create_task(run_bot(settings, handle_signals=False, setup=_setup), name="kahani-bot")
    try:
        bot = await _first(built, task, ready_timeout, "build the bot")
        ready = asyncio.ensure_future(bot.wait_until_ready())
        await _first(ready, task, ready_timeout - (time.perf_counter() - started), "become ready")
        yield RunningBot(bot, settings, time.perf_counter() - started, task)
    finally:
        if built.done() and not built.cancelled() and built.exception() is None:
            await built.result().close()
        else:
            task.cancel()
        try:
            await asyncio.wait_for(task, 10)
        except asyncio.CancelledError:
            pass
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


async def _first(wanted: asyncio.Future[Any], task: asyncio.Task[None], timeout: float, what: str) -> Any:
    """The result of ``wanted``, unless the bot's task ends (or the time runs out) first."""
    done, _ = await asyncio.wait({wanted, task}, timeout=max(timeout, 0.1), return_when=asyncio.FIRST_COMPLETED)
    if wanted in done:
        return wanted.result()
    wanted.cancel()
    if task in done:
        task.result()  # re-raise why the bot stopped
        raise AssertionError(f"the bot stopped before it could {what}")
    raise AssertionError(f"the bot did not {what} within {timeout:.1f}s")


class BotProcess:
    """``python -m bot run`` in a subprocess, talking to ``standin``.

    ``start()`` returns once the stand-in saw a new IDENTIFY and the bot logged that it
    is ready; ``stderr`` holds everything the process logged so far."""

    def __init__(self, standin: DiscordStandin, database_url: str, *, llm_base_url: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.standin = standin
        self.env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
        self.env["PYTHONPATH"] = str(ROOT)
        self.env.update(bot_env(standin, database_url, llm_base_url=llm_base_url))
        self.env.update(env or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cwd is None:  # not the repository: its .env must not apply
            self._tmp = tempfile.TemporaryDirectory(prefix="kahani-bot-")
            cwd = self._tmp.name
        self.cwd = Path(cwd)
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.ready_seconds: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def start(self, *, ready_timeout: float = 20.0) -> BotProcess:
        identifies = self.standin.gateway.identifies
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_stderr())
        await self.wait_for_log(READY_LINE, timeout=ready_timeout)
        self.ready_seconds = time.perf_counter() - started
        await self.standin.wait_until(lambda: self.standin.gateway.identifies > identifies, timeout=1.0,
                                      what="the subprocess bot's IDENTIFY")
        return self

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        await self.process.wait()
        self._changed.set()

    async def wait_for_log(self, text: str, *, timeout: float = 10.0) -> str:
        """The first stderr line containing ``text`` (waits for it; fails if the process ends)."""
        deadline = time.perf_counter() + timeout
        while True:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            if self._reader is None or self._reader.done():
                raise AssertionError(f"the bot exited ({self.returncode}) without logging {text!r}:\n{self.stderr}")
            self._changed.clear()
            remaining = deadline - time.perf_counter()
            try:
                await asyncio.wait_for(self._changed.wait(), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(f"the bot did not log {text!r} within {timeout}s:\n{self.stderr}") from None

    def send_signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the process dies on the spot (what a crash or an OOM kill looks like)."""
        self.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit (and its stderr to be read); its exit code."""
        assert self.process is not None and self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.process.returncode is not None
        return self.process.returncode

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit code."""
        self.terminate()
        return await self.wait(timeout)

    async def __aenter__(self) -> BotProcess:
        try:
            return await self.start()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def local_ports(self) -> set[int]:
        """The local ports of the TCP connections the process holds open: with the
        stand-in's ``peer`` of a request, which process sent it."""
        return set() if self.process is None else local_tcp_ports(self.process.pid)

    async def close(self) -> None:
        """Kill the process if it still runs, and clean up."""
        if self.process is not None and self.process.returncode is None:
            self.kill()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` holds open (Linux ``/proc``):
    its socket inodes, looked up in the network namespace's TCP tables."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()  # sl local_address rem_address st … uid timeout inode
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# --- a world to play in: the bot, a guild, two players, the fake LLM ------------------------


@dataclass
class PlayWorld:
    """A running bot with a server to play in (see :func:`play_world`)."""

    standin: DiscordStandin
    bot: KahaniBot
    llm: FakeLLM
    guild: Guild
    general: Channel
    alice: User
    bob: User

    @property
    def db(self) -> Database:
        return self.bot.db


@contextlib.asynccontextmanager
async def play_world(database_path: Path, *, llm: dict[str, Any] | None = None,
                     **overrides: Any) -> AsyncIterator[PlayWorld]:
    """The real bot on the migrated SQLite file ``database_path``, against a stand-in
    with one server ("Tavern", channel #stories, members alice and bob) and a fake LLM
    (``llm``: FakeLLM options; 400 tokens/s unless given). ``overrides`` are settings."""
    async with DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(**{"token_rate": 400, **(llm or {})}) as fake:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        async with running_bot(standin, f"sqlite+aiosqlite:///{database_path}", llm_base_url=fake.base_url,
                               **overrides) as running:
            yield PlayWorld(standin, running.bot, fake, guild, general, alice, bob)


def scripted_scene(text: str, *choices: str) -> str:
    """A reply for ``FakeLLM.script``: the scene, the marker and four choices."""
    choices = choices or ("Climb the stair", "Call out", "Light the lantern", "Close the door")
    return text + "\n\n### Choices\n" + "\n".join(f"{n}. {c}" for n, c in enumerate(choices, 1))


TALLY_ID = 41  # the text display of a vote's tally on a scene card (bot/ui/scene.py)


def tally(message: Message) -> str:
    """The vote tally a scene message shows: a card's tally text display (its title line in
    bold, then the options), or the embed of a message from before the cards; "" if none."""
    for display in _text_display_items(message.components):
        if display.get("id") == TALLY_ID:
            return display.get("content", "")
    if message.embeds:
        embed = message.embeds[0]
        return f"**{embed.get('title', '')}**\n{embed.get('description', '')}"
    return ""


def _text_display_items(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for comp in components:
        if comp.get("type") == 10:
            found.append(comp)
        found += _text_display_items(comp.get("components") or [])
    return found


def finished_scene(message: Message) -> bool:
    """A scene message whose writing is over: it has its choice buttons."""
    return any(c.get("custom_id", "").startswith("kahani:v1:choose:") for c in message.component_items())


async def wait_scene(standin: DiscordStandin, channel: Channel, after: int = 0) -> Message:
    """The next finished scene message in ``channel`` (with its buttons), after ``after``."""
    def found() -> Message | None:
        scenes = [m for m in channel.messages if m.author is standin.bot_user and finished_scene(m)]
        return scenes[after] if len(scenes) > after else None

    return await standin.wait_until(found, timeout=10, what="a finished scene")


async def ephemeral_answer(standin: DiscordStandin, rec: InteractionRecord, *, followup_within: float = 5.0) -> str:
    """The text of the ephemeral answer to ``rec`` (its response, or its followup when
    deferred: Discord gives it 15 minutes, ``followup_within`` is how long a test waits)."""
    response = await rec.wait_response()
    if response.type in (5, 6):  # deferred: the answer is a followup
        await standin.wait_until(lambda: rec.followups, what="the followup", timeout=followup_within)
    answers = [m for m in [rec.original, *rec.followups] if m is not None and (m.content or m.embeds)]
    assert answers, "no answer"
    answer = answers[-1]
    assert answer.flags & EPHEMERAL and answer.ephemeral_for is rec.user
    return answer.content or answer.embeds[0].get("description", "")


async def submit_new_story(standin: DiscordStandin, user: User, channel: Channel, title: str,
                           **options: Any) -> InteractionRecord:
    """/story new with ``options`` → the modal, filled in; the modal's interaction. A solo
    story unless ``mode`` says otherwise: a group story of one player closes a vote only
    by its timer or Close vote (tests of group play say ``mode="group"``)."""
    options.setdefault("mode", "solo")
    rec = await standin.slash(user, channel, "story new", **options)
    await rec.wait_response()
    [modal] = [m for m in standin.modals_for(user) if not m.submitted]
    return await standin.submit_modal(user, modal, {
        "Title": title, "Genre": "mystery", "Tone": "eerie", "World / setting": "a rocky island",
        "Premise: how does it start?": "The keeper has vanished.",
    })


async def only_answer(standin: DiscordStandin, rec: InteractionRecord) -> Message:
    """The one message that answers the interaction: only its user sees it, and it pings
    nobody (a deferred command's answer is its followup)."""
    response = await rec.wait_response()
    if response.type == 5:
        await standin.wait_until(lambda: rec.followups, what="the followup")
    if response.type in (4, 7):
        assert response.data["allowed_mentions"]["parse"] == []
    answers = [m for m in [rec.original, *rec.followups] if m is not None and (m.content or m.embeds)]
    assert len(answers) == 1, answers
    (answer,) = answers
    assert answer.flags & EPHEMERAL and answer.ephemeral_for is rec.user
    return answer


async def open_form(standin: DiscordStandin, user: User, channel: Channel, command: str,
                    **options: object) -> ModalRecord:
    """/command → the form it must open as its first answer."""
    rec = await standin.slash(user, channel, command, **options)
    assert (await rec.wait_response()).type == 9, "a form must be the first answer"
    return standin.modals_for(user)[-1]


def fields(message: Message) -> dict[str, str]:
    """The fields of the message's one embed, by name."""
    (embed,) = message.embeds
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


def form_values(form: ModalRecord) -> dict[str, str]:
    return {c["custom_id"]: c.get("value", "") for c in form.text_inputs()}
