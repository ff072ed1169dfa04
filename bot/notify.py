"""Async tables (#19): the DMs players asked for with ``/story notify`` when a group story's
next scene is up (its vote open), and the **Previously on…** recap before the next scene
of a story that resumes after a break (core/recap.py). Nobody who did not ask is pinged:
DMs go only to opted-in players, and a recap mentions nobody."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.ui.render import post_paced, within_global_budget
from core import messages as msg
from core import recap, stories
from core.models import Story

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)
NO_PINGS = discord.AllowedMentions.none()


async def notify_new_scene(bot: KahaniBot, story: Story, jump_url: str, *, besides: int | None = None) -> int:
    """DM every joined player of ``story`` who asked (but ``besides``, a user id) that its
    next scene is up, with a link; returns how many were sent. A player whose DMs are
    closed is skipped (logged), the others still get theirs."""
    async with bot.db.read() as s:
        wanted = await stories.notified(s, story.id, besides=besides)
    sent = 0
    for discord_id in wanted:
        try:
            # The DM channel straight from the id (no user lookup: without the members
            # intent the player is rarely cached).
            dm = await within_global_budget(
                bot.scheduler, lambda discord_id=discord_id: bot.create_dm(discord.Object(discord_id)))
            await within_global_budget(bot.scheduler, lambda dm=dm: dm.send(
                msg.NOTIFY_DM.format(title=discord.utils.escape_markdown(story.title), link=jump_url),
                allowed_mentions=NO_PINGS))
            sent += 1
        except discord.HTTPException as exc:  # DMs closed, user gone
            log.info("story %s: could not DM player %s about the new scene: %s", story.id, discord_id, exc)
    return sent


async def post_recap(bot: KahaniBot, channel: discord.abc.Messageable, story: Story) -> bool:
    """Post **Previously on…** in ``channel`` if the story resumes after its break; True
    if it did. Never in the way: a failure is logged and the scene goes on."""
    try:
        async with bot.db.read() as s:
            text = await recap.recap_due(s, story, bot.engine.clock())
        if not text:
            return False
        await post_paced(channel, msg.RECAP.format(title=discord.utils.escape_markdown(story.title), recap=text),
                         scheduler=bot.scheduler)
        return True
    except Exception:
        log.warning("story %s: could not post a recap", story.id, exc_info=True)
        return False
