"""``/story memory``: what the storyteller will be given for the next scene, part by part,
with what each part costs in tokens (core/engine.py ``Memory``)."""

from __future__ import annotations

import discord

from bot.ui.common import fitted_embed, shorten
from core import messages as msg
from core.engine import Memory


def _lines(items: list[tuple[str, str]]) -> str:
    return "\n".join(f"• **{name}** — {why}" if why else f"• **{name}**" for name, why in items)


def memory_embed(title: str, memory: Memory) -> discord.Embed:
    report = memory.report
    lore = _lines(memory.lore) or msg.MEMORY_NO_LORE
    if memory.lore_left_out:
        lore += "\n" + msg.MEMORY_LORE_LEFT_OUT.format(entries=_lines(memory.lore_left_out))
    chapters = "\n".join(
        msg.MEMORY_CHAPTER.format(title=name, tokens=tokens) if tokens is not None
        else msg.MEMORY_CHAPTER_PENDING.format(title=name)
        for name, tokens in memory.chapters
    ) or msg.MEMORY_NO_CHAPTERS
    chapter_tokens = sum(tokens or 0 for _, tokens in memory.chapters)
    scenes = msg.MEMORY_SCENES.format(kept=memory.scenes_kept, uncovered=memory.scenes_uncovered)
    if memory.scenes_kept < memory.scenes_uncovered:
        scenes += "\n" + msg.MEMORY_SCENES_SUMMARISED_FIRST.format(count=memory.scenes_uncovered - memory.scenes_kept)
    fields = [
        (msg.MEMORY_FRAME.format(tokens=memory.frame_tokens), msg.MEMORY_FRAME_TEXT),
        (msg.MEMORY_CHARACTERS.format(tokens=memory.characters_tokens),
         ", ".join(memory.characters) or msg.MEMORY_NO_CHARACTERS),
        (msg.MEMORY_LORE.format(tokens=memory.lore_tokens, budget=memory.lore_budget), lore),
        (msg.MEMORY_CHAPTERS.format(tokens=chapter_tokens), chapters),
        (msg.MEMORY_ROLLING.format(tokens=memory.rolling_tokens),
         shorten(memory.rolling, 900) if memory.rolling else msg.MEMORY_NO_ROLLING),
        (msg.MEMORY_RECENT.format(tokens=memory.scenes_tokens), scenes),
        (msg.MEMORY_NOTE.format(tokens=memory.note_tokens), memory.author_note or msg.MEMORY_NO_NOTE),
    ]
    description = msg.MEMORY_TOTAL.format(used=report.used, budget=report.budget, percent=report.percent,
                                          reply=memory.reply_tokens, context=report.context_length)
    if memory.summaries_due:
        description += "\n" + msg.MEMORY_SUMMARIES_DUE.format(count=memory.summaries_due)
    return fitted_embed(msg.MEMORY_TITLE.format(title=title), fields, description=description)
