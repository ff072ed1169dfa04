"""A Discord voice server stand-in on 127.0.0.1: what a real discord.py 2.7 voice client
needs to connect, and a UDP receiver that decrypts and counts what it plays.

discord.py (``discord/gateway.py`` ``DiscordVoiceWebSocket``, ``voice_state.py``,
``voice_client.py``) does, after VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE:

1. ``wss://{endpoint}/?v=8`` (TLS, certificate verified: serve one the client trusts —
   :func:`make_certificate`, and ``SSL_CERT_FILE`` in the client's environment before
   aiohttp builds its SSL context at import time);
2. sends IDENTIFY (op 0: server_id, user_id, session_id, token,
   max_dave_protocol_version) right away; we send HELLO (op 8) and READY (op 2: ssrc,
   ip, port, modes); heartbeats (op 3) are answered with HEARTBEAT_ACK (op 6);
3. UDP IP discovery: 74 bytes ``>H`` 1, ``>H`` 70, ``>I`` ssrc, zeros; we answer type
   2, length 70, the ssrc, the client's address as ASCII from byte 8 (NUL-padded), its
   port in the last 2 bytes (big-endian);
4. SELECT_PROTOCOL (op 1: protocol udp, data.address/port/mode) → SESSION_DESCRIPTION
   (op 4: mode, secret_key as 32 ints, dave_protocol_version — 0 keeps DAVE off);
   SPEAKING (op 5) is recorded;
5. RTP over UDP: 12-byte header (0x80, 0x78, >H sequence, >I timestamp, >I ssrc), then
   for ``aead_xchacha20_poly1305_rtpsize`` the AEAD ciphertext (+16-byte tag) with the
   header as associated data, then the 4-byte big-endian nonce counter, which padded
   with 20 zero bytes is the 24-byte nonce.

Use::

    cert, key = make_certificate(tmp_path)
    async with VoiceServer(cert, key, standin=standin) as voice:
        standin.voice_endpoint = voice.endpoint
        ...  # bot process with env={"SSL_CERT_FILE": str(cert)}
        stream = voice.stream()  # what the bot played: frames, gaps, silence

Discord disconnecting or moving the bot, or deleting its channel: the main gateway's
events come from the stand-in (``move_voice``, ``disconnect_voice``, ``delete_channel``),
the voice websocket's close code 4014 from :meth:`VoiceServer.drop`.

What is not modelled: DAVE (E2EE, dave_protocol_version > 0), RESUME (op 7, recorded as a
violation), receiving audio from other users, voice-server-side reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import shutil
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp import WSMsgType, web
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
from nacl.exceptions import CryptoError

if TYPE_CHECKING:
    from .standin import DiscordStandin

log = logging.getLogger("discord_standin.voice")

# Voice gateway opcodes (discord.py's DiscordVoiceWebSocket).
IDENTIFY, SELECT_PROTOCOL, READY, HEARTBEAT, SESSION_DESCRIPTION, SPEAKING = 0, 1, 2, 3, 4, 5
HEARTBEAT_ACK, RESUME, HELLO, RESUMED, CLIENT_CONNECT = 6, 7, 8, 9, 12

RTPSIZE = "aead_xchacha20_poly1305_rtpsize"
MODES = (RTPSIZE, "aead_aes256_gcm_rtpsize")  # what Discord offers today
OPUS_SILENCE = b"\xf8\xff\xfe"  # the frames discord.py's player sends when it stops
SAMPLES_PER_FRAME = 960  # 20 ms at 48 kHz: the RTP timestamp step
RTP_PAYLOAD_TYPE = 0x78


def make_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for the IP ``host`` (subjectAltName IP), and its key."""
    cert, key = directory / "voice-cert.pem", directory / "voice-key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("neither the cryptography package nor the openssl CLI is available") from None
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )
        return cert, key
    import datetime
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def trust_in_this_process(cert: Path) -> None:
    """Make an in-process bot trust the voice stand-in's certificate. aiohttp builds its
    verified SSL context once, at import (so a subprocess gets ``SSL_CERT_FILE`` in its
    environment instead); adding the certificate to that context is the in-process way."""
    context = getattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", None)
    if not isinstance(context, ssl.SSLContext):
        raise RuntimeError("aiohttp has no module-level verified SSL context any more: use a subprocess bot")
    context.load_verify_locations(cafile=str(cert))


