"""How a scene looks in Discord: its text and its persistent components.

Components outlive the process (docs/architecture.md, "Scene components"): each is a ``DynamicItem`` whose custom_id
is ``kahani:v1:<action>:<id>[:<n>]``. Its template admits only ids a column can hold
(core/ids.py), so a forged or out-of-range id matches nothing and is answered as a stale
component. ``from_custom_id`` only parses — every check against the database happens in
the callback, which calls a typed handler of the cog it belongs to (cogs/scenes.py,
cogs/votes.py, cogs/narration.py, cogs/chapters.py).

A scene message is a Components V2 card (bot/ui/render.py ``card``): one container in
the story's accent colour (:func:`accent`) with the scene's text, the choices as a
numbered list, a group vote's tally (:func:`with_tally`) and the components in action
rows. Messages from before the cards (content and classic rows) keep working: their
custom ids are the same, and :func:`disabled_copy` / :func:`with_tally` answer in the
message's own format.

Components (5 rows at most): row 1 the choices + Your action; row 2 Regenerate, Branch,
Continue, Narrate, New chapter (≥ 80 % of the context); row 3 the variant select (more
than one variant); row 4 the rating select; row 5 Favourite, Close vote and Join (group stories), Retry.
The largest card is 25 components (of Discord's 40): the container, three text displays
(text, choices, tally) and 5 rows holding 16 items.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord.ui.select import BaseSelect

from bot.errors import funnel_errors
from bot.types import Interaction
from bot.ui.render import CARD_LIMIT, NO_PINGS
from core import messages as msg
from core.choices import Choice, shorten_label
from core.ids import ID_PATTERN

if TYPE_CHECKING:
    from cogs.chapters import Chapters
    from cogs.narration import Narration
    from cogs.scenes import Scenes
    from cogs.votes import Votes

PREFIX = "kahani:v1"
ID = ID_PATTERN  # 1..2^31-1 in ASCII digits: in every template below
HEADER_PREFIX = "-# → "
INSTRUCTION_LIMIT = 1000  # a player's own action or a branch direction
SCENE_NOTE_LIMIT = 300  # a note to the storyteller for one scene
# A story's cards are one of these colours (picked by its id): stories side by side in a
# channel list, or in DMs, tell apart at a glance.
ACCENTS = (0x3B7DD8, 0xC0392B, 0x27AE60, 0x8E44AD, 0xD68910, 0x16A085, 0xB03A78, 0x5D6D7E)
TALLY_ROOM = 900  # characters a group story's last card keeps free for the vote's tally
TALLY_ID = 41  # the tally's text display (a component id, unique in its message)


def _loaded(interaction: Interaction, name: str) -> Any:
    found = interaction.client.get_cog(name)
    assert found is not None, f"the {name} cog is not loaded"
    return found


# Typed accessors: each component's callback calls a typed handler of the cog it belongs to.
def scenes(interaction: Interaction) -> Scenes:
    return _loaded(interaction, "Scenes")


def votes(interaction: Interaction) -> Votes:
    return _loaded(interaction, "Votes")


def narration(interaction: Interaction) -> Narration:
    return _loaded(interaction, "Narration")


def chapters(interaction: Interaction) -> Chapters:
    return _loaded(interaction, "Chapters")


# What a click on a button that carries one id does: (the click, the id) → the handler.
Handler = Callable[[Interaction, int], Awaitable[None]]


# --- text ---------------------------------------------------------------------------------


def one_line(text: str, limit: int = INSTRUCTION_LIMIT) -> str:
    """An instruction as it appears in a scene's header line."""
    return " ".join(text.split())[:limit]


def header(instruction: str | None) -> str:
    """The first line of a scene message: what led to it (read back by Retry)."""
    return f"{HEADER_PREFIX}{one_line(instruction)}" if instruction else ""


def accent(story_id: int) -> int:
    """The accent colour of a story's cards."""
    return ACCENTS[story_id % len(ACCENTS)]


