"""``/story read`` and ``/story tree``: an ephemeral reader for the story's current path
(◀ ▶, first and last page, jump to a chapter) and the shape of its tree, as text.

Pages come from core/reading.py; the reader holds them for the ten minutes its buttons
live (a private view: nothing here needs to survive a restart, the command opens it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

from bot.types import Interaction
from bot.ui.common import NO_PINGS, PrivateView, shorten
from core import messages as msg
from core.reading import Outline, Page

CHAPTER_OPTIONS = 25  # a select menu's limit


class ReaderView(PrivateView):
    """One page of the story at a time; the buttons turn pages, the menu jumps to a chapter."""

    def __init__(self, title: str, pages: Sequence[Page], chapters: Sequence[str], start: int = 0) -> None:
        super().__init__()
        self.title, self.pages, self.chapters = title, list(pages), list(chapters)
        self.index = max(0, min(start, len(self.pages) - 1))
        for button, label in ((self.first, "⏮"), (self.back, "◀"), (self.forward, "▶"), (self.last, "⏭")):
            button.label = label
        if len(self.chapters) < 2:
            self.remove_item(self.jump)
        self._refresh()

    def first_page_of(self, chapter: int) -> int:
        return next((i for i, p in enumerate(self.pages) if p.chapter >= chapter), len(self.pages) - 1)

    def embed(self) -> discord.Embed:
        page = self.pages[self.index]
        scenes = (f"{page.first_scene}" if page.first_scene == page.last_scene
                  else f"{page.first_scene}–{page.last_scene}")
        embed = discord.Embed(title=shorten(self.title, 256), description=page.text)
        chapter = self.chapters[page.chapter - 1] if 0 < page.chapter <= len(self.chapters) else ""
        embed.set_footer(text=shorten(msg.READER_FOOTER.format(
            page=self.index + 1, pages=len(self.pages), scenes=scenes, chapter=chapter), 2048))
        return embed

    def _refresh(self) -> None:
        at_start, at_end = self.index == 0, self.index >= len(self.pages) - 1
        self.first.disabled = self.back.disabled = at_start
        self.forward.disabled = self.last.disabled = at_end
        if self.jump in self.children:
            current = self.pages[self.index].chapter
            # Up to 25 chapters around the current one.
            low = max(1, min(current - CHAPTER_OPTIONS // 2, len(self.chapters) - CHAPTER_OPTIONS + 1))
            self.jump.options = [
                discord.SelectOption(label=shorten(name, 100), value=str(n), default=n == current)
                for n, name in enumerate(self.chapters[low - 1:low - 1 + CHAPTER_OPTIONS], low)
            ]

    async def _show(self, interaction: Interaction, index: int) -> None:
        self.index = max(0, min(index, len(self.pages) - 1))
        self._refresh()
        await interaction.response.edit_message(embed=self.embed(), view=self, allowed_mentions=NO_PINGS)

    @discord.ui.button(style=discord.ButtonStyle.secondary, row=0)
    async def first(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, 0)

    @discord.ui.button(style=discord.ButtonStyle.primary, row=0)
    async def back(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index - 1)

    @discord.ui.button(style=discord.ButtonStyle.primary, row=0)
    async def forward(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index + 1)

    @discord.ui.button(style=discord.ButtonStyle.secondary, row=0)
    async def last(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, len(self.pages) - 1)

    @discord.ui.select(placeholder="Jump to a chapter", row=1)
    async def jump(self, interaction: Interaction, select: discord.ui.Select[Any]) -> None:
        value = select.values[0] if select.values else ""
        chapter = int(value) if value.isdigit() and int(value) <= len(self.chapters) else 1
        await self._show(interaction, self.first_page_of(chapter))


def tree_text(tree: Outline) -> str:
    """The story's branches in a few lines (``/story tree``)."""
    lines = [msg.TREE_SUMMARY.format(path=tree.path_scenes, scenes=tree.scenes, versions=tree.versions)]
    if tree.rewound:
        lines.append(msg.TREE_REWOUND.format(count=tree.rewound))
    if not tree.forks:
        lines.append(msg.TREE_NO_FORKS)
    for fork in tree.forks:
        others = ", ".join(
            msg.TREE_OTHER.format(number=number, kind=kind, after=after) if after
            else msg.TREE_OTHER_ENDS.format(number=number, kind=kind)
            for number, kind, after in fork.others
        )
        lines.append(msg.TREE_FORK.format(scene=fork.scene_number, versions=fork.versions, active=fork.active,
                                          others=others))
    return shorten("\n".join(lines), 4000)