# --- RTP -------------------------------------------------------------------------------------


@dataclass
class Packet:
    sequence: int
    timestamp: int
    nonce: int
    payload: bytes  # the decrypted Opus frame
    arrived: float  # time.perf_counter()


@dataclass
class RtpStream:
    """Everything one ssrc sent, decrypted, in arrival order."""

    ssrc: int
    packets: list[Packet] = field(default_factory=list)
    decrypt_failures: int = 0

    @property
    def frames(self) -> list[bytes]:
        """Opus frames, without the OPUS_SILENCE frames the player sends when it stops."""
        return [p.payload for p in self.packets if p.payload != OPUS_SILENCE]

    @property
    def silence_frames(self) -> int:
        return sum(1 for p in self.packets if p.payload == OPUS_SILENCE)

    def sequence_gaps(self) -> int:
        """Consecutive packets whose RTP sequence does not step by exactly 1."""
        return sum(1 for a, b in itertools.pairwise(self.packets) if (b.sequence - a.sequence) % 65536 != 1)

    def timestamp_gaps(self) -> int:
        """Consecutive packets whose RTP timestamp does not step by exactly one 20 ms frame."""
        return sum(1 for a, b in itertools.pairwise(self.packets)
                   if (b.timestamp - a.timestamp) % 2**32 != SAMPLES_PER_FRAME)

    def nonces_increase(self) -> bool:
        return all(b.nonce == a.nonce + 1 for a, b in itertools.pairwise(self.packets))

    def max_interval(self, *, audio_only: bool = True) -> float:
        """The longest time between two consecutive packets (seconds)."""
        packets = [p for p in self.packets if not audio_only or p.payload != OPUS_SILENCE]
        return max((b.arrived - a.arrived for a, b in itertools.pairwise(packets)), default=0.0)


def rtp_header_length(packet: bytes) -> int:
    """The unencrypted part of an rtpsize packet: 12 bytes, the CSRCs, and — when the X bit
    is set — the 4-byte extension header (its body is encrypted with the payload)."""
    csrc_count = packet[0] & 0x0F
    length = 12 + 4 * csrc_count
    if packet[0] & 0x10:
        length += 4
    return length


def decrypt_rtpsize(packet: bytes, secret_key: bytes) -> tuple[int, bytes]:
    """(nonce counter, decrypted payload) of an ``aead_xchacha20_poly1305_rtpsize`` packet."""
    packet = bytes(packet)
    header_length = rtp_header_length(packet)
    header, ciphertext, nonce = packet[:header_length], packet[header_length:-4], packet[-4:]
    plain = crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, header, nonce + bytes(20), secret_key)
    if packet[0] & 0x10:  # the extension body (length in 32-bit words, from the clear header)
        words = struct.unpack_from(">H", packet, header_length - 2)[0]
        plain = plain[4 * words:]
    return struct.unpack(">I", nonce)[0], plain


# --- the voice websocket --------------------------------------------------------------------


@dataclass(eq=False)
class VoiceSession:
    """One voice websocket."""

    ssrc: int
    identify: dict[str, Any] | None = None
    mode: str | None = None
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    client_address: tuple[str, int] | None = None  # from IP discovery
    selected: dict[str, Any] | None = None  # SELECT_PROTOCOL's data
    speaking: list[int] = field(default_factory=list)
    heartbeats: int = 0
    close_code: int | None = None
    closed: bool = False
    seq: int = 0
    ws: web.WebSocketResponse | None = field(default=None, repr=False)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._datagram(data, addr)


