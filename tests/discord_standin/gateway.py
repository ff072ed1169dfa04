"""The gateway: a websocket per shard connection, sessions that survive a dropped
socket (RESUME replays what the client missed, by sequence number), zlib-stream
compression when the client asks for it (discord.py always does)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .standin import DiscordStandin

log = logging.getLogger("discord_standin.gateway")

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11

# Which intent an event needs (events not listed are always sent).
GUILDS, GUILD_VOICE_STATES, GUILD_MESSAGES, DIRECT_MESSAGES = 1 << 0, 1 << 7, 1 << 9, 1 << 12
EVENT_INTENTS = {
    "GUILD_CREATE": GUILDS, "CHANNEL_CREATE": GUILDS, "CHANNEL_UPDATE": GUILDS, "CHANNEL_DELETE": GUILDS,
    "THREAD_CREATE": GUILDS, "THREAD_UPDATE": GUILDS, "THREAD_DELETE": GUILDS, "THREAD_MEMBERS_UPDATE": GUILDS,
    "VOICE_STATE_UPDATE": GUILD_VOICE_STATES,
}
MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE")


try:  # discord.py asks for zstd-stream instead of zlib-stream when `zstandard` is installed
    import zstandard
except ImportError:
    zstandard = None
COMPRESSIONS = (None, "zlib-stream") + (("zstd-stream",) if zstandard else ())


class _Zstd:
    """One zstd stream per connection; each gateway message is flushed as a whole block."""

    def __init__(self) -> None:
        self.stream = zstandard.ZstdCompressor().compressobj()

    def compress(self, data: bytes) -> bytes:
        return self.stream.compress(data)

    def flush(self, _mode: int) -> bytes:
        return self.stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


class Connection:
    """One websocket; a writer task sends queued frames in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None,
                 peer: tuple[str, int] | None = None) -> None:
        self.ws = ws
        self.peer = peer  # the client's (host, port)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.compressor: Any = {"zlib-stream": zlib.compressobj, "zstd-stream": _Zstd}.get(compress or "", type(None))()
        self.writer = asyncio.create_task(self._write_loop())

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(payload)

    async def _write_loop(self) -> None:
        while True:
            payload = await self.queue.get()
            text = json.dumps(payload)
            if self.ws.closed:
                return
            try:
                if self.compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self.compressor.compress(text.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                return


@dataclass(eq=False)
class Session:
    """A gateway session of one shard: its dispatch log outlives the socket."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: Connection | None = None
    valid: bool = True
    resumes: int = 0
    replayed: int = 0

    def wants(self, event: str, dm: bool) -> bool:
        if event in MESSAGE_EVENTS:
            needed = DIRECT_MESSAGES if dm else GUILD_MESSAGES
        else:
            needed = EVENT_INTENTS.get(event, 0)
        return not needed or bool(self.intents & needed)

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.log.append(payload)
        if self.conn is not None:
            self.conn.send(payload)


class Gateway:
    def __init__(self, standin: DiscordStandin, *, heartbeat_interval_ms: int = 41250, ack_delay: float = 0.005):
        self.standin = standin
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_delay = ack_delay
        self.sessions: dict[str, Session] = {}
        self.by_shard: dict[int, Session] = {}
        self.connections: set[Connection] = set()
        self.identifies = 0
        self.heartbeats = 0
        self.compression: list[str | None] = []  # what each connection asked for

    # -- routing ------------------------------------------------------------------
    def shard_for(self, guild_id: int | None) -> Session | None:
        """Guild events go to shard (guild_id >> 22) % shard_count; DMs to shard 0."""
        if not self.by_shard:
            return None
        count = next(iter(self.by_shard.values())).shard_count
        return self.by_shard.get(0 if guild_id is None else (guild_id >> 22) % count)

    def dispatch(self, event: str, data: dict[str, Any], *, guild_id: int | None = None) -> bool:
        session = self.shard_for(guild_id)
        if session is None or not session.valid or not session.wants(event, dm=guild_id is None):
            return False
        session.dispatch(event, data)
        return True

    # -- faults ---------------------------------------------------------------------
    async def drop(self, shard_id: int = 0, code: int = 4000) -> Session:
        """Close the shard's socket (the session stays resumable); events meanwhile are logged."""
        session = self.by_shard[shard_id]
        conn, session.conn = session.conn, None
        if conn is not None:
            await conn.ws.close(code=code)
        return session

    def invalidate(self, shard_id: int = 0) -> None:
        """Send INVALID_SESSION (not resumable): the client must IDENTIFY again."""
        session = self.by_shard[shard_id]
        session.valid = False
        if session.conn is not None:
            session.conn.send({"op": INVALID_SESSION, "d": False})

    async def close_all(self) -> None:
        for conn in list(self.connections):
            conn.writer.cancel()
            await conn.ws.close(code=1001)

    # -- the socket -----------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        self.compression.append(compress)
        unsupported = compress not in COMPRESSIONS
        if unsupported or request.query.get("v") != "10" or request.query.get("encoding", "json") != "json":
            self.standin.violate("gateway-url", f"unsupported gateway query {dict(request.query)}")
            await ws.close(code=4012)  # a close code discord.py does not retry: the client stops loudly
            return ws
        conn = Connection(ws, compress, request.transport.get_extra_info("peername") if request.transport else None)
        self.connections.add(conn)
        conn.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._received(conn, json.loads(msg.data))
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.connections.discard(conn)
            for session in self.sessions.values():
                if session.conn is conn:
                    session.conn = None
            # let queued frames go out before the writer stops (a close frame may be pending)
            conn.writer.cancel()
        return ws

    async def _received(self, conn: Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            self.heartbeats += 1
            # An instant ACK trips discord.py's latency warning; Discord answers in a few ms.
            asyncio.get_running_loop().call_later(self.ack_delay, conn.send, {"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(conn, data)
        elif op == RESUME:
            await self._resume(conn, data)
        elif op == VOICE_STATE:
            self.standin._bot_voice_state(data)
        elif op in (PRESENCE, REQUEST_MEMBERS):
            log.debug("ignoring gateway op %s", op)
        else:
            self.standin.violate("gateway-opcode", f"unexpected gateway op {op}: {payload}")

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.standin.token:
            await conn.ws.close(code=4004)  # Authentication failed
            return
        shard_id, shard_count = data.get("shard") or [0, 1]
        self.identifies += 1
        session = Session(secrets.token_hex(16), shard_id, shard_count, data.get("intents", 0), conn=conn)
        old = self.by_shard.get(shard_id)
        if old is not None:
            old.valid = False
        self.sessions[session.session_id] = session
        self.by_shard[shard_id] = session
        guilds = [g for g in self.standin.guilds.values() if (g.id >> 22) % shard_count == shard_id]
        session.dispatch("READY", {
            "v": 10, "user": self.standin.bot_user.payload(), "session_id": session.session_id,
            "resume_gateway_url": self.standin.gateway_url, "shard": [shard_id, shard_count],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "application": {"id": str(self.standin.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "user_settings": {},
            "guild_join_requests": [], "geo_ordered_rtc_regions": [], "session_type": "normal", "_trace": [],
        })
        for guild in guilds:
            session.dispatch("GUILD_CREATE", guild.payload())
        self.standin._notify()

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(data.get("session_id", ""))
        if session is None or not session.valid or data.get("token") != self.standin.token:
            conn.send({"op": INVALID_SESSION, "d": False})
            return
        session.conn = conn
        session.resumes += 1
        seq = data.get("seq") or 0
        for payload in session.log:
            if payload["s"] > seq:
                session.replayed += 1
                conn.send(payload)
        session.dispatch("RESUMED", {"_trace": []})
        self.standin._notify()
