"""`DiscordStandin`: the server, its state, and the user-side API tests drive it with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from aiohttp import web

from . import rules
from .clock import MonotonicClock
from .gateway import Gateway
from .models import (
    APPLICATION_COMMAND, APPLICATION_COMMAND_AUTOCOMPLETE, DM, EPHEMERAL, GUILD_TEXT, GUILD_VOICE, LOADING,
    MESSAGE_COMPONENT, MODAL_SUBMIT, PRIVATE_THREAD, PUBLIC_THREAD, Attachment, Channel, Guild, InteractionRecord, Member, Message, ModalRecord,
    Overwrite, Permissions, RateLimitHit, Revision, Role, User, Violation, VoiceState, iso_now, snowflake,
)
from .ratelimits import RateLimiter
from .rest import Fault, Request, RestApi

log = logging.getLogger("discord_standin")
T = TypeVar("T")
_DEFAULT: Any = object()
DM_PERMISSIONS = (
    Permissions.VIEW_CHANNEL | Permissions.SEND_MESSAGES | Permissions.EMBED_LINKS | Permissions.ATTACH_FILES
    | Permissions.READ_MESSAGE_HISTORY | Permissions.ADD_REACTIONS | Permissions.USE_APPLICATION_COMMANDS
)


class DiscordStandin:
    """A local Discord (REST + gateway on 127.0.0.1) that a real discord.py client talks to.

    Use as `async with DiscordStandin() as standin:`; point the client at
    `standin.api_base` / `standin.gateway_url` (see `testing.patch_discord`).
    """

    def __init__(
        self,
        *,
        token: str = "standin-bot-token",
        clock: MonotonicClock | None = None,
        spec: rules.OpenAPISpec | None = _DEFAULT,
        interaction_deadline: float = 3.0,
        global_limit: int = 50,
        recommended_shards: int = 1,
    ) -> None:
        self.token = token
        self.clock = clock or MonotonicClock()
        self.spec = rules.load_spec() if spec is _DEFAULT else spec
        self.interaction_deadline = interaction_deadline
        self.recommended_shards = recommended_shards
        self.limiter = RateLimiter(self.clock, global_limit)
        self.bot_user = User(snowflake(), "Kahani", bot=True)
        self.application_id = self.bot_user.id
        self.owner = User(snowflake(), "guild-owner")
        self.users: dict[int, User] = {u.id: u for u in (self.bot_user, self.owner)}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        # (request, ping) for every mention a message sent by the bot would notify:
        # story text must never ping (tests assert this stays empty).
        self.pings: list[tuple[str, str]] = []
        self.dms: dict[int, Channel] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.command_syncs = 0
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.modals: list[ModalRecord] = []
        self.violations: list[Violation] = []
        self.rate_limit_hits: list[RateLimitHit] = []
        self.error_responses: list[tuple[str, int, dict[str, Any]]] = []
        self.bot_voice_requests: list[dict[str, Any]] = []
        self.voice_endpoint: str | None = None
        self.rest = RestApi(self)
        self.gateway = Gateway(self)
        self._waiters: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ----------------------------------------------------------------- server ---
    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> DiscordStandin:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", "/", self.gateway.handle)
        app.router.add_route("*", "/api/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": self.bot_user.name, "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": self.owner.payload(),
            "verify_key": "0" * 64, "flags": 0, "team": None, "summary": "", "rpc_origins": [],
            "bot": self.bot_user.payload(), "interactions_endpoint_url": None,
        }

    # ---------------------------------------------------------- building a world ---
    def add_guild(self, name: str = "guild", *, owner: User | None = None, id: int | None = None) -> Guild:
        """A guild with @everyone, its owner and the bot; `id` picks its shard ((id >> 22) % shards)."""
        owner = owner or self.owner
        guild = Guild(id or snowflake(), name, owner.id)
        guild.roles.append(Role(guild.id, "@everyone", Permissions.DEFAULT))
        for user in {owner.id: owner, self.bot_user.id: self.bot_user}.values():
            guild.members[user.id] = Member(user)
        self.guilds[guild.id] = guild
        self.gateway.dispatch("GUILD_CREATE", guild.payload(), guild_id=guild.id)
        return guild

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(guild.roles))
        guild.roles.append(role)
        self.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()},
                              guild_id=guild.id)
        return role

    def add_user(self, name: str, *, guild: Guild | None = None, roles: tuple[Role, ...] = ()) -> User:
        user = User(snowflake(), name)
        self.users[user.id] = user
        if guild is not None:
            self.add_member(guild, user, roles)
        return user

    def add_member(self, guild: Guild, user: User, roles: tuple[Role, ...] = ()) -> Member:
        member = Member(user, list(roles))
        guild.members[user.id] = member
        self.gateway.dispatch("GUILD_MEMBER_ADD", {**member.payload(), "guild_id": str(guild.id)}, guild_id=guild.id)
        return member

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        type: int = GUILD_TEXT,
        overwrites: tuple[Overwrite, ...] = (),
        deny_bot: int = 0,
    ) -> Channel:
        """A guild channel; `deny_bot` denies permission bits to the bot there (e.g. SEND_MESSAGES)."""
        channel = Channel(snowflake(), type, name, guild=guild, overwrites=list(overwrites),
                          position=len(guild.channels))
        if deny_bot:
            channel.overwrites.append(Overwrite(self.bot_user.id, True, deny=deny_bot))
        guild.channels.append(channel)
        self.channels[channel.id] = channel
        self._dispatch_channel("CHANNEL_CREATE", channel)
        return channel

    def add_thread(self, parent: Channel, name: str, *, private: bool = False, owner: User | None = None,
                   members: tuple[User, ...] = ()) -> Channel:
        """A thread a user started (the bot is not a member unless listed)."""
        owner = owner or self.owner
        thread = self.create_thread(parent, name, PRIVATE_THREAD if private else PUBLIC_THREAD, owner=owner)
        for user in members:
            self.add_thread_member(thread, user)
        return thread

    # ------------------------------------------------------------- permissions ---
    def permissions_for(self, user: User, channel: Channel) -> int:
        """Discord's permission computation: base roles, then channel overwrites."""
        if channel.is_dm:
            return DM_PERMISSIONS if user in channel.recipients or user is self.bot_user else 0
        guild = channel.guild
        assert guild is not None
        member = guild.members.get(user.id)
        if member is None:
            return 0
        if guild.owner_id == user.id:
            return Permissions.ALL
        perms = guild.everyone.permissions
        for role in member.roles:
            perms |= role.permissions
        if perms & Permissions.ADMINISTRATOR:
            return Permissions.ALL
        target = channel.parent if channel.is_thread and channel.parent else channel
        role_ids = {r.id for r in member.roles}
        layers = (
            [o for o in target.overwrites if not o.is_member and o.target == guild.id],
            [o for o in target.overwrites if not o.is_member and o.target in role_ids],
            [o for o in target.overwrites if o.is_member and o.target == user.id],
        )
        for layer in layers:
            allow = deny = 0
            for ow in layer:
                allow, deny = allow | ow.allow, deny | ow.deny
            perms = (perms & ~deny) | allow
        if not perms & Permissions.VIEW_CHANNEL:
            return 0
        hidden_thread = channel.type == PRIVATE_THREAD and user.id not in channel.thread_members
        if hidden_thread and not perms & Permissions.MANAGE_THREADS:
            return 0
        return perms

    def _require_visible(self, user: User, channel: Channel) -> None:
        if channel.deleted:
            raise LookupError(f"channel {channel.name or channel.id} was deleted")
        if not self.permissions_for(user, channel) & Permissions.VIEW_CHANNEL:
            raise PermissionError(f"{user.name} cannot see channel {channel.name or channel.id}")

    # ------------------------------------------------- state changes (REST + users) ---
    def _guild_id(self, channel: Channel) -> int | None:
        return channel.guild.id if channel.guild else None

    def _dispatch_channel(self, event: str, channel: Channel) -> None:
        data = channel.payload()
        if event == "THREAD_CREATE":
            data["newly_created"] = True
        self.gateway.dispatch(event, data, guild_id=self._guild_id(channel))
        self._notify()

    def post_message(self, channel: Channel, author: User, revision: Revision, *,
                     interaction: InteractionRecord | None = None, ephemeral: bool = False,
                     message_id: int | None = None) -> Message:
        message = Message(
            message_id or snowflake(), channel, author, [revision],
            ephemeral_for=interaction.user if ephemeral and interaction else None,
            interaction=interaction, webhook_id=self.application_id if interaction else None,
        )
        channel.all_messages.append(message)
        if message.ephemeral_for is None:
            self.gateway.dispatch("MESSAGE_CREATE", message.payload(), guild_id=self._guild_id(channel))
        self._notify()
        return message

    def interaction_message(self, rec: InteractionRecord, data: dict[str, Any], files: list[Attachment]) -> Message:
        flags = data.get("flags") or 0
        revision = Revision(data.get("content") or "", data.get("embeds") or [], data.get("components") or [],
                            files, flags)
        return self.post_message(rec.channel, self.bot_user, revision, interaction=rec,
                                 ephemeral=bool(flags & EPHEMERAL))

    def edit_message(self, message: Message, body: dict[str, Any], files: list[Attachment]) -> Message:
        """A new revision: fields present in the body replace, others carry over."""
        cur = message.current
        attachments = cur.attachments
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            attachments = [a for a in cur.attachments if str(a.id) in keep]
        flags = cur.flags & EPHEMERAL | ((body.get("flags") or 0) if "flags" in body else cur.flags & ~LOADING)
        message.history.append(Revision(
            content=(body.get("content") or "") if "content" in body else cur.content,
            embeds=(body.get("embeds") or []) if "embeds" in body else cur.embeds,
            components=(body.get("components") or []) if "components" in body else cur.components,
            attachments=attachments + files,
            flags=flags & ~LOADING,
        ))
        if message.ephemeral_for is None:
            self.gateway.dispatch("MESSAGE_UPDATE", message.payload(), guild_id=self._guild_id(message.channel))
        self._notify()
        return message

    def delete_message(self, message: Message) -> None:
        message.deleted = True
        if message.ephemeral_for is None:
            data = {"id": str(message.id), "channel_id": str(message.channel.id)}
            guild_id = self._guild_id(message.channel)
            if guild_id:
                data["guild_id"] = str(guild_id)
            self.gateway.dispatch("MESSAGE_DELETE", data, guild_id=guild_id)
        self._notify()

    def create_thread(self, parent: Channel, name: str, type: int, *, thread_id: int | None = None,
                      owner: User | None = None, auto_archive: int | None = None) -> Channel:
        owner = owner or self.bot_user
        thread = Channel(thread_id or snowflake(), type, name, guild=parent.guild, parent=parent, owner_id=owner.id,
                         auto_archive_duration=auto_archive or 1440, thread_members={owner.id})
        assert parent.guild is not None
        parent.guild.channels.append(thread)
        self.channels[thread.id] = thread
        self._dispatch_channel("THREAD_CREATE", thread)
        return thread

    def add_thread_member(self, thread: Channel, user: User) -> None:
        if user.id in thread.thread_members:
            return
        thread.thread_members.add(user.id)
        self._dispatch_thread_members(thread, added=[user.id])

    def _dispatch_thread_members(self, thread: Channel, added: tuple[int, ...] | list[int] = (),
                                 removed: tuple[int, ...] | list[int] = ()) -> None:
        assert thread.guild is not None
        data: dict[str, Any] = {"id": str(thread.id), "guild_id": str(thread.guild.id),
                                "member_count": len(thread.thread_members)}
        if added:
            data["added_members"] = [{"id": str(thread.id), "user_id": str(uid), "join_timestamp": iso_now(),
                                      "flags": 0} for uid in added]
        if removed:
            data["removed_member_ids"] = [str(uid) for uid in removed]
        self.gateway.dispatch("THREAD_MEMBERS_UPDATE", data, guild_id=thread.guild.id)
        self._notify()

    def delete_channel(self, channel: Channel) -> None:
        channel.deleted = True
        if channel.is_thread:
            assert channel.guild is not None and channel.parent is not None
            data = {"id": str(channel.id), "guild_id": str(channel.guild.id), "parent_id": str(channel.parent.id),
                    "type": channel.type}
            self.gateway.dispatch("THREAD_DELETE", data, guild_id=channel.guild.id)
        else:
            self.gateway.dispatch("CHANNEL_DELETE", channel.payload(), guild_id=self._guild_id(channel))
            if channel.type == GUILD_VOICE and channel.guild is not None:
                # Everyone in a deleted voice channel (the bot too) is disconnected.
                for state in [v for v in channel.guild.voice_states.values() if v.channel is channel]:
                    self._set_voice_state(channel.guild, state.user, None, state.session_id)
        self._notify()

    def dm_channel(self, user: User) -> Channel:
        channel = self.dms.get(user.id)
        if channel is None:
            channel = Channel(snowflake(), DM, recipients=[user])
            self.dms[user.id] = self.channels[channel.id] = channel
            self.gateway.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def _bot_voice_state(self, data: dict[str, Any]) -> None:
        """The bot asked (gateway op 4) to join or leave a voice channel."""
        self.bot_voice_requests.append(data)
        guild = self.guilds.get(int(data["guild_id"]))
        if guild is None:
            return
        channel = self.channels.get(int(data["channel_id"])) if data.get("channel_id") else None
        session_id = secrets.token_hex(16)
        self._set_voice_state(guild, self.bot_user, channel, session_id)
        if channel is not None and self.voice_endpoint:
            self.gateway.dispatch("VOICE_SERVER_UPDATE", {"token": secrets.token_hex(8), "guild_id": str(guild.id),
                                                          "endpoint": self.voice_endpoint}, guild_id=guild.id)

    def _set_voice_state(self, guild: Guild, user: User, channel: Channel | None, session_id: str) -> None:
        state = VoiceState(user, channel, session_id)
        if channel is None:
            guild.voice_states.pop(user.id, None)
        else:
            guild.voice_states[user.id] = state
        self.gateway.dispatch("VOICE_STATE_UPDATE", state.payload(guild), guild_id=guild.id)
        self._notify()

    # -------------------------------------------------------------- user actions ---
    async def say(self, user: User, channel: Channel, content: str) -> Message:
        """A user posts a plain message."""
        self._require_visible(user, channel)
        return self.post_message(channel, user, Revision(content=content))

    async def dm(self, user: User) -> Channel:
        """The DM channel between the user and the bot."""
        return self.dm_channel(user)

    async def join_voice(self, user: User, channel: Channel) -> None:
        if channel.type != GUILD_VOICE or channel.guild is None:
            raise TypeError(f"{channel.name} is not a guild voice channel")
        self._require_visible(user, channel)
        self._set_voice_state(channel.guild, user, channel, secrets.token_hex(16))

    async def leave_voice(self, user: User, guild: Guild) -> None:
        self._set_voice_state(guild, user, None, secrets.token_hex(16))

    async def move_voice(self, user: User, channel: Channel) -> None:
        """A moderator drags ``user`` (the bot too) into another voice channel: the same
        voice session in the new channel and, for the bot, a new VOICE_SERVER_UPDATE (the
        voice server closes the old voice websocket with 4014: ``VoiceServer.drop``)."""
        if channel.type != GUILD_VOICE or channel.guild is None:
            raise TypeError(f"{channel.name} is not a guild voice channel")
        current = channel.guild.voice_states.get(user.id)
        if current is None:
            raise LookupError(f"{user.name} is not in a voice channel of {channel.guild.name}")
        self._set_voice_state(channel.guild, user, channel, current.session_id)
        if user is self.bot_user and self.voice_endpoint:
            self.gateway.dispatch("VOICE_SERVER_UPDATE", {"token": secrets.token_hex(8),
                                                          "guild_id": str(channel.guild.id),
                                                          "endpoint": self.voice_endpoint}, guild_id=channel.guild.id)

    async def disconnect_voice(self, user: User, guild: Guild) -> None:
        """A moderator disconnects ``user`` (the bot too) from voice: its voice state
        without a channel (the voice server closes the bot's voice websocket with 4014:
        ``VoiceServer.drop``)."""
        current = guild.voice_states.get(user.id)
        self._set_voice_state(guild, user, None, current.session_id if current else secrets.token_hex(16))

    async def slash(self, user: User, channel: Channel, command: str, **options: Any) -> InteractionRecord:
        """Run `/command [group] [subcommand]` with options, as the Discord client would send it."""
        data = self._command_data(channel, command, options)
        return self._new_interaction(user, channel, APPLICATION_COMMAND, data)

    async def autocomplete(self, user: User, channel: Channel, command: str, *, option: str, value: str = "",
                           **options: Any) -> InteractionRecord:
        """Type `value` into `option` of `/command` (the other `options` already filled in), as
        the Discord client does: an autocomplete interaction the bot answers with choices
        (callback type 8; read them from `(await rec.wait_response()).data["choices"]`)."""
        data = self._command_data(channel, command, options, focused=(option, value))
        return self._new_interaction(user, channel, APPLICATION_COMMAND_AUTOCOMPLETE, data)

    def _command_data(self, channel: Channel, command: str, options: dict[str, Any],
                      focused: tuple[str, str] | None = None) -> dict[str, Any]:
        root_name, *path = command.split()
        root = self._find_command(root_name, channel)
        node, chain = root, []
        for part in path:
            node = next((o for o in node.get("options") or [] if o["name"] == part and o["type"] in (1, 2)), None)
            if node is None:
                raise LookupError(f"/{command}: no subcommand {part!r} in {root_name}")
            chain.append(node)
        if any(o["type"] in (1, 2) for o in node.get("options") or []):
            raise LookupError(f"/{command} needs a subcommand")
        resolved: dict[str, dict[str, Any]] = {}
        leaf = []
        options = dict(options)
        for definition in node.get("options") or []:
            name = definition["name"]
            if focused is not None and name == focused[0]:
                if not definition.get("autocomplete"):
                    raise TypeError(f"/{command}: option {name!r} has no autocomplete")
                # What the user typed so far: always a string, never checked against choices.
                leaf.append({"name": name, "type": definition["type"], "value": focused[1], "focused": True})
                continue
            key = name if name in options else name.replace("-", "_")
            if key not in options:
                if definition.get("required") and focused is None:
                    raise TypeError(f"/{command}: option {name!r} is required")
                continue
            leaf.append(self._option(definition, options.pop(key), resolved, channel))
        if focused is not None and not any(o.get("focused") for o in leaf):
            raise LookupError(f"/{command} has no option {focused[0]!r}")
        if options:
            raise TypeError(f"/{command} has no options {sorted(options)}")
        for sub in reversed(chain):
            leaf = [{"name": sub["name"], "type": sub["type"], "options": leaf}]
        data: dict[str, Any] = {"id": root["id"], "name": root["name"], "type": 1, "options": leaf}
        if resolved:
            data["resolved"] = resolved
        if root.get("guild_id"):
            data["guild_id"] = root["guild_id"]
        return data

    def _find_command(self, name: str, channel: Channel) -> dict[str, Any]:
        scoped = self.guild_commands.get(channel.guild.id, []) if channel.guild else []
        for cmd in [*scoped, *self.global_commands]:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                if channel.is_dm and (cmd.get("contexts") is not None and 1 not in cmd["contexts"]
                                      or cmd.get("dm_permission") is False):
                    raise LookupError(f"/{name} is not available in DMs")
                return cmd
        known = [c["name"] for c in [*scoped, *self.global_commands]]
        raise LookupError(f"the bot registered no command /{name} here (known: {known})")

    def _option(self, definition: dict[str, Any], value: Any, resolved: dict[str, Any],
                channel: Channel) -> dict[str, Any]:
        kind, name = definition["type"], definition["name"]
        if kind == 3:
            value = str(value)
        elif kind == 4:
            value = int(value)
        elif kind == 5:
            value = bool(value)
        elif kind == 10:
            value = float(value)
        elif kind in (6, 9) and isinstance(value, User):
            resolved.setdefault("users", {})[str(value.id)] = value.payload()
            member = channel.guild.members.get(value.id) if channel.guild else None
            if member is not None:
                data = member.payload(self.permissions_for(value, channel))
                data.pop("user")
                resolved.setdefault("members", {})[str(value.id)] = data
            value = str(value.id)
        elif kind in (8, 9) and isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            value = str(value.id)
        elif kind == 7 and isinstance(value, Channel):
            data = {**value.payload(), "permissions": str(self.permissions_for(self.bot_user, value))}
            resolved.setdefault("channels", {})[str(value.id)] = data
            value = str(value.id)
        else:
            raise TypeError(f"option {name!r} (type {kind}) cannot take {value!r}")
        choices = definition.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r} must be one of {[c['value'] for c in choices]}")
        return {"name": name, "type": kind, "value": value}

    async def click(self, user: User, message: Message, label_or_custom_id: str) -> InteractionRecord:
        """Press a button (found by label or custom_id) on a message the user can see."""
        self._require_message_visible(user, message)
        button = message.find_component(label_or_custom_id)
        if button.get("type") != 2 or button.get("style") == 5:
            raise TypeError(f"{label_or_custom_id!r} is not a clickable button: {button}")
        if button.get("disabled"):
            raise ValueError(f"button {label_or_custom_id!r} is disabled")
        data = {"custom_id": button["custom_id"], "component_type": 2}
        return self._new_interaction(user, message.channel, MESSAGE_COMPONENT, data, message)

    async def select(self, user: User, message: Message, values: list[str], *,
                     custom_id: str | None = None) -> InteractionRecord:
        """Pick `values` (option values or labels) in the message's string select."""
        self._require_message_visible(user, message)
        selects = [c for c in message.component_items() if c.get("type") in rules.SELECT_TYPES
                   and custom_id in (None, c.get("custom_id"))]
        if len(selects) != 1:
            raise LookupError(f"expected one select (custom_id={custom_id!r}) on message {message.id}, "
                              f"found {len(selects)}")
        menu = selects[0]
        if menu.get("disabled"):
            raise ValueError(f"select {menu['custom_id']!r} is disabled")
        if menu["type"] == 3:
            by_label = {o["label"]: o["value"] for o in menu.get("options") or []}
            allowed = {o["value"] for o in menu.get("options") or []}
            values = [by_label.get(v, v) for v in values]
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"select {menu['custom_id']!r} has no options {unknown}")
        low, high = menu.get("min_values", 1), menu.get("max_values", 1)
        if not low <= len(values) <= high:
            raise ValueError(f"select {menu['custom_id']!r} takes {low}..{high} values, got {len(values)}")
        data = {"custom_id": menu["custom_id"], "component_type": menu["type"], "values": list(values)}
        return self._new_interaction(user, message.channel, MESSAGE_COMPONENT, data, message)

    async def submit_modal(self, user: User, modal: ModalRecord, fields: dict[str, Any]) -> InteractionRecord:
        """Fill the modal's inputs (keyed by custom_id or label) and submit it."""
        if modal.user is not user:
            raise PermissionError(f"the modal {modal.title!r} was opened for {modal.user.name}, not {user.name}")
        if modal.submitted:
            raise ValueError(f"the modal {modal.title!r} was already submitted")
        fields = dict(fields)
        submitted = []
        for top in modal.components:
            if top.get("type") == 1:
                child = top["components"][0]
                submitted.append({"type": 1, "components": [self._modal_value(child, child.get("label"), fields)]})
            elif top.get("type") == rules.LABEL:
                value = self._modal_value(top["component"], top.get("label"), fields)
                submitted.append({"type": rules.LABEL, "id": top.get("id", 0), "component": value})
        if fields:
            raise TypeError(f"the modal {modal.title!r} has no inputs {sorted(fields)}")
        modal.submitted = True
        data = {"custom_id": modal.custom_id, "components": submitted}
        return self._new_interaction(user, modal.opened_by.channel, MODAL_SUBMIT, data, modal.opened_by.message)

    @staticmethod
    def _modal_value(component: dict[str, Any], label: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        custom_id = component["custom_id"]
        key = custom_id if custom_id in fields else label
        if component["type"] != rules.TEXT_INPUT:
            values = list(fields.pop(key, []))
            return {"type": component["type"], "custom_id": custom_id, "values": values}
        value = str(fields.pop(key)) if key in fields else component.get("value") or ""
        if component.get("required", True) and not value:
            raise ValueError(f"modal input {label or custom_id!r} is required")
        low, high = component.get("min_length", 0), component.get("max_length", 4000)
        if value and not low <= len(value) <= high:
            raise ValueError(f"modal input {label or custom_id!r} takes {low}..{high} characters")
        return {"type": rules.TEXT_INPUT, "custom_id": custom_id, "value": value}

    def _require_message_visible(self, user: User, message: Message) -> None:
        if message.deleted:
            raise LookupError(f"message {message.id} was deleted")
        if message.ephemeral_for is not None and message.ephemeral_for is not user:
            raise PermissionError(f"message {message.id} is ephemeral for {message.ephemeral_for.name}")
        self._require_visible(user, message.channel)

    def _new_interaction(self, user: User, channel: Channel, kind: int, data: dict[str, Any],
                         message: Message | None = None) -> InteractionRecord:
        self._require_visible(user, channel)
        rec = InteractionRecord(snowflake(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48), kind, user, channel,
                                data, self.clock.now(), message)
        self.interactions[rec.id] = rec
        self.interactions_by_token[rec.token] = rec
        if not self.gateway.dispatch("INTERACTION_CREATE", self._interaction_payload(rec),
                                     guild_id=self._guild_id(channel)):
            raise RuntimeError("the bot has no gateway session for this interaction's shard")
        session = self.gateway.shard_for(self._guild_id(channel))
        if session is not None:
            rec.shard_id = session.shard_id
            rec.gateway_peer = session.conn.peer if session.conn is not None else None
        self._notify()
        return rec

    def _interaction_payload(self, rec: InteractionRecord) -> dict[str, Any]:
        channel, guild = rec.channel, rec.channel.guild
        user_perms = self.permissions_for(rec.user, channel)
        data: dict[str, Any] = {
            "id": str(rec.id), "application_id": str(self.application_id), "type": rec.type, "data": rec.data,
            "token": rec.token, "version": 1, "locale": "en-US", "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(self.permissions_for(self.bot_user, channel)),
            "channel": {**channel.payload(), "permissions": str(user_perms)}, "channel_id": str(channel.id),
            "context": 0 if guild else 1,
        }
        if guild is not None:
            member = guild.members[rec.user.id]
            data.update({
                "guild_id": str(guild.id), "guild_locale": "en-US",
                "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                "member": member.payload(permissions=user_perms),
                "authorizing_integration_owners": {"0": str(guild.id)},
            })
        else:
            data["user"] = rec.user.payload()
            data["authorizing_integration_owners"] = {"1": str(rec.user.id)}
        if rec.message is not None:
            data["message"] = rec.message.payload()
        return data

    # --------------------------------------------------------------- moderation ---
    async def moderator_delete_message(self, message: Message) -> None:
        self.delete_message(message)

    async def moderator_delete_thread(self, thread: Channel) -> None:
        if not thread.is_thread:
            raise TypeError(f"{thread.name} is not a thread")
        self.delete_channel(thread)

    # ------------------------------------------------------------------- faults ---
    def fail_next(self, method: str, route: str, *, times: int = 1, status: int = 500,
                  when: Callable[[Request], bool] | None = None) -> Fault:
        """Answer the next `times` requests to `route` (an OpenAPI template) with `status`;
        with `when`, only the requests it accepts (`req.params`, `req.body`). The fault's
        `served` counts them (waiters are told); set its `times` to 0 to call it off."""
        fault = Fault(method, route, times, status=status, when=when)
        self.rest.faults.append(fault)
        return fault

    def slow_next(self, method: str, route: str, delay: float, *, times: int = 1) -> None:
        """Delay the next `times` answers to `route` by `delay` seconds."""
        self.rest.faults.append(Fault(method, route, times, status=0, delay=delay))

    async def drop_gateway(self, shard_id: int = 0, code: int = 4000) -> None:
        """Close the shard's websocket; the client should RESUME the same session."""
        await self.gateway.drop(shard_id, code)

    async def invalidate_session(self, shard_id: int = 0) -> None:
        """INVALID_SESSION (not resumable): the client must IDENTIFY again."""
        self.gateway.invalidate(shard_id)

    # ------------------------------------------------------------------- views ---
    def ephemeral_for(self, user: User) -> list[Message]:
        return [m for c in self.channels.values() for m in c.all_messages
                if m.ephemeral_for is user and not m.deleted]

    def modals_for(self, user: User) -> list[ModalRecord]:
        return [m for m in self.modals if m.user is user]

    # -------------------------------------------------------------------- waits ---
    def _notify(self) -> None:
        for check, future in list(self._waiters):
            if future.done():
                continue
            try:
                result = check()
            except Exception as exc:  # a broken predicate fails the waiting test
                future.set_exception(exc)
            else:
                if result:
                    future.set_result(result)

    async def wait_until(self, check: Callable[[], T], *, timeout: float = 5.0, what: str = "a condition") -> T:
        """Wait (event-driven: re-checked on every state change) until `check()` is truthy."""
        result = check()
        if result:
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = (check, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            recent = "; ".join(map(str, self.violations[-3:])) or "none"
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (recent violations: {recent})") from None
        finally:
            self._waiters.remove(entry)

    async def wait_for_message(self, channel: Channel, predicate: Callable[[Message], bool] | None = None, *,
                               timeout: float = 5.0) -> Message:
        """The first visible message in the channel matching `predicate` (now or once it appears/changes)."""
        def check() -> Message | None:
            return next((m for m in channel.messages if predicate is None or predicate(m)), None)

        return await self.wait_until(check, timeout=timeout, what=f"a message in {channel.name or channel.id}")

    async def wait_for_ephemeral(self, user: User, predicate: Callable[[Message], bool] | None = None, *,
                                 timeout: float = 5.0) -> Message:
        def check() -> Message | None:
            return next((m for m in self.ephemeral_for(user) if predicate is None or predicate(m)), None)

        return await self.wait_until(check, timeout=timeout, what=f"an ephemeral message for {user.name}")

    # ------------------------------------------------------------------- checks ---
    def violate(self, rule: str, detail: str, request: str = "") -> None:
        violation = Violation(rule, detail, request)
        log.warning("Discord rule broken: %s", violation)
        self.violations.append(violation)
        self._notify()

    def unexpected(self) -> tuple[list[Violation], list[RateLimitHit], list[InteractionRecord]]:
        now = self.clock.now()
        unanswered = [r for r in self.interactions.values()
                      if not r.callbacks and now - r.created_at > self.interaction_deadline and not r.expected]
        return ([v for v in self.violations if not v.expected], [h for h in self.rate_limit_hits if not h.expected],
                unanswered)

    def assert_clean(self) -> None:
        """Fail loudly on any broken rule, any 429, any interaction left unanswered past the deadline,
        any ping."""
        violations, hits, unanswered = self.unexpected()
        for item in [*violations, *hits, *unanswered]:
            item.expected = True  # report each problem once
        problems = [f"rule broken: {v}" for v in violations]
        problems += [f"429 {'(global) ' if h.is_global else ''}on {h.request} (bucket {h.bucket})" for h in hits]
        problems += [f"interaction {r.id} ({r.data.get('name') or r.data.get('custom_id')}) never answered"
                     for r in unanswered]
        problems += [f"a message would ping {ping}: {request}" for request, ping in self.pings]
        self.pings.clear()  # report each once; a test that means to ping reads and clears them
        if problems:
            raise AssertionError("the Discord stand-in saw:\n  " + "\n  ".join(problems))

    @contextlib.contextmanager
    def checked(self) -> Iterator[DiscordStandin]:
        """Around one test: no rule broken and zero 429s unless the test said it expects them."""
        self.assert_clean()
        yield self
        self.assert_clean()

    @contextlib.asynccontextmanager
    async def expect_violation(self, match: str, *, timeout: float = 5.0) -> AsyncIterator[list[Violation]]:
        """The block must make the stand-in record a violation whose text (rule, detail,
        request) contains `match`; waits for it after the block, event-driven."""
        start = len(self.violations)
        caught: list[Violation] = []
        yield caught

        def matching() -> list[Violation]:
            return [v for v in self.violations[start:] if match in str(v)]

        caught += await self.wait_until(matching, timeout=timeout, what=f"the stand-in to reject with {match!r}")
        for violation in caught:
            violation.expected = True

    @contextlib.asynccontextmanager
    async def expect_rate_limited(self, *, at_least: int = 1, is_global: bool | None = None,
                                  timeout: float = 5.0) -> AsyncIterator[list[RateLimitHit]]:
        """The block must draw at least `at_least` 429s (global ones only, or route ones only, if given)."""
        start = len(self.rate_limit_hits)
        caught: list[RateLimitHit] = []
        yield caught

        def matching() -> list[RateLimitHit]:
            hits = [h for h in self.rate_limit_hits[start:] if is_global is None or h.is_global == is_global]
            return hits if len(hits) >= at_least else []

        caught += await self.wait_until(matching, timeout=timeout, what=f"{at_least} rate-limited request(s)")
        for hit in self.rate_limit_hits[start:]:
            hit.expected = True