def visible_text(message: discord.Message | None) -> str:
    """What a message shows: its content, or (a card) its text displays, a blank line apart."""
    if message is None:
        return ""
    blocks = [message.content] if message.content else []
    blocks += [c.content for c in _walk(message.components) if isinstance(c, discord.TextDisplay)]
    return "\n\n".join(blocks)


def _walk(components: Sequence[Any]) -> Iterator[Any]:
    for component in components:
        yield component
        yield from _walk(getattr(component, "children", None) or [])


def instruction_from(message: discord.Message | None) -> str | None:
    """The instruction in a message's header line (for Retry of a free-text action)."""
    text = visible_text(message)
    if not text.startswith(HEADER_PREFIX):
        return None
    return text.split("\n", 1)[0][len(HEADER_PREFIX):].strip() or None


def header_line(message: discord.Message | None) -> str:
    """A message's header line (what led to the scene), or ""."""
    text = visible_text(message)
    return text.split("\n", 1)[0] if text.startswith(HEADER_PREFIX) else ""


def choices_footer(choices: Sequence[Choice]) -> str:
    """The choices in full, under the scene (buttons may be shortened)."""
    return "\n".join(f"**{n}.** {c.text}" for n, c in enumerate(choices, start=1))


# --- components --------------------------------------------------------------------------


class ChoiceButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=rf"{PREFIX}:choose:(?P<variant>{ID}):(?P<n>[1-6])"):
    def __init__(self, variant_id: int, n: int, label: str = "…") -> None:
        super().__init__(discord.ui.Button(
            label=f"{n}. {label}"[:80], style=discord.ButtonStyle.primary, row=0,
            custom_id=f"{PREFIX}:choose:{variant_id}:{n}",
        ))
        self.variant_id, self.n = variant_id, n

    @classmethod
    async def from_custom_id(cls, interaction: Any, item: Any, match: re.Match[str]) -> ChoiceButton:
        return cls(int(match["variant"]), int(match["n"]))

    @funnel_errors
    async def callback(self, interaction: Interaction) -> None:
        await scenes(interaction).on_choice(interaction, self.variant_id, self.n)


def _simple_button(action: str, label: str, style: discord.ButtonStyle, row: int, handler: Handler,
                   emoji: str | None = None) -> type[discord.ui.DynamicItem[Any]]:
    """A button that carries a variant id and hands the click to a Stories method."""

    class _Button(discord.ui.DynamicItem[discord.ui.Button[Any]], template=rf"{PREFIX}:{action}:(?P<id>{ID})"):
        def __init__(self, target_id: int) -> None:
            super().__init__(discord.ui.Button(
                label=label, style=style, row=row, emoji=emoji, custom_id=f"{PREFIX}:{action}:{target_id}",
            ))
            self.target_id = target_id

        @classmethod
        async def from_custom_id(cls, interaction: Any, item: Any, match: re.Match[str]) -> Any:
            return cls(int(match["id"]))

        @funnel_errors
        async def callback(self, interaction: Interaction) -> None:
            await handler(interaction, self.target_id)

    _Button.__name__ = _Button.__qualname__ = f"{action.title()}Button"
    return _Button


ActionButton = _simple_button("act", "Your action", discord.ButtonStyle.success, 0,
                              lambda i, v: scenes(i).on_action(i, v), "✍️")
RegenerateButton = _simple_button("regen", "Regenerate", discord.ButtonStyle.secondary, 1,
                                  lambda i, v: scenes(i).on_regenerate(i, v), "🔄")
BranchButton = _simple_button("branch", "Branch", discord.ButtonStyle.secondary, 1,
                              lambda i, v: scenes(i).on_branch(i, v), "🌿")
ContinueButton = _simple_button("cont", "Continue", discord.ButtonStyle.secondary, 1,
                                lambda i, v: scenes(i).on_continue(i, v), "➕")
NarrateButton = _simple_button("narrate", "Narrate", discord.ButtonStyle.secondary, 1,
                               lambda i, v: narration(i).narrate_button(i, v), "🔊")
