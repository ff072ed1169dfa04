"""Discord's documented limits, checked by hand (the OpenAPI spec is looser in places),
and request-body validation against Discord's published OpenAPI spec.

Each check returns a list of `FormError`s; the server turns them into Discord's
`Invalid Form Body` (code 50035) answer and records them as violations.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema

SPEC_PATH = Path(__file__).resolve().parents[2] / ".." / "shared" / "discord-openapi.json"

SELECT_TYPES = {3, 5, 6, 7, 8}
BUTTON, TEXT_INPUT, LABEL = 2, 4, 18
# Components V2 (https://discord.com/developers/docs/components/reference)
IS_COMPONENTS_V2 = 1 << 15
ACTION_ROW, SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER = 1, 9, 10, 11, 12, 13, 14, 17
V2_TOP_LEVEL = {ACTION_ROW, SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER}
V2_IN_CONTAINER = V2_TOP_LEVEL - {CONTAINER}
V2_MAX_COMPONENTS = 40  # in all, nested ones counted
V2_MAX_TEXT = 4000  # characters over every text display of a message


@dataclass
class FormError:
    path: tuple[str | int, ...]
    code: str
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.path)) or '<body>'}: {self.message}"


def form_error_body(errors: Iterable[FormError]) -> dict[str, Any]:
    """Discord's nested `errors` object: {"content": {"_errors": [{"code", "message"}]}}."""
    tree: dict[str, Any] = {}
    for err in errors:
        node = tree
        for part in err.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": err.code, "message": err.message})
    return {"message": "Invalid Form Body", "code": 50035, "errors": tree}


