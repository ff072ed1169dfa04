"""Narration voices wherever a voice is asked (``/narrate voice``, ``/settings set``,
``/character add|edit``): offered from Kokoro's own list as the user types, and checked
against it when given, so an unknown voice is refused where it is typed, not when a
scene is read aloud. When Kokoro is down the voice is kept unchecked (and the user is
told); a voice Kokoro says it does not have is refused."""

from __future__ import annotations

import asyncio

from discord import app_commands

from bot.types import Interaction
from core.tts import KokoroClient, TTSError

ANSWER_WITHIN = 1.5  # seconds: Discord drops an autocomplete answer after 3 s, and a form must open within 3
DEFERRED_CHECK_SECONDS = 10.0  # asking Kokoro once the answer was deferred (Discord waits 15 min)
REFUSED = ("bad_voice", "unknown_voice", "rejected")  # Kokoro answered: this voice is not usable


async def voice_choices(tts: KokoroClient, current: str) -> list[app_commands.Choice[str]]:
    """Kokoro's voices matching what was typed; after a "+", the mix so far plus each
    voice. Nothing when Kokoro does not answer in time."""
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            voices = await tts.voices()
    except (TTSError, TimeoutError):
        return []
    head, plus, last = "".join(current.split()).rpartition("+")
    prefix = f"{head}{plus}"
    matches = [v for v in voices if last.lower() in v.lower()]
    matches.sort(key=lambda v: (not v.lower().startswith(last.lower()), v))
    return [app_commands.Choice(name=f"{prefix}{v}"[:100], value=f"{prefix}{v}"[:100]) for v in matches[:25]]


async def autocomplete_voice(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await voice_choices(interaction.client.tts, current)


async def checked_voice_name(tts: KokoroClient, voice: str, *, within: float = ANSWER_WITHIN) -> tuple[str, bool]:
    """``voice`` normalised and checked with Kokoro: (voice, True), or (voice, False) when
    Kokoro could not be asked within ``within`` seconds. A voice Kokoro refuses (or a mix
    that cannot be read) raises its TTSError."""
    try:
        async with asyncio.timeout(within):
            return await tts.check_voice(voice), True
    except TTSError as exc:
        if exc.kind in REFUSED:
            raise
        return voice, False
    except TimeoutError:
        return voice, False