ChapterButton = _simple_button("chapter", "New chapter", discord.ButtonStyle.danger, 1,
                               lambda i, v: chapters(i).new_chapter_button(i, v), "📖")
FavouriteButton = _simple_button("fav", "Favourite", discord.ButtonStyle.secondary, 4,
                                 lambda i, v: scenes(i).on_favourite(i, v), "⭐")
# Group stories (cogs/votes.py): close the vote early, join the story's table.
CloseVoteButton = _simple_button("close", "Close vote", discord.ButtonStyle.danger, 4,
                                 lambda i, v: votes(i).on_close(i, v), "🗳️")
JoinButton = _simple_button("join", "Join", discord.ButtonStyle.success, 4, lambda i, v: votes(i).on_join(i, v), "🙋")


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=rf"{PREFIX}:retry:(?P<kind>open|choose|act|regen|cont|branch):(?P<id>{ID})(?::(?P<n>[1-6]))?"):
    """Retry a failed or interrupted request; what to retry is in the custom_id (and, for
    a free-text action, in the header line of the message the button is on)."""

    def __init__(self, kind: str, target_id: int, n: int | None = None) -> None:
        suffix = f":{n}" if n else ""
        super().__init__(discord.ui.Button(
            label="Retry", style=discord.ButtonStyle.primary, emoji="🔁", row=4,
            custom_id=f"{PREFIX}:retry:{kind}:{target_id}{suffix}",
        ))
        self.kind, self.target_id, self.n = kind, target_id, n

    @classmethod
    async def from_custom_id(cls, interaction: Any, item: Any, match: re.Match[str]) -> RetryButton:
        return cls(match["kind"], int(match["id"]), int(match["n"]) if match["n"] else None)

    @funnel_errors
    async def callback(self, interaction: Interaction) -> None:
        await scenes(interaction).on_retry(interaction, self.kind, self.target_id, self.n)


class VariantSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=rf"{PREFIX}:variant:(?P<scene>{ID})"):
    def __init__(self, scene_id: int, options: Sequence[discord.SelectOption] = ()) -> None:
        super().__init__(discord.ui.Select(
            custom_id=f"{PREFIX}:variant:{scene_id}", placeholder="Versions of this scene",
            options=list(options) or [discord.SelectOption(label="…", value="0")], row=2,
        ))
        self.scene_id = scene_id

    @classmethod
    async def from_custom_id(cls, interaction: Any, item: Any, match: re.Match[str]) -> VariantSelect:
        return cls(int(match["scene"]))

    @funnel_errors
    async def callback(self, interaction: Interaction) -> None:
        values = (interaction.data or {}).get("values") or []
        await scenes(interaction).on_select_variant(interaction, self.scene_id, values[0] if values else "")


class RatingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=rf"{PREFIX}:rate:(?P<variant>{ID})"):
    def __init__(self, variant_id: int, current: int | None = None) -> None:
        options = [
            discord.SelectOption(label="★" * n + "☆" * (5 - n), value=str(n), default=current == n)
            for n in range(5, 0, -1)
        ]
        super().__init__(discord.ui.Select(
            custom_id=f"{PREFIX}:rate:{variant_id}", placeholder="Rate this scene", options=options, row=3,
        ))
        self.variant_id = variant_id

    @classmethod
    async def from_custom_id(cls, interaction: Any, item: Any, match: re.Match[str]) -> RatingSelect:
        return cls(int(match["variant"]))

    @funnel_errors
    async def callback(self, interaction: Interaction) -> None:
        values = (interaction.data or {}).get("values") or []
        await scenes(interaction).on_rate(interaction, self.variant_id, values[0] if values else "")


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    ChoiceButton, ActionButton, RegenerateButton, BranchButton, ContinueButton, NarrateButton,
    ChapterButton, FavouriteButton, RetryButton, VariantSelect, RatingSelect, CloseVoteButton, JoinButton,
)


@dataclass(frozen=True)
class VariantInfo:
    """What the variant select shows for one variant."""

    id: int
    number: int
    kind: str
    snippet: str
    rating: int | None
    favourite: bool
    active: bool