def _max_len(value: Any, limit: int, path: tuple, errors: list[FormError], minimum: int = 0) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        errors.append(FormError(path, "BASE_TYPE_STRING", "Must be a string."))
    elif len(value) > limit:
        errors.append(FormError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
    elif len(value) < minimum:
        errors.append(FormError(path, "BASE_TYPE_MIN_LENGTH", f"Must be {minimum} or more in length."))


def _max_items(items: list | None, limit: int, path: tuple, errors: list[FormError], minimum: int = 0) -> None:
    if items is None:
        return
    if len(items) > limit:
        errors.append(FormError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
    elif len(items) < minimum:
        errors.append(FormError(path, "BASE_TYPE_MIN_LENGTH", f"Must be {minimum} or more in length."))


def check_embeds(embeds: list[dict[str, Any]] | None) -> list[FormError]:
    errors: list[FormError] = []
    if not embeds:
        return errors
    _max_items(embeds, 10, ("embeds",), errors)
    total = 0
    for i, embed in enumerate(embeds):
        path = ("embeds", i)
        fields = embed.get("fields") or []
        texts = [
            (embed.get("title"), 256, path + ("title",)),
            (embed.get("description"), 4096, path + ("description",)),
            ((embed.get("footer") or {}).get("text"), 2048, path + ("footer", "text")),
            ((embed.get("author") or {}).get("name"), 256, path + ("author", "name")),
        ]
        _max_items(fields, 25, path + ("fields",), errors)
        for j, fld in enumerate(fields):
            texts.append((fld.get("name"), 256, path + ("fields", j, "name")))
            texts.append((fld.get("value"), 1024, path + ("fields", j, "value")))
        for text, limit, text_path in texts:
            _max_len(text, limit, text_path, errors)
            total += len(text) if isinstance(text, str) else 0
    if total > 6000:
        errors.append(FormError(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"))
    return errors


def _check_custom_id(comp: dict[str, Any], path: tuple, seen: set[str], errors: list[FormError]) -> None:
    custom_id = comp.get("custom_id")
    if custom_id is None:
        errors.append(FormError(path + ("custom_id",), "BASE_TYPE_REQUIRED", "This field is required"))
        return
    _max_len(custom_id, 100, path + ("custom_id",), errors, minimum=1)
    if custom_id in seen:
        errors.append(FormError(path + ("custom_id",), "COMPONENT_CUSTOM_ID_DUPLICATED",
                                f"Component custom id cannot be duplicated ({custom_id!r})"))
    seen.add(custom_id)


def _check_select(comp: dict[str, Any], path: tuple, seen: set[str], errors: list[FormError]) -> None:
    _check_custom_id(comp, path, seen, errors)
    _max_len(comp.get("placeholder"), 150, path + ("placeholder",), errors)
    if comp["type"] == 3:
        options = comp.get("options") or []
        _max_items(options, 25, path + ("options",), errors, minimum=1)
        for k, opt in enumerate(options):
            for key in ("label", "value", "description"):
                _max_len(opt.get(key), 100, path + ("options", k, key), errors)
    for key, low, high in (("min_values", 0, 25), ("max_values", 1, 25)):
        value = comp.get(key)
        if value is not None and not low <= value <= high:
            errors.append(FormError(path + (key,), "NUMBER_TYPE_MAX", f"{key} must be between {low} and {high}"))


def _check_button(comp: dict[str, Any], path: tuple, seen: set[str], errors: list[FormError]) -> None:
    _max_len(comp.get("label"), 80, path + ("label",), errors)
    if comp.get("style") == 5:
        if not comp.get("url"):
            errors.append(FormError(path + ("url",), "BASE_TYPE_REQUIRED", "A link button needs a url"))
    elif comp.get("style") != 6:
        _check_custom_id(comp, path, seen, errors)


def _check_interactive(comp: dict[str, Any], path: tuple, seen: set[str], errors: list[FormError]) -> None:
    """A button, select or text input anywhere in a message or modal."""
    if comp.get("type") == BUTTON:
        _check_button(comp, path, seen, errors)
    elif comp.get("type") in SELECT_TYPES:
        _check_select(comp, path, seen, errors)
    elif comp.get("type") == TEXT_INPUT:
        _check_custom_id(comp, path, seen, errors)
        _max_len(comp.get("value"), 4000, path + ("value",), errors)
        _max_len(comp.get("placeholder"), 100, path + ("placeholder",), errors)
        for key in ("min_length", "max_length"):
            value = comp.get(key)
            if value is not None and not 0 <= value <= 4000:
                errors.append(FormError(path + (key,), "NUMBER_TYPE_MAX", f"{key} must be between 0 and 4000"))


def check_components(components: list[dict[str, Any]] | None, flags: int = 0) -> list[FormError]:
    """Classic message components: ≤ 5 action rows; ≤ 5 buttons or 1 select per row.
    With the IS_COMPONENTS_V2 flag, the layout of :func:`check_v2_components`."""
    errors: list[FormError] = []
    if not components:
        return errors
    seen: set[str] = set()
    if flags & IS_COMPONENTS_V2:
        return check_v2_components(components)
    _max_items(components, 5, ("components",), errors)
    for i, row in enumerate(components):
        path = ("components", i)
        if row.get("type") != ACTION_ROW:
            errors.append(FormError(path + ("type",), "UNION_TYPE_CHOICES",
                                    "Top-level components must be action rows (other types need IS_COMPONENTS_V2)"))
            continue
        _check_action_row(row, path, seen, errors)
    return errors


def _check_action_row(row: dict[str, Any], path: tuple, seen: set[str], errors: list[FormError]) -> None:
    children = row.get("components") or []
    _max_items(children, 5, path + ("components",), errors, minimum=1)
    if any(c.get("type") in SELECT_TYPES for c in children) and len(children) > 1:
        errors.append(FormError(path + ("components",), "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                                "The specified component exceeds the maximum width"))
    for j, comp in enumerate(children):
        if comp.get("type") != BUTTON and comp.get("type") not in SELECT_TYPES:
            errors.append(FormError(path + ("components", j, "type"), "UNION_TYPE_CHOICES",
                                    "An action row holds buttons or one select menu"))
        _check_interactive(comp, path + ("components", j), seen, errors)


def check_v2_components(components: list[dict[str, Any]]) -> list[FormError]:
    """A Components V2 layout: top level containers, text displays, action rows, sections,
    separators, media galleries and files (a container holds the same but containers);
    buttons and selects only inside action rows (or as a section's accessory); at most
    40 components in all, nested ones counted; at most 4,000 characters over all text
    displays."""
    errors: list[FormError] = []
    seen: set[str] = set()
    count = 0
    text = 0

    def visit(comp: dict[str, Any], path: tuple, allowed: set[int], where: str) -> None:
        nonlocal count, text
        count += 1
        kind = comp.get("type")
        if kind not in allowed:
            errors.append(FormError(path + ("type",), "UNION_TYPE_CHOICES",
                                    f"Component type {kind} is not allowed {where}"))
            return
        if kind == ACTION_ROW:
            _check_action_row(comp, path, seen, errors)
            count += len(comp.get("components") or [])
        elif kind == CONTAINER:
            children = comp.get("components") or []
            _max_items(children, V2_MAX_COMPONENTS, path + ("components",), errors, minimum=1)
            for j, child in enumerate(children):
                visit(child, path + ("components", j), V2_IN_CONTAINER, "in a container")
        elif kind == SECTION:
            children = comp.get("components") or []
            _max_items(children, 3, path + ("components",), errors, minimum=1)
            for j, child in enumerate(children):
                visit(child, path + ("components", j), {TEXT_DISPLAY}, "in a section")
            if "accessory" not in comp:
                errors.append(FormError(path + ("accessory",), "BASE_TYPE_REQUIRED", "This field is required"))
            else:
                visit(comp["accessory"], path + ("accessory",), {BUTTON, THUMBNAIL}, "as a section's accessory")
        elif kind == TEXT_DISPLAY:
            content = comp.get("content")
            _max_len(content, V2_MAX_TEXT, path + ("content",), errors, minimum=1)
            if content is None:
                errors.append(FormError(path + ("content",), "BASE_TYPE_REQUIRED", "This field is required"))
            text += len(content) if isinstance(content, str) else 0
        elif kind == BUTTON:
            _check_interactive(comp, path, seen, errors)

    for i, comp in enumerate(components):
        visit(comp, ("components", i), V2_TOP_LEVEL, "at the top level of a message")
    if count > V2_MAX_COMPONENTS:
        errors.append(FormError(("components",), "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED",
                                f"A message holds {V2_MAX_COMPONENTS} components at most, nested ones counted "
                                f"(this one has {count})"))
    if text > V2_MAX_TEXT:
        errors.append(FormError(("components",), "COMPONENT_MAX_TOTAL_TEXT_EXCEEDED",
                                f"The text displays of a message hold {V2_MAX_TEXT} characters at most "
                                f"(these hold {text})"))
    return errors


def text_displays(components: list[dict[str, Any]]) -> list[str]:
    """The text of every text display, in layout order (through containers and sections)."""
    found: list[str] = []
    for comp in components:
        if comp.get("type") == TEXT_DISPLAY and isinstance(comp.get("content"), str):
            found.append(comp["content"])
        found += text_displays(comp.get("components") or [])
    return found


def check_message(body: dict[str, Any], *, files: int = 0, creating: bool = True,
                  was: dict[str, Any] | None = None) -> list[FormError]:
    """A message create or edit body (also interaction messages and followups). ``was``
    is the message an edit changes, as it is (its ``flags``, ``content`` and ``embeds``).

    With the IS_COMPONENTS_V2 flag (1 << 15) a message has no content, embeds, poll or
    stickers: its text is in text displays. The flag may be added by an edit (which then
    clears the content and embeds), never removed."""
    errors: list[FormError] = []
    old_flags = (was or {}).get("flags") or 0
    flags = body.get("flags") if body.get("flags") is not None else old_flags
    if old_flags & IS_COMPONENTS_V2 and not flags & IS_COMPONENTS_V2:
        errors.append(FormError(("flags",), "MESSAGE_CANNOT_REMOVE_COMPONENTS_V2_FLAG",
                                "The IS_COMPONENTS_V2 flag cannot be removed from a message"))
    v2 = bool((flags | old_flags) & IS_COMPONENTS_V2)
    if v2:
        for key in ("content", "embeds", "poll", "sticker_ids"):
            after = body[key] if key in body else (was or {}).get(key)
            if after:
                errors.append(FormError((key,), "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                                        f"{key} cannot be used with the IS_COMPONENTS_V2 flag"
                                        + ("" if key in body else " (an edit adding the flag sets it to null)")))
        errors += check_v2_components(body.get("components") or [])
    else:
        _max_len(body.get("content"), 2000, ("content",), errors)
        errors += check_embeds(body.get("embeds"))
        errors += check_components(body.get("components"))
    empty = not (body.get("content") or body.get("embeds") or body.get("components") or files
                 or body.get("sticker_ids") or body.get("poll"))
    if creating and empty:
        errors.append(FormError((), "50006", "Cannot send an empty message"))
    return errors


def check_modal(data: dict[str, Any]) -> list[FormError]:
    """Modal: title ≤ 45, 1–5 components, text input label ≤ 45, value ≤ 4000, placeholder ≤ 100."""
    errors: list[FormError] = []
    _max_len(data.get("title"), 45, ("data", "title"), errors, minimum=1)
    _max_len(data.get("custom_id"), 100, ("data", "custom_id"), errors, minimum=1)
    components = data.get("components") or []
    _max_items(components, 5, ("data", "components"), errors, minimum=1)
    seen: set[str] = set()
    for i, comp in enumerate(components):
        path = ("data", "components", i)
        if comp.get("type") == 1:
            inner = comp.get("components") or []
            _max_items(inner, 1, path + ("components",), errors, minimum=1)
            for j, child in enumerate(inner):
                _max_len(child.get("label"), 45, path + ("components", j, "label"), errors)
                _check_interactive(child, path + ("components", j), seen, errors)
        elif comp.get("type") == LABEL:
            _max_len(comp.get("label"), 45, path + ("label",), errors, minimum=1)
            _max_len(comp.get("description"), 100, path + ("description",), errors)
            _check_interactive(comp.get("component") or {}, path + ("component",), seen, errors)
    return errors


def check_thread_name(name: Any) -> list[FormError]:
    errors: list[FormError] = []
    if name is None:
        errors.append(FormError(("name",), "BASE_TYPE_REQUIRED", "This field is required"))
    _max_len(name, 100, ("name",), errors, minimum=1)
    return errors


COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def check_commands(commands: list[dict[str, Any]]) -> list[FormError]:
    """Application command definitions: names, descriptions ≤ 100, ≤ 25 options/choices."""
    errors: list[FormError] = []
    _max_items(commands, 100, (), errors)
    names: set[tuple[int, str]] = set()
    for i, cmd in enumerate(commands):
        key = (cmd.get("type", 1), cmd.get("name", ""))
        if key in names:
            errors.append(FormError((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                    f"Application command names must be unique ({key[1]})"))
        names.add(key)
        _check_command_node(cmd, (i,), errors, chat_input=cmd.get("type", 1) == 1)
    return errors


def _check_command_node(node: dict[str, Any], path: tuple, errors: list[FormError], chat_input: bool) -> None:
    name = node.get("name") or ""
    if chat_input and (not COMMAND_NAME.match(name) or name != name.lower()):
        errors.append(FormError(path + ("name",), "APPLICATION_COMMAND_INVALID_NAME",
                                f"Command name is invalid ({name!r}): 1-32 lowercase letters, digits, - or _"))
    elif not chat_input:
        _max_len(name, 32, path + ("name",), errors, minimum=1)
    if chat_input:
        _max_len(node.get("description"), 100, path + ("description",), errors, minimum=1)
    options = node.get("options") or []
    _max_items(options, 25, path + ("options",), errors)
    for j, opt in enumerate(options):
        opt_path = path + ("options", j)
        _check_command_node(opt, opt_path, errors, chat_input=True)
        choices = opt.get("choices") or []
        _max_items(choices, 25, opt_path + ("choices",), errors)
        for k, choice in enumerate(choices):
            _max_len(choice.get("name"), 100, opt_path + ("choices", k, "name"), errors, minimum=1)


def check_autocomplete(data: dict[str, Any]) -> list[FormError]:
    errors: list[FormError] = []
    choices = data.get("choices") or []
    _max_items(choices, 25, ("data", "choices"), errors)
    for k, choice in enumerate(choices):
        _max_len(choice.get("name"), 100, ("data", "choices", k, "name"), errors, minimum=1)
    return errors


# ---------------------------------------------------------------- OpenAPI ---

class OpenAPISpec:
    """Discord's OpenAPI 3.1 spec: route matching and request-body validation."""

    def __init__(self, spec: dict[str, Any]) -> None:
        # Discord's API takes a snowflake as a JSON integer as well as a string (discord.py
        # sends `recipient_id`, `message_id`… as ints); the spec only lists the string form.
        schemas = spec["components"]["schemas"]
        schemas["SnowflakeType"] = {"anyOf": [schemas["SnowflakeType"], {"type": "integer", "minimum": 0}]}
        self.spec = spec
        self.templates = [split_template(path) for path in spec["paths"]]
        self._validators: dict[tuple[str, str], jsonschema.Draft202012Validator | None] = {}

    def match(self, method: str, path: str) -> str | None:
        """The spec path template for a concrete path, or None when the spec has no such route."""
        return match_template(self.templates, method, path, lambda t: method.lower() in self.spec["paths"][t])

    def validate(self, template: str, method: str, body: Any) -> list[FormError]:
        validator = self._validator(template, method.lower())
        if validator is None:
            return []
        return [
            FormError(tuple(err.absolute_path), "SCHEMA", f"OpenAPI: {err.message[:300]}")
            for err in sorted(validator.iter_errors(body), key=lambda e: e.path)[:5]
        ]

    def _validator(self, template: str, method: str) -> jsonschema.Draft202012Validator | None:
        key = (template, method)
        if key not in self._validators:
            operation = self.spec["paths"][template][method]
            content = (operation.get("requestBody") or {}).get("content") or {}
            schema = (content.get("application/json") or {}).get("schema")
            # The operation's schema with the spec's components beside it, so `#/components/...` refs resolve.
            root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.spec["components"], **(schema or {})}
            self._validators[key] = jsonschema.Draft202012Validator(root) if schema else None
        return self._validators[key]


def split_template(template: str) -> tuple[str, tuple[str, ...]]:
    return template, tuple(template.strip("/").split("/"))


def match_template(templates, method: str, path: str, accepts=lambda t: True) -> str | None:
    """Match a concrete path against `{param}` templates; literal segments beat parameters."""
    parts = path.strip("/").split("/")
    best, best_literals = None, -1
    for template, segments in templates:
        if len(segments) != len(parts) or not accepts(template):
            continue
        literals = 0
        for seg, part in zip(segments, parts):
            if seg.startswith("{"):
                continue
            if seg != part:
                break
            literals += 1
        else:
            if literals > best_literals:
                best, best_literals = template, literals
    return best


def load_spec(path: Path = SPEC_PATH) -> OpenAPISpec | None:
    """The spec, or None outside CI when the file is absent (with CI=true it must exist)."""
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            raise FileNotFoundError(f"CI=true but the Discord OpenAPI spec is missing: {path}")
        return None
    return _parsed_spec(path)


@cache
def _parsed_spec(path: Path) -> OpenAPISpec:
    return OpenAPISpec(json.loads(path.read_text()))  # 1.2 MB: parse once per process


# --- who a message would ping --------------------------------------------------------------

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


def pings(message: dict[str, Any]) -> list[str]:
    """The mentions in a message's content and text displays that Discord would turn into
    pings, given its ``allowed_mentions`` (absent: Discord parses every kind)."""
    texts = [message.get("content")] + text_displays(message.get("components") or [])
    content = "\n".join(t for t in texts if isinstance(t, str) and t)
    if not content:
        return []
    allowed = message.get("allowed_mentions")
    parse = set(allowed.get("parse") or []) if isinstance(allowed, dict) else {"users", "roles", "everyone"}
    users = {str(u) for u in (allowed or {}).get("users") or []} if isinstance(allowed, dict) else set()
    roles = {str(r) for r in (allowed or {}).get("roles") or []} if isinstance(allowed, dict) else set()
    found = []
    found += [f"user:{u}" for u in _USER_MENTION.findall(content) if "users" in parse or u in users]
    found += [f"role:{r}" for r in _ROLE_MENTION.findall(content) if "roles" in parse or r in roles]
    found += [f"@{e}" for e in _EVERYONE.findall(content) if "everyone" in parse]
    return found