class VoiceServer:
    """The voice websocket (TLS) and the UDP media port, both on 127.0.0.1."""

    def __init__(self, cert_file: str | Path, key_file: str | Path, *, standin: DiscordStandin | None = None,
                 host: str = "127.0.0.1", modes: tuple[str, ...] = MODES, heartbeat_interval_ms: int = 13750,
                 dave_protocol_version: int = 0) -> None:
        self.cert_file, self.key_file = str(cert_file), str(key_file)
        self.standin = standin
        self.host = host
        self.modes = modes
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.dave_protocol_version = dave_protocol_version
        self.sessions: list[VoiceSession] = []
        self.streams: dict[int, RtpStream] = {}
        self.violations: list[str] = []
        self.ip_discoveries = 0
        self.port = 0
        self.udp_port = 0
        self._runner: web.AppRunner | None = None
        self._udp: _Udp | None = None
        self._changed = asyncio.Event()

    @property
    def endpoint(self) -> str:
        """What VOICE_SERVER_UPDATE carries (``standin.voice_endpoint``)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> Self:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        app = web.Application()
        app.router.add_route("GET", "/", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, 0))
        self._udp = protocol
        assert protocol.transport is not None
        self.udp_port = protocol.transport.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- waiting ------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()

    async def wait_until(self, check: Any, *, timeout: float = 5.0, what: str = "a condition") -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := check()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"voice stand-in: timed out after {timeout}s waiting for {what} "
                                     f"(violations: {self.violations[-3:] or 'none'})")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return result

    def stream(self, ssrc: int | None = None) -> RtpStream:
        """The RTP stream of ``ssrc`` (default: the latest session's)."""
        if ssrc is None:
            assert self.sessions, "no voice session"
            ssrc = self.sessions[-1].ssrc
        return self.streams.setdefault(ssrc, RtpStream(ssrc))

    async def drop(self, code: int = 4014) -> int:
        """Close every open voice websocket with ``code``, as Discord does when the bot is
        disconnected or moved by someone else or its channel is deleted (4014); the number
        closed."""
        open_sessions = [s for s in self.sessions if not s.closed and s.ws is not None and not s.ws.closed]
        for session in open_sessions:
            assert session.ws is not None
            await session.ws.close(code=code)
        return len(open_sessions)

    def violate(self, message: str) -> None:
        log.warning("voice stand-in: %s", message)
        self.violations.append(message)
        self._notify()

    def assert_clean(self) -> None:
        assert not self.violations, self.violations

    # -- websocket ----------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if request.query.get("v") != "8":
            self.violate(f"voice gateway query {dict(request.query)}: discord.py 2.7 asks for v=8")
        session = VoiceSession(ssrc=secrets.randbelow(2**31 - 1) + 1, ws=ws)
        self.sessions.append(session)
        await self._send(ws, session, HELLO, {"heartbeat_interval": self.heartbeat_interval_ms})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._received(ws, session, json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    self.violate(f"binary voice frame (DAVE/MLS) with DAVE off: opcode {msg.data[:1]!r}")
                else:
                    break
        finally:
            session.closed = True
            session.close_code = ws.close_code
            self._notify()
        return ws

    async def _send(self, ws: web.WebSocketResponse, session: VoiceSession, op: int, data: Any) -> None:
        session.seq += 1
        payload = {"op": op, "d": data}
        if op not in (HELLO, HEARTBEAT_ACK):
            payload["seq"] = session.seq
        if not ws.closed:
            await ws.send_str(json.dumps(payload))

    async def _received(self, ws: web.WebSocketResponse, session: VoiceSession, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == HEARTBEAT:
            session.heartbeats += 1
            await self._send(ws, session, HEARTBEAT_ACK, {"t": data.get("t") if isinstance(data, dict) else data})
        elif op == IDENTIFY:
            self._check_identify(data)
            session.identify = data
            await self._send(ws, session, READY, {
                "ssrc": session.ssrc, "ip": self.host, "port": self.udp_port, "modes": list(self.modes),
                "heartbeat_interval": self.heartbeat_interval_ms,
            })
        elif op == SELECT_PROTOCOL:
            await self._select_protocol(ws, session, data)
        elif op == SPEAKING:
            if data.get("ssrc") != session.ssrc:
                self.violate(f"SPEAKING for ssrc {data.get('ssrc')}, the session's is {session.ssrc}")
            session.speaking.append(int(data.get("speaking", 0)))
        elif op == RESUME:
            self.violate("voice RESUME is not modelled")
            await ws.close(code=4006)  # session no longer valid
        else:
            self.violate(f"unexpected voice op {op}: {payload}")
        self._notify()

    def _check_identify(self, data: dict[str, Any]) -> None:
        missing = [k for k in ("server_id", "user_id", "session_id", "token") if not data.get(k)]
        if missing:
            self.violate(f"IDENTIFY without {missing}")
            return
        if self.standin is None:
            return
        guild = self.standin.guilds.get(int(data["server_id"]))
        if guild is None:
            self.violate(f"IDENTIFY for unknown guild {data['server_id']}")
            return
        if int(data["user_id"]) != self.standin.bot_user.id:
            self.violate(f"IDENTIFY as user {data['user_id']}, not the bot")
        state = guild.voice_states.get(self.standin.bot_user.id)
        if state is None or state.session_id != data["session_id"]:
            self.violate("IDENTIFY's session_id is not the bot's voice state session_id")

    async def _select_protocol(self, ws: web.WebSocketResponse, session: VoiceSession, data: dict[str, Any]) -> None:
        session.selected = chosen = data.get("data") or {}
        mode = chosen.get("mode")
        if data.get("protocol") != "udp":
            self.violate(f"SELECT_PROTOCOL protocol {data.get('protocol')!r}")
        if mode not in self.modes:
            self.violate(f"SELECT_PROTOCOL mode {mode!r} was not offered")
        if session.client_address is None:
            self.violate("SELECT_PROTOCOL before IP discovery")
        elif (chosen.get("address"), chosen.get("port")) != session.client_address:
            self.violate(f"SELECT_PROTOCOL address {chosen.get('address')}:{chosen.get('port')} is not the "
                         f"discovered {session.client_address}")
        session.mode = mode
        await self._send(ws, session, SESSION_DESCRIPTION, {
            "mode": mode, "secret_key": list(session.secret_key), "audio_codec": "opus", "video_codec": None,
            "media_session_id": secrets.token_hex(16), "dave_protocol_version": self.dave_protocol_version,
        })

    # -- UDP ------------------------------------------------------------------------
    def _session_for(self, ssrc: int) -> VoiceSession | None:
        return next((s for s in reversed(self.sessions) if s.ssrc == ssrc), None)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == 74 and struct.unpack_from(">HH", data) == (1, 70):
            self._ip_discovery(data, addr)
        elif len(data) >= 12 and data[0] & 0xC0 == 0x80 and data[1] & 0x7F == RTP_PAYLOAD_TYPE:
            self._rtp(data)
        else:
            self.violate(f"unexpected UDP datagram of {len(data)} bytes: {data[:16].hex()}")
        self._notify()

    def _ip_discovery(self, data: bytes, addr: tuple[str, int]) -> None:
        ssrc = struct.unpack_from(">I", data, 4)[0]
        session = self._session_for(ssrc)
        if session is None:
            self.violate(f"IP discovery for unknown ssrc {ssrc}")
            return
        self.ip_discoveries += 1
        session.client_address = (addr[0], addr[1])
        reply = bytearray(74)
        struct.pack_into(">HHI", reply, 0, 2, 70, ssrc)
        address = addr[0].encode("ascii")
        reply[8:8 + len(address)] = address  # NUL-terminated: the rest stays zero
        struct.pack_into(">H", reply, 72, addr[1])
        assert self._udp is not None and self._udp.transport is not None
        self._udp.transport.sendto(bytes(reply), addr)

    def _rtp(self, data: bytes) -> None:
        sequence, timestamp, ssrc = struct.unpack_from(">HII", data, 2)
        session = self._session_for(ssrc)
        stream = self.streams.setdefault(ssrc, RtpStream(ssrc))
        if session is None or session.mode is None:
            self.violate(f"RTP for ssrc {ssrc} before SESSION_DESCRIPTION")
            return
        if session.mode != RTPSIZE:
            self.violate(f"RTP decryption for mode {session.mode} is not modelled")
            return
        try:
            nonce, payload = decrypt_rtpsize(data, session.secret_key)
        except (CryptoError, ValueError, TypeError) as exc:  # tampered, wrong key, or too short
            stream.decrypt_failures += 1
            self.violate(f"RTP packet seq {sequence} does not decrypt: {exc!r}")
            return
        stream.packets.append(Packet(sequence, timestamp, nonce, payload, time.perf_counter()))