def scene_view(
    variant_id: int,
    scene_id: int,
    choices: Sequence[Choice],
    variants: Sequence[VariantInfo],
    *,
    rating: int | None = None,
    offer_chapter: bool = False,
    group: bool = False,
    favourite: bool = False,
) -> discord.ui.View:
    """The live components of the latest scene (in a group story the choices are votes,
    with Close vote and Join on the last row); **Favourite** shows whether it is one."""
    view = discord.ui.View(timeout=None)
    for n, choice in enumerate(choices[:4], start=1):
        view.add_item(ChoiceButton(variant_id, n, shorten_label(choice.label or choice.text, 76)))
    view.add_item(ActionButton(variant_id))
    for item in (RegenerateButton, BranchButton, ContinueButton, NarrateButton):
        view.add_item(item(variant_id))
    if offer_chapter:
        view.add_item(ChapterButton(variant_id))
    if len(variants) > 1:
        view.add_item(VariantSelect(scene_id, variant_options(variants)))
    view.add_item(RatingSelect(variant_id, rating))
    marked = FavouriteButton(variant_id)  # the label stays; a favourite is a filled, green star
    marked.item.emoji = "⭐" if favourite else "☆"
    marked.item.style = discord.ButtonStyle.success if favourite else discord.ButtonStyle.secondary
    view.add_item(marked)
    if group:
        view.add_item(CloseVoteButton(variant_id))
        view.add_item(JoinButton(variant_id))
    return view


def variant_options(variants: Sequence[VariantInfo]) -> list[discord.SelectOption]:
    """≤ 25 options, newest first: number, kind, rating, a snippet."""
    options = []
    for v in sorted(variants, key=lambda v: v.number, reverse=True)[:25]:
        stars = f" {'★' * v.rating}" if v.rating else ""
        fav = " ⭐" if v.favourite else ""
        options.append(discord.SelectOption(
            label=f"#{v.number} {v.kind}{stars}{fav}"[:100],
            value=str(v.id),
            description=(v.snippet or "…")[:100],
            default=v.active,
        ))
    return options


def retry_view(kind: str, target_id: int, n: int | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RetryButton(kind, target_id, n))
    return view


def disabled_copy(message: discord.Message | None,
                  chosen_custom_id: str | None = None) -> discord.ui.View | discord.ui.LayoutView | None:
    """The message's components, all disabled (the chosen one marked), as a finished
    view: used to answer a click with a type-7 update, which costs no channel budget. A
    card stays a card (its text displays kept); a message from before the cards keeps
    its classic rows."""
    if message is None or not message.components:
        return None
    view: discord.ui.View | discord.ui.LayoutView
    if message.flags.components_v2:
        view = discord.ui.LayoutView.from_message(message, timeout=None)
    else:
        view = discord.ui.View.from_message(message, timeout=None)
    _disable(view, chosen_custom_id)
    return view


def favourite_copy(message: discord.Message | None, favourite: bool) -> discord.ui.View | discord.ui.LayoutView | None:
    """The message's components with **Favourite** showing ``favourite`` (a card stays a
    card): the click's message is edited with it, nothing else of the scene changes."""
    if message is None or not message.components:
        return None
    view: discord.ui.View | discord.ui.LayoutView
    if message.flags.components_v2:
        view = discord.ui.LayoutView.from_message(message, timeout=None)
    else:
        view = discord.ui.View.from_message(message, timeout=None)
    for item in view.walk_children():
        if isinstance(item, discord.ui.Button) and (item.custom_id or "").startswith(f"{PREFIX}:fav:"):
            item.emoji = "⭐" if favourite else "☆"
            item.style = discord.ButtonStyle.success if favourite else discord.ButtonStyle.secondary
    view.stop()  # finished: the DynamicItems answer its clicks
    return view


def _disable(view: discord.ui.View | discord.ui.LayoutView, chosen_custom_id: str | None) -> None:
    for item in view.walk_children():
        if isinstance(item, discord.ui.Button | BaseSelect):  # the items that can be disabled
            item.disabled = True
        if isinstance(item, discord.ui.Button) and item.custom_id == chosen_custom_id:
            item.style = discord.ButtonStyle.success
    view.stop()  # finished: discord.py does not keep listening for these


