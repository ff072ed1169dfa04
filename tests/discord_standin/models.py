"""The stand-in's state: guilds, channels, roles, members, messages with their edit
history, interactions, modals — and the Discord JSON each of them is sent as."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .rules import text_displays

DISCORD_EPOCH_MS = 1420070400000

# Channel types (https://discord.com/developers/docs/resources/channel#channel-object-channel-types)
GUILD_TEXT, DM, GUILD_VOICE, PUBLIC_THREAD, PRIVATE_THREAD, GUILD_FORUM = 0, 1, 2, 11, 12, 15
THREAD_TYPES = (PUBLIC_THREAD, PRIVATE_THREAD)

# Interaction types and message flags used below.
APPLICATION_COMMAND, MESSAGE_COMPONENT, APPLICATION_COMMAND_AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
EPHEMERAL, LOADING, IS_COMPONENTS_V2 = 1 << 6, 1 << 7, 1 << 15


class Permissions:
    """Permission bits the stand-in checks (a subset of Discord's)."""

    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 53) - 1
    DEFAULT = (
        ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
        | CONNECT | SPEAK | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS
        | SEND_MESSAGES_IN_THREADS
    )


_counter = itertools.count()


def snowflake() -> int:
    """A fresh snowflake whose timestamp is now (discord.py derives created_at from it)."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_counter) % (1 << 22))


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "username": self.name, "discriminator": "0", "global_name": self.name,
            "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0,
        }


@dataclass(eq=False)
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "name": self.name, "color": 0, "hoist": False, "icon": None,
            "unicode_emoji": None, "position": self.position, "permissions": str(self.permissions),
            "managed": False, "mentionable": False, "flags": 0, "tags": {},
        }


@dataclass(eq=False)
class Member:
    user: User
    roles: list[Role] = field(default_factory=list)
    joined_at: str = field(default_factory=iso_now)

    def payload(self, permissions: int | None = None) -> dict[str, Any]:
        data = {
            "user": self.user.payload(), "nick": None, "avatar": None, "roles": [str(r.id) for r in self.roles],
            "joined_at": self.joined_at, "premium_since": None, "deaf": False, "mute": False, "flags": 0,
            "pending": False, "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class Overwrite:
    """A channel permission overwrite for a role or a member (`target` is the id)."""

    target: int
    is_member: bool
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.target), "type": int(self.is_member), "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(eq=False)
class VoiceState:
    user: User
    channel: Channel | None
    session_id: str

    def payload(self, guild: Guild) -> dict[str, Any]:
        member = guild.members.get(self.user.id)
        return {
            "guild_id": str(guild.id), "channel_id": str(self.channel.id) if self.channel else None,
            "user_id": str(self.user.id), "member": member.payload() if member else None,
            "session_id": self.session_id, "deaf": False, "mute": False, "self_deaf": False,
            "self_mute": False, "self_video": False, "suppress": False, "request_to_speak_timestamp": None,
        }


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: list[Role] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)
    voice_states: dict[int, VoiceState] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return next(r for r in self.roles if r.id == self.id)

    def channel(self, name: str) -> Channel:
        return next(c for c in self.channels if c.name == name and not c.deleted)

    def payload(self) -> dict[str, Any]:
        live = [c for c in self.channels if not c.deleted]
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(self.owner_id), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "features": [], "mfa_level": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "unavailable": False, "large": False,
            "member_count": len(self.members), "joined_at": iso_now(),
            "roles": [r.payload() for r in self.roles], "emojis": [], "stickers": [],
            "channels": [c.payload() for c in live if not c.is_thread],
            "threads": [c.payload() for c in live if c.is_thread and not c.archived],
            "members": [m.payload() for m in self.members.values()],
            "voice_states": [v.payload(self) for v in self.voice_states.values() if v.channel],
            "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str | None = None
    guild: Guild | None = None
    parent: Channel | None = None
    recipients: list[User] = field(default_factory=list)
    overwrites: list[Overwrite] = field(default_factory=list)
    position: int = 0
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    thread_members: set[int] = field(default_factory=set)
    deleted: bool = False
    all_messages: list[Message] = field(default_factory=list)

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def messages(self) -> list[Message]:
        """What everyone sees in the channel: live, non-ephemeral messages, oldest first."""
        return [m for m in self.all_messages if not m.deleted and m.ephemeral_for is None]

    def payload(self) -> dict[str, Any]:
        last = self.messages[-1].id if self.messages else None
        data: dict[str, Any] = {
            "id": str(self.id), "type": self.type, "last_message_id": str(last) if last else None, "flags": 0,
        }
        if self.is_dm:
            data["recipients"] = [u.payload() for u in self.recipients]
            return data
        assert self.guild is not None
        data.update({
            "guild_id": str(self.guild.id), "name": self.name, "position": self.position, "nsfw": False,
            "permission_overwrites": [o.payload() for o in self.overwrites], "rate_limit_per_user": 0,
            "parent_id": str(self.parent.id) if self.parent else None, "topic": None,
        })
        if self.type == GUILD_VOICE:
            data.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None})
        if self.type == GUILD_FORUM:  # a forum: its posts are threads, it has no messages of its own
            data.update({"available_tags": [], "default_reaction_emoji": None, "default_thread_rate_limit_per_user": 0,
                         "default_sort_order": None, "default_forum_layout": 0})
        if self.is_thread:
            data.update({
                "owner_id": str(self.owner_id), "message_count": len(self.messages),
                "member_count": len(self.thread_members), "total_message_sent": len(self.messages),
                "thread_metadata": {
                    "archived": self.archived, "locked": self.locked, "invitable": True,
                    "auto_archive_duration": self.auto_archive_duration, "archive_timestamp": iso_now(),
                },
            })
        return data


@dataclass(eq=False)
class Attachment:
    id: int
    filename: str
    data: bytes

    def payload(self) -> dict[str, Any]:
        url = f"https://cdn.discordapp.com/attachments/0/{self.id}/{self.filename}"
        return {
            "id": str(self.id), "filename": self.filename, "size": len(self.data), "url": url,
            "proxy_url": url, "content_type": "application/octet-stream",
        }


@dataclass
class Revision:
    """One version of a message as users saw it."""

    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    at: str = field(default_factory=iso_now)

    @property
    def text(self) -> str:
        """What users read: the content, or (Components V2) every text display, in order,
        a blank line between them."""
        return "\n\n".join(t for t in [self.content, *text_displays(self.components)] if t)


@dataclass(eq=False)
class Message:
    id: int
    channel: Channel
    author: User
    history: list[Revision]
    ephemeral_for: User | None = None
    interaction: InteractionRecord | None = None
    webhook_id: int | None = None
    deleted: bool = False

    @property
    def current(self) -> Revision:
        return self.history[-1]

    @property
    def content(self) -> str:
        return self.current.content

    @property
    def text(self) -> str:
        """What users read (:attr:`Revision.text`): the content or the text displays."""
        return self.current.text

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.current.embeds

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.current.components

    @property
    def attachments(self) -> list[Attachment]:
        return self.current.attachments

    @property
    def flags(self) -> int:
        return self.current.flags

    def component_items(self) -> list[dict[str, Any]]:
        """Every interactive component (buttons, selects), in layout order."""
        return list(walk_components(self.components))

    def find_component(self, label_or_custom_id: str) -> dict[str, Any]:
        for item in self.component_items():
            if label_or_custom_id in (item.get("label"), item.get("custom_id")):
                return item
        names = [(c.get("label"), c.get("custom_id")) for c in self.component_items()]
        raise LookupError(f"no component {label_or_custom_id!r} on message {self.id}; it has {names}")

    def payload(self) -> dict[str, Any]:
        rev = self.current
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel.id), "author": self.author.payload(),
            "content": rev.content, "timestamp": self.history[0].at,
            "edited_timestamp": rev.at if len(self.history) > 1 else None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "mention_channels": [],
            "attachments": [a.payload() for a in rev.attachments], "embeds": rev.embeds, "pinned": False,
            "type": 20 if self.interaction and self.interaction.type == APPLICATION_COMMAND else 0,
            "flags": rev.flags, "components": rev.components,
        }
        if self.channel.guild is not None:
            data["guild_id"] = str(self.channel.guild.id)
        if self.webhook_id:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.interaction is not None:
            data["interaction_metadata"] = {
                "id": str(self.interaction.id), "type": self.interaction.type,
                "user": self.interaction.user.payload(), "authorizing_integration_owners": {},
            }
        return data


def walk_components(components: list[dict[str, Any]]):
    """Yield interactive components (those with a custom_id or url) through rows and containers."""
    for comp in components:
        children = comp.get("components")
        if children:
            yield from walk_components(children)
        if "component" in comp:
            yield from walk_components([comp["component"]])
        if "accessory" in comp:
            yield from walk_components([comp["accessory"]])
        if "custom_id" in comp or "url" in comp:
            yield comp


@dataclass
class Violation:
    """A Discord rule the bot broke; `rule` is a short key such as `content-length`."""

    rule: str
    detail: str
    request: str = ""
    expected: bool = False  # a test asked for it (or it was already reported)

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail} ({self.request})" if self.request else f"[{self.rule}] {self.detail}"


@dataclass
class RateLimitHit:
    """One 429 the stand-in answered."""

    request: str
    bucket: str
    is_global: bool
    retry_after: float
    expected: bool = False


@dataclass(eq=False)
class ModalRecord:
    """A modal the bot opened for a user, as the user sees it."""

    user: User
    opened_by: InteractionRecord
    custom_id: str
    title: str
    components: list[dict[str, Any]]
    submitted: bool = False

    def text_inputs(self) -> list[dict[str, Any]]:
        return [c for c in walk_components(self.components) if c.get("type") == 4]


@dataclass
class Callback:
    """One interaction callback the bot sent (type 4 message, 5 defer, 6/7 update, 9 modal…)."""

    type: int
    data: dict[str, Any]
    at: float
    accepted: bool
    peer: tuple[str, int] | None = None  # the (host, port) the request came from: which process sent it


@dataclass(eq=False)
class InteractionRecord:
    """An interaction a user triggered, and everything the bot did with it."""

    id: int
    token: str
    type: int
    user: User
    channel: Channel
    data: dict[str, Any]
    created_at: float
    message: Message | None = None
    callbacks: list[Callback] = field(default_factory=list)
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    expected: bool = False  # set to allow (or after reporting) no answer
    # Where INTERACTION_CREATE went: the shard, and the (host, port) of that shard's
    # websocket client (with Callback.peer: which process received it and which answered).
    shard_id: int | None = None
    gateway_peer: tuple[str, int] | None = None

    @property
    def acked(self) -> bool:
        return any(c.accepted for c in self.callbacks)

    @property
    def response(self) -> Callback | None:
        return next((c for c in self.callbacks if c.accepted), None)

    async def wait_response(self, timeout: float = 5.0) -> Callback:
        """Wait until the bot sends its (first accepted) callback, and return it."""
        try:
            await asyncio.wait_for(self.answered.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"the bot did not answer interaction {self.id} ({self.data.get('name') or self.data.get('custom_id')})"
                f" within {timeout}s; callbacks so far: {self.callbacks}"
            ) from None
        response = self.response
        if response is None:  # answered only with refused callbacks
            raise AssertionError(f"every callback to interaction {self.id} was refused: {self.callbacks}")
        return response
