"""**Previously on…**: a short recap posted before the next scene of a story that resumes
after a break (#19, async tables), read from what the story already keeps — the current
chapter's rolling summary, else the last closed chapter's summary, else the last scene —
with no call to the model. The break is a story setting (``/story settings recap_after``,
hours; 0 turns it off)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core import repository as repo
from core.models import Story

SETTINGS_KEY = "recap_after_hours"  # Story.settings
DEFAULT_HOURS = 12
MAX_HOURS = 24 * 30
SENTENCES = 3  # "a few sentences"
MAX_CHARS = 600
_SENTENCE = re.compile(r"[^.!?…]+(?:[.!?…]+[\"'”’)\]]*|$)")


def recap_after(story: Story) -> timedelta | None:
    """How long a break earns a recap; None when the story has recaps off."""
    hours = (story.settings or {}).get(SETTINGS_KEY, DEFAULT_HOURS)
    return timedelta(hours=hours) if isinstance(hours, int | float) and hours > 0 else None


def last_sentences(text: str, count: int = SENTENCES, limit: int = MAX_CHARS) -> str:
    """The last ``count`` sentences of ``text`` (whole sentences, at most ``limit``
    characters; a single longer sentence is cut at a word with "…")."""
    sentences = [s.strip() for s in _SENTENCE.findall(" ".join(text.split())) if s.strip()]
    picked: list[str] = []
    for sentence in reversed(sentences):
        if len(picked) == count or (picked and sum(len(p) + 1 for p in picked) + len(sentence) > limit):
            break
        picked.insert(0, sentence)
    recap = " ".join(picked)
    if len(recap) > limit:
        recap = recap[: limit - 1].rsplit(" ", 1)[0] + "…"
    return recap


async def recap_due(session: AsyncSession, story: Story, now: datetime) -> str | None:
    """The recap to post before the story's next scene, or None: no break long enough
    since its last scene, recaps off, or nothing to recap yet."""
    after = recap_after(story)
    if after is None:
        return None
    tip = await repo.tip(session, story.id)
    if tip is None or now - tip.variant.created_at < after:
        return None
    chapters = await repo.path_chapters(session, story.id)
    path = await repo.active_path(session, story.id, limit=40)
    rolling = await repo.rolling_summary(session, path, tip.chapter_id)
    closed = [c.summary.content for c in chapters if c.summary is not None and c.summary.content.strip()]
    source = rolling.content if rolling is not None else (closed[-1] if closed else tip.variant.content)
    return last_sentences(source) or None