def with_tally(message: discord.Message, tally: discord.Embed, *, disable: bool = False,
               chosen_custom_id: str | None = None) -> dict[str, Any]:
    """The edit that shows a vote's ``tally`` on the scene's last message (``disable``:
    its components go grey, the chosen one marked). A card gets it as a text display
    above its components (cut to the room its text leaves); a message from before the
    cards as its embed."""
    if not message.flags.components_v2:
        kwargs: dict[str, Any] = {"embed": tally, "allowed_mentions": NO_PINGS}
        if disable:
            kwargs["view"] = disabled_copy(message, chosen_custom_id)
        return kwargs
    found = discord.ui.LayoutView.from_message(message, timeout=None)
    items = [i for i in found.children if not (isinstance(i, discord.ui.TextDisplay) and i.id == TALLY_ID)]
    container = next((i for i in items if isinstance(i, discord.ui.Container)), None)
    children = container.children if container is not None else items
    children = [c for c in children if not (isinstance(c, discord.ui.TextDisplay) and c.id == TALLY_ID)]
    used = sum(len(i.content) for i in found.walk_children()
               if isinstance(i, discord.ui.TextDisplay) and i.id != TALLY_ID)
    text = _fit(f"**{tally.title}**\n{tally.description or ''}".strip(), CARD_LIMIT - used)
    at = next((n for n, c in enumerate(children) if isinstance(c, discord.ui.ActionRow)), len(children))
    if text:
        children.insert(at, discord.ui.TextDisplay(text, id=TALLY_ID))
    layout = discord.ui.LayoutView(timeout=None)
    if container is not None:
        rebuilt: discord.ui.Container[Any] = discord.ui.Container(accent_colour=container.accent_colour)
        for child in children:
            rebuilt.add_item(child)
        children = [rebuilt if item is container else item for item in items]
    for child in children:
        layout.add_item(child)
    if disable:
        _disable(layout, chosen_custom_id)
    else:
        layout.stop()
    return {"view": layout, "allowed_mentions": NO_PINGS}  # the card's text is sent again


def _fit(text: str, room: int) -> str:
    """``text`` in ``room`` characters: whole lines while they fit, then an ellipsis."""
    if len(text) <= room:
        return text
    kept: list[str] = []
    for line in text.split("\n"):
        if len("\n".join([*kept, line, "…"])) > room:
            break
        kept.append(line)
    return "\n".join([*kept, "…"]) if kept else ""


class TextModal(discord.ui.Modal):
    """A one-field modal (Your action, Branch) that hands its text to a callback; with
    ``note``, a second, optional field for a note to the storyteller that steers only
    this scene (the callback then gets it as a third argument)."""

    def __init__(self, title: str, label: str, placeholder: str, on_submit: Any, *, default: str = "",
                 note: bool = False) -> None:
        super().__init__(title=title[:45], timeout=900)
        self.text: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=label[:45], placeholder=placeholder[:100], style=discord.TextStyle.paragraph,
            max_length=INSTRUCTION_LIMIT, min_length=2, default=default or None,
        )
        self.add_item(self.text)
        self.note: discord.ui.TextInput[Any] | None = None
        if note:
            self.note = discord.ui.TextInput(
                label=msg.SCENE_NOTE_LABEL, placeholder=msg.SCENE_NOTE_PLACEHOLDER,
                style=discord.TextStyle.paragraph, required=False, max_length=SCENE_NOTE_LIMIT,
            )
            self.add_item(self.note)
        self._on_submit = on_submit

    async def on_submit(self, interaction: Interaction) -> None:
        if self.note is not None:
            await self._on_submit(interaction, str(self.text.value), str(self.note.value or ""))
            return
        await self._on_submit(interaction, str(self.text.value))

    async def on_error(self, interaction: Interaction, error: Exception) -> None:
        from bot.errors import report_error

        await report_error(interaction, error)
