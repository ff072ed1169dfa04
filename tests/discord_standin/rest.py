"""REST endpoints of the stand-in: the request pipeline (route matching against the
OpenAPI spec, auth, faults, rate limits, body validation) and one handler per route."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from . import rules
from .models import (
    EPHEMERAL, GUILD_FORUM, LOADING, MESSAGE_COMPONENT, MODAL_SUBMIT, PRIVATE_THREAD, PUBLIC_THREAD, Attachment,
    Callback, Channel, InteractionRecord, Message, ModalRecord, Permissions, RateLimitHit, Revision, snowflake,
)

if TYPE_CHECKING:
    from .standin import DiscordStandin

log = logging.getLogger("discord_standin.rest")

API_PREFIX = "/api/v10"
TOKEN_LIFETIME = 15 * 60.0


class DiscordError(Exception):
    """An error answer in Discord's JSON shape ({"message", "code"[, "errors"]})."""

    def __init__(self, status: int, code: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body = body or {"message": message, "code": code}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py only parses JSON when Content-Type is exactly `application/json`.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


@dataclass
class Request:
    method: str
    path: str
    template: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any = None
    files: list[Attachment] = field(default_factory=list)
    peer: tuple[str, int] | None = None  # the client's address

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Fault:
    """An injected answer to the next ``times`` requests to a route (those ``when`` accepts)."""

    method: str
    template: str
    times: int
    status: int = 500
    delay: float = 0.0
    when: Callable[[Request], bool] | None = None  # e.g. one message's edits, or only final ones
    served: int = 0  # requests answered with this fault so far


Handler = Callable[[Request], Awaitable[Any]]


def _as_is(message: Message) -> dict[str, Any]:
    """What an edit's checks need of the message it changes (rules.check_message)."""
    return {"flags": message.flags, "content": message.content, "embeds": message.embeds}


class RestApi:
    def __init__(self, standin: DiscordStandin) -> None:
        self.s = standin
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/users/@me"): self.get_me,
            ("GET", "/oauth2/applications/@me"): self.get_application,
            ("GET", "/applications/@me"): self.get_application,
            ("GET", "/gateway"): self.get_gateway,
            ("GET", "/gateway/bot"): self.get_gateway_bot,
            ("GET", "/applications/{application_id}/commands"): self.get_commands,
            ("PUT", "/applications/{application_id}/commands"): self.put_commands,
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands"): self.get_commands,
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"): self.put_commands,
            ("GET", "/channels/{channel_id}"): self.get_channel,
            ("PATCH", "/channels/{channel_id}"): self.modify_channel,
            ("DELETE", "/channels/{channel_id}"): self.delete_channel,
            ("POST", "/channels/{channel_id}/typing"): self.typing,
            ("GET", "/channels/{channel_id}/messages"): self.list_messages,
            ("POST", "/channels/{channel_id}/messages"): self.create_message,
            ("GET", "/channels/{channel_id}/messages/{message_id}"): self.get_message,
            ("PATCH", "/channels/{channel_id}/messages/{message_id}"): self.edit_message,
            ("DELETE", "/channels/{channel_id}/messages/{message_id}"): self.delete_message,
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads"): self.thread_from_message,
            ("POST", "/channels/{channel_id}/threads"): self.thread_in_channel,
            ("PUT", "/channels/{channel_id}/thread-members/@me"): self.join_thread,
            ("PUT", "/channels/{channel_id}/thread-members/{user_id}"): self.add_thread_member,
            ("DELETE", "/channels/{channel_id}/thread-members/{user_id}"): self.remove_thread_member,
            ("POST", "/users/@me/channels"): self.create_dm,
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"): self.interaction_callback,
            ("POST", "/webhooks/{webhook_id}/{webhook_token}"): self.create_followup,
            ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): self.get_webhook_message,
            ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): self.edit_webhook_message,
            ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): self.delete_webhook_message,
        }
        self.templates = sorted({rules.split_template(t) for _, t in self.routes})

    # ------------------------------------------------------------------ pipeline --
    async def handle(self, http: web.Request) -> web.Response:
        method, full = http.method, http.path
        label = f"{method} {full}"
        self.requests.append(label)
        if not full.startswith(API_PREFIX + "/"):
            self.s.violate("api-version", "request outside /api/v10", label)
            return json_response({"message": "404: Not Found", "code": 0}, 404)
        path = full[len(API_PREFIX):]
        spec_template = None
        if self.s.spec is not None:
            spec_template = self.s.spec.match(method, path)
            if spec_template is None:
                self.s.violate("route-not-in-spec", "Discord's OpenAPI spec has no such route", label)
                return json_response({"message": "404: Not Found", "code": 0}, 404)
        template = rules.match_template(self.templates, method, path, lambda t: (method, t) in self.routes)
        if template is None:
            self.s.violate("route-not-implemented", "the stand-in does not implement this route", label)
            return json_response({"message": "404: Not Found", "code": 0}, 404)
        params = dict(zip(template.strip("/").split("/"), path.strip("/").split("/")))
        params = {k.strip("{}"): v for k, v in params.items() if k.startswith("{")}
        token_route = template.startswith(("/webhooks/", "/interactions/"))
        if not token_route and http.headers.get("Authorization") != f"Bot {self.s.token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)

        req = Request(method, path, template, params, dict(http.query),
                      peer=http.transport.get_extra_info("peername") if http.transport else None)
        await self._read_body(http, req)  # (read first: a fault may match on the body)
        fault = self._take_fault(req)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)  # an injected slow response, not a wait for state
        if fault is not None and fault.status:
            return json_response({"message": f"{fault.status}: injected fault", "code": 0}, fault.status)

        decision = self.s.limiter.check(method, template, params, counts_globally=not token_route)
        if not decision.allowed:
            self.s.rate_limit_hits.append(RateLimitHit(label, decision.bucket, decision.is_global, decision.retry_after))
            self.s._notify()
            body = {"message": "You are being rate limited.", "retry_after": decision.retry_after,
                    "global": decision.is_global}
            return json_response(body, 429, decision.headers)

        try:
            if spec_template is not None and req.body is not None and method in ("POST", "PUT", "PATCH"):
                self._reject(req, self.s.spec.validate(spec_template, method, req.body), "schema")
            if isinstance(req.body, dict) and method in ("POST", "PATCH"):
                message = req.body.get("data") if "interactions/" in template else req.body
                if isinstance(message, dict):
                    self.s.pings.extend((label, ping) for ping in rules.pings(message))
            result = await self.routes[(method, template)](req)
        except DiscordError as exc:
            self.s.error_responses.append((label, exc.status, exc.body))
            return json_response(exc.body, exc.status, decision.headers)
        if result is None:
            return web.Response(status=204, headers=decision.headers)
        return json_response(result, 200, decision.headers)

    async def _read_body(self, http: web.Request, req: Request) -> None:
        if http.content_type == "multipart/form-data":
            reader = await http.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    req.body = json.loads(await part.text())
                elif part.name and part.name.startswith("files["):
                    req.files.append(Attachment(snowflake(), part.filename or "file", bytes(await part.read())))
        elif http.can_read_body:
            raw = await http.read()
            if raw:
                req.body = json.loads(raw)

    def _reject(self, req: Request, errors: list[rules.FormError], rule: str) -> None:
        """Record each broken rule as a violation and answer Discord's 400 Invalid Form Body."""
        if not errors:
            return
        for err in errors:
            self.s.violate(rule, str(err), str(req))
        raise DiscordError(400, 50035, "Invalid Form Body", rules.form_error_body(errors))

    def _take_fault(self, req: Request) -> Fault | None:
        for fault in self.faults:
            if (fault.method == req.method and fault.template == req.template and fault.times > 0
                    and (fault.when is None or fault.when(req))):
                fault.times -= 1
                fault.served += 1
                self.s._notify()  # a test may wait for its fault to be served
                return fault
        return None

    # ------------------------------------------------------------- lookups -------
    def _channel(self, channel_id: str) -> Channel:
        channel = self.s.channels.get(int(channel_id))
        if channel is None or channel.deleted:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _message(self, channel: Channel, message_id: str) -> Message:
        message = next((m for m in channel.all_messages if m.id == int(message_id) and not m.deleted), None)
        if message is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def _require(self, channel: Channel, permission: int) -> None:
        if channel.is_dm:
            return
        perms = self.s.permissions_for(self.s.bot_user, channel)
        if not perms & Permissions.VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if not perms & permission:
            raise DiscordError(403, 50013, "Missing Permissions")

    # ------------------------------------------------------------- identity ------
    async def get_me(self, req: Request) -> Any:
        return self.s.bot_user.payload()

    async def get_application(self, req: Request) -> Any:
        return self.s.application_payload()

    async def get_gateway(self, req: Request) -> Any:
        return {"url": self.s.gateway_url}

    async def get_gateway_bot(self, req: Request) -> Any:
        return {"url": self.s.gateway_url, "shards": self.s.recommended_shards, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}}

    # ------------------------------------------------------------- commands ------
    def _command_list(self, req: Request) -> list[dict[str, Any]]:
        if int(req.params["application_id"]) != self.s.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" in req.params:
            return self.s.guild_commands.setdefault(int(req.params["guild_id"]), [])
        return self.s.global_commands

    async def get_commands(self, req: Request) -> Any:
        return self._command_list(req)

    async def put_commands(self, req: Request) -> Any:
        commands = self._command_list(req)
        self._reject(req, rules.check_commands(req.body or []), "command-definition")
        stored = []
        for cmd in req.body or []:
            cmd = {
                "type": 1, "options": [], "default_member_permissions": None, "nsfw": False, **cmd,
                "id": str(snowflake()), "application_id": str(self.s.application_id), "version": str(snowflake()),
            }
            if "guild_id" in req.params:
                cmd["guild_id"] = req.params["guild_id"]
            stored.append(cmd)
        commands[:] = stored
        self.s.command_syncs += 1
        self.s._notify()
        return stored

    # ------------------------------------------------------------- channels ------
    async def get_channel(self, req: Request) -> Any:
        return self._channel(req.params["channel_id"]).payload()

    async def modify_channel(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        body = req.body or {}
        if channel.is_thread:
            if "name" in body:
                self._reject(req, rules.check_thread_name(body["name"]), "thread-name")
            if channel.owner_id != self.s.bot_user.id:
                self._require(channel, Permissions.MANAGE_THREADS)
        else:
            self._require(channel, Permissions.MANAGE_CHANNELS)
        for key in ("name", "archived", "locked", "auto_archive_duration"):
            if key in body:
                setattr(channel, key, body[key])
        self.s._dispatch_channel("THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE", channel)
        return channel.payload()

    async def delete_channel(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        self._require(channel, Permissions.MANAGE_THREADS if channel.is_thread else Permissions.MANAGE_CHANNELS)
        payload = channel.payload()
        self.s.delete_channel(channel)
        return payload

    async def typing(self, req: Request) -> Any:
        self._require(self._channel(req.params["channel_id"]), Permissions.SEND_MESSAGES)
        return None

    # ------------------------------------------------------------- messages ------
    async def list_messages(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        self._require(channel, Permissions.READ_MESSAGE_HISTORY)
        messages = list(reversed(channel.messages))  # newest first, like Discord
        if "before" in req.query:
            messages = [m for m in messages if m.id < int(req.query["before"])]
        if "after" in req.query:
            messages = [m for m in messages if m.id > int(req.query["after"])]
        return [m.payload() for m in messages[: int(req.query.get("limit", 50))]]

    async def create_message(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        if channel.type == GUILD_FORUM:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        body = req.body or {}
        self._reject(req, rules.check_message(body, files=len(req.files)), "message")
        self._require(channel, Permissions.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permissions.SEND_MESSAGES)
        if channel.is_thread and channel.archived:
            if channel.locked:
                raise DiscordError(400, 50083, "Thread is archived")
            channel.archived = False  # sending unarchives an unlocked thread
            self.s._dispatch_channel("THREAD_UPDATE", channel)
        revision = Revision(body.get("content") or "", body.get("embeds") or [], body.get("components") or [],
                            req.files, (body.get("flags") or 0) & ~EPHEMERAL)
        return self.s.post_message(channel, self.s.bot_user, revision).payload()

    async def get_message(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        self._require(channel, Permissions.READ_MESSAGE_HISTORY)
        return self._message(channel, req.params["message_id"]).payload()

    async def edit_message(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        message = self._message(channel, req.params["message_id"])
        self._reject(req, rules.check_message(req.body or {}, creating=False, was=_as_is(message)), "message")
        if message.author is not self.s.bot_user:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        return self.s.edit_message(message, req.body or {}, req.files).payload()

    async def delete_message(self, req: Request) -> Any:
        channel = self._channel(req.params["channel_id"])
        message = self._message(channel, req.params["message_id"])
        if message.author is not self.s.bot_user:
            self._require(channel, Permissions.MANAGE_MESSAGES)
        self.s.delete_message(message)
        return None

    # ------------------------------------------------------------- threads -------
    def _thread_checks(self, req: Request, parent: Channel, private: bool) -> None:
        if parent.is_dm:
            self.s.violate("thread-in-dm", "threads cannot be created in a DM channel", str(req))
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if parent.is_thread:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        self._reject(req, rules.check_thread_name((req.body or {}).get("name")), "thread-name")
        self._require(parent, Permissions.CREATE_PRIVATE_THREADS if private else Permissions.CREATE_PUBLIC_THREADS)

    async def thread_from_message(self, req: Request) -> Any:
        parent = self._channel(req.params["channel_id"])
        message = self._message(parent, req.params["message_id"])
        self._thread_checks(req, parent, private=False)
        if any(c.id == message.id for c in self.s.channels.values()):
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        return self.s.create_thread(parent, req.body["name"], PUBLIC_THREAD, thread_id=message.id,
                                    auto_archive=req.body.get("auto_archive_duration")).payload()

    async def thread_in_channel(self, req: Request) -> Any:
        parent = self._channel(req.params["channel_id"])
        if parent.type == GUILD_FORUM:
            return await self._forum_post(req, parent)
        kind = (req.body or {}).get("type", PRIVATE_THREAD)
        self._thread_checks(req, parent, private=kind == PRIVATE_THREAD)
        return self.s.create_thread(parent, req.body["name"], kind,
                                    auto_archive=req.body.get("auto_archive_duration")).payload()

    async def _forum_post(self, req: Request, forum: Channel) -> Any:
        """A forum post: a public thread and its starter message (the thread's id), made
        together; Discord refuses one without a message and needs Send Messages (Create Posts)."""
        body = req.body or {}
        self._reject(req, rules.check_thread_name(body.get("name")), "thread-name")
        starter = body.get("message")
        if not isinstance(starter, dict):
            raise DiscordError(400, 50035, "Invalid Form Body: message is required in a forum channel")
        self._reject(req, rules.check_message(starter, files=len(req.files)), "message")
        self._require(forum, Permissions.SEND_MESSAGES)
        thread = self.s.create_thread(forum, body["name"], PUBLIC_THREAD, auto_archive=body.get("auto_archive_duration"))
        revision = Revision(starter.get("content") or "", starter.get("embeds") or [], starter.get("components") or [],
                            req.files, (starter.get("flags") or 0) & ~EPHEMERAL)
        message = self.s.post_message(thread, self.s.bot_user, revision, message_id=thread.id)
        return {**thread.payload(), "message": message.payload()}

    def _thread(self, req: Request) -> Channel:
        thread = self._channel(req.params["channel_id"])
        if not thread.is_thread:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if thread.archived:
            raise DiscordError(400, 50083, "Thread is archived")
        return thread

    async def join_thread(self, req: Request) -> Any:
        self.s.add_thread_member(self._thread(req), self.s.bot_user)
        return None

    async def add_thread_member(self, req: Request) -> Any:
        thread = self._thread(req)
        assert thread.guild is not None
        member = thread.guild.members.get(int(req.params["user_id"]))
        if member is None:
            raise DiscordError(404, 10013, "Unknown User")
        self._require(thread, Permissions.SEND_MESSAGES_IN_THREADS)
        self.s.add_thread_member(thread, member.user)
        return None

    async def remove_thread_member(self, req: Request) -> Any:
        thread = self._thread(req)
        raw = req.params["user_id"]
        user_id = self.s.bot_user.id if raw == "@me" else int(raw)
        # Discord: Manage Threads, or being the creator of a private thread.
        creator = thread.type == PRIVATE_THREAD and thread.owner_id == self.s.bot_user.id
        if user_id != self.s.bot_user.id and not creator:
            self._require(thread, Permissions.MANAGE_THREADS)
        thread.thread_members.discard(user_id)
        self.s._dispatch_thread_members(thread, removed=[user_id])
        return None

    # ------------------------------------------------------------- DMs -----------
    async def create_dm(self, req: Request) -> Any:
        user = self.s.users.get(int((req.body or {}).get("recipient_id", 0)))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return self.s.dm_channel(user).payload()

    # ------------------------------------------------------------- interactions --
    async def interaction_callback(self, req: Request) -> Any:
        rec = self.s.interactions.get(int(req.params["interaction_id"]))
        if rec is None or rec.token != req.params["interaction_token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        body = req.body or {}
        kind, data = body.get("type"), body.get("data") or {}
        now = self.s.clock.now()
        age = now - rec.created_at
        try:
            if rec.acked:
                self.s.violate("interaction-already-acknowledged", f"interaction {rec.id} answered twice", str(req))
                raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
            if age > self.s.interaction_deadline:
                self.s.violate("interaction-late",
                               f"interaction {rec.id} answered after {age:.2f}s (limit {self.s.interaction_deadline}s)",
                               str(req))
                raise DiscordError(404, 10062, "Unknown interaction")
            resource = self._apply_callback(req, rec, kind, data)
        except DiscordError:
            rec.callbacks.append(Callback(kind, data, now, accepted=False, peer=req.peer))
            rec.answered.set()
            self.s._notify()
            raise
        rec.callbacks.append(Callback(kind, data, now, accepted=True, peer=req.peer))
        rec.answered.set()
        self.s._notify()
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return None
        message = rec.original
        answer: dict[str, Any] = {"interaction": {
            "id": str(rec.id), "type": rec.type,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message.flags & EPHEMERAL),
        }}
        if resource is not None:
            answer["resource"] = {"type": kind, "message": resource.payload()}
        return answer

    def _apply_callback(self, req: Request, rec: InteractionRecord, kind: Any, data: dict[str, Any]) -> Message | None:
        on_message = rec.message is not None and rec.type in (MESSAGE_COMPONENT, MODAL_SUBMIT)
        if kind == 4:
            self._reject(req, rules.check_message(data, files=len(req.files)), "message")
            rec.original = self.s.interaction_message(rec, data, req.files)
            return rec.original
        if kind == 5:
            rec.original = self.s.interaction_message(rec, {"flags": (data.get("flags") or 0) | LOADING}, [])
            return rec.original
        if kind in (6, 7) and on_message:
            assert rec.message is not None
            rec.original = rec.message
            if kind == 7:
                self._reject(req, rules.check_message(data, creating=False, was=_as_is(rec.message)), "message")
                self.s.edit_message(rec.message, data, req.files)
                return rec.message
            return None
        if kind == 8 and rec.type == 4:
            self._reject(req, rules.check_autocomplete(data), "autocomplete")
            return None
        if kind == 9 and rec.type != MODAL_SUBMIT:
            self._reject(req, rules.check_modal(data), "modal")
            self.s.modals.append(ModalRecord(rec.user, rec, data["custom_id"], data["title"], data["components"]))
            return None
        self.s.violate("interaction-callback-type", f"callback type {kind} is not valid for interaction type "
                       f"{rec.type}", str(req))
        raise DiscordError(400, 50035, "Invalid Form Body", rules.form_error_body(
            [rules.FormError(("type",), "INTERACTION_CALLBACK_TYPE_INVALID", "Invalid interaction callback type")]))

    # ------------------------------------------------------------- webhooks ------
    def _webhook_interaction(self, req: Request) -> InteractionRecord:
        rec = self.s.interactions_by_token.get(req.params["webhook_token"])
        if rec is None or int(req.params["webhook_id"]) != self.s.application_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if self.s.clock.now() - rec.created_at > TOKEN_LIFETIME:
            self.s.violate("interaction-token-expired", f"interaction {rec.id} used after 15 minutes", str(req))
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if not rec.acked:
            self.s.violate("interaction-not-acknowledged", "followup or edit before any interaction response",
                           str(req))
            raise DiscordError(404, 10015, "Unknown Webhook")
        return rec

    def _webhook_message(self, req: Request) -> tuple[InteractionRecord, Message]:
        rec = self._webhook_interaction(req)
        if req.params["message_id"] == "@original":
            message = rec.original
        else:
            message = next((m for m in rec.followups if m.id == int(req.params["message_id"])), None)
            if message is None and rec.original is not None and rec.original.id == int(req.params["message_id"]):
                message = rec.original
        if message is None or message.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        return rec, message

    async def create_followup(self, req: Request) -> Any:
        rec = self._webhook_interaction(req)
        body = req.body or {}
        self._reject(req, rules.check_message(body, files=len(req.files)), "message")
        message = self.s.interaction_message(rec, body, req.files)
        rec.followups.append(message)
        self.s._notify()  # waiters on rec.followups (interaction_message notified before the append)
        return message.payload()

    async def get_webhook_message(self, req: Request) -> Any:
        return self._webhook_message(req)[1].payload()

    async def edit_webhook_message(self, req: Request) -> Any:
        _, message = self._webhook_message(req)
        self._reject(req, rules.check_message(req.body or {}, creating=False, was=_as_is(message)), "message")
        return self.s.edit_message(message, req.body or {}, req.files).payload()

    async def delete_webhook_message(self, req: Request) -> Any:
        _, message = self._webhook_message(req)
        self.s.delete_message(message)
        return None
