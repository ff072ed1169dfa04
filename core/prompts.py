"""Prompt text: what the storyteller model is told, and in which order
(docs/architecture.md, "The engine and the model").

A scene prompt is a chat: the system message (narrator role, the story's genre, tone,
world and point of view, the rules and the choice format), then a first user message
with the story bible (characters, the lore this scene calls up, previous chapters'
summaries, the current chapter's rolling summary), then the recent scenes of the path as
the assistant's own turns, each after the instruction that led to it, and last the
instruction for the scene to write, followed by the author's note and the player's note
for this scene (near the end, where a note steers a model most).
Alternating user/assistant turns suit every chat template local models use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.models import InstructionKind, SceneLength
from core.streaming import CHOICES_FORMAT_INSTRUCTION

SCENE_WORDS: dict[str, tuple[int, int]] = {
    SceneLength.SHORT: (100, 150),
    SceneLength.MEDIUM: (200, 300),
    SceneLength.LONG: (400, 500),
}

POINTS_OF_VIEW = {
    "first": "first person (\"I\"), as the player character",
    "second": "second person (\"you\"), addressing the player character",
    "third": "third person, past tense",
}


@dataclass(frozen=True)
class StoryFrame:
    """What the system message says about a story."""

    title: str
    genre: str = ""
    tone: str = ""
    world_setting: str = ""
    premise: str = ""
    point_of_view: str = "second"
    scene_length: str = SceneLength.MEDIUM
    content_notes: str = ""  # the server's (core/servers.py): every story there follows them


@dataclass(frozen=True)
class CharacterNote:
    name: str
    description: str = ""
    personality: str = ""


@dataclass(frozen=True)
class SceneTurn:
    """A scene already written, with the instruction that led to it."""

    instruction_kind: str
    instruction: str
    content: str


def scene_max_tokens(scene_length: str, *, reasoning_headroom: int = 0) -> int:
    """The reply's max_tokens: the longest scene, the choices, and some slack.

    English prose runs ~1.35 tokens a word; choices take ~120 tokens. Reasoning models
    think before they write, so they get extra headroom (docs/architecture.md, "The engine and the model").
    """
    _, most = SCENE_WORDS.get(scene_length, SCENE_WORDS[SceneLength.MEDIUM])
    return int(most * 1.35 * 1.25) + 160 + reasoning_headroom


def system_message(frame: StoryFrame) -> str:
    low, high = SCENE_WORDS.get(frame.scene_length, SCENE_WORDS[SceneLength.MEDIUM])
    pov = POINTS_OF_VIEW.get(frame.point_of_view, POINTS_OF_VIEW["second"])
    lines = [
        "You are the narrator of an interactive story that a player shapes scene by scene.",
        f"Story: {frame.title}",
    ]
    for label, value in (
        ("Genre", frame.genre),
        ("Tone", frame.tone),
        ("World", frame.world_setting),
        ("Premise", frame.premise),
    ):
        if value.strip():
            lines.append(f"{label}: {value.strip()}")
    lines += [
        "",
        "Rules:",
        f"- Write each scene in {pov}, {low}–{high} words, vivid and concrete.",
        "- Move the story forward in every scene; end at a moment where the player must decide.",
        "- Never decide or narrate the player's next action for them, and never address them "
        "out of the story.",
        "- Keep characters, places and facts consistent with the story so far.",
        "- Markdown (bold, italics, paragraphs) is fine; no headings inside the scene.",
    ]
    if frame.content_notes.strip():
        lines.append(CONTENT_NOTES_RULE.format(notes=frame.content_notes.strip()))
    lines += ["", CHOICES_FORMAT_INSTRUCTION]
    return "\n".join(lines)


# The server's content notes (its table's limits): part of every scene's rules.
CONTENT_NOTES_RULE = "- This table's content notes, always respected (steer around them, never into them): {notes}"


def characters_block(characters: Sequence[CharacterNote]) -> str:
    if not characters:
        return ""
    lines = ["Characters:"]
    for c in characters:
        details = "; ".join(x.strip() for x in (c.description, c.personality) if x.strip())
        lines.append(f"- {c.name}" + (f": {details}" if details else ""))
    return "\n".join(lines)


def bible_message(
    characters: Sequence[CharacterNote],
    chapter_summaries: Sequence[tuple[str, str]],
    rolling_summary: str | None,
    lore: str = "",
) -> str:
    """The story bible: who is in the story, the world notes this scene calls up, and
    what happened before the recent scenes.

    ``chapter_summaries`` are (chapter title, summary) of the closed chapters, oldest
    first; ``lore`` is core/lore.py's block.
    """
    parts: list[str] = [block for block in (characters_block(characters), lore.strip()) if block]
    if chapter_summaries:
        lines = ["The story so far, chapter by chapter:"]
        lines += [f"- {title}: {summary.strip()}" for title, summary in chapter_summaries]
        parts.append("\n".join(lines))
    if rolling_summary and rolling_summary.strip():
        parts.append(f"Earlier in this chapter: {rolling_summary.strip()}")
    return "\n\n".join(parts)


def instruction_message(kind: str, instruction: str) -> str:
    """The user turn that asks for a scene."""
    text = instruction.strip()
    if kind == InstructionKind.OPENING or not text:
        return "Begin the story with its opening scene."
    if kind == InstructionKind.CHOICE:
        return f"The player chooses: {text}\n\nWrite the next scene."
    if kind == InstructionKind.ACTION:
        return f"The player does this: {text}\n\nWrite the next scene, following from what the player does."
    # A director's note steers the story without being something the character does.
    return (
        f"Director's note (not an action in the story; let it steer the next scene): {text}\n\n"
        "Write the next scene."
    )


CONTINUE_MESSAGE = (
    "Continue the last scene from exactly where it stops, without repeating any of it, "
    "then give the choices as before."
)


AUTHOR_NOTE = "[Author's note, for the storyteller only: {note}]"
SCENE_NOTE = "[The player's note for this scene only, not part of the story: {note}]"


def notes_text(author_note: str = "", scene_note: str = "") -> str:
    """The notes that close the last user turn ("" for none)."""
    notes = []
    if author_note.strip():
        notes.append(AUTHOR_NOTE.format(note=" ".join(author_note.split())))
    if scene_note.strip():
        notes.append(SCENE_NOTE.format(note=" ".join(scene_note.split())))
    return "\n".join(notes)


def scene_messages(
    frame: StoryFrame,
    bible: str,
    turns: Sequence[SceneTurn],
    instruction_kind: str,
    instruction: str,
    *,
    continue_last: bool = False,
    notes: str = "",
) -> list[dict[str, str]]:
    """The chat for the next scene (or, with ``continue_last``, the last scene's
    extension); ``notes`` (:func:`notes_text`) close the last turn."""
    messages = [{"role": "system", "content": system_message(frame)}]
    pending_bible = bible.strip()

    def user(text: str) -> None:
        nonlocal pending_bible
        if pending_bible:
            text = f"{pending_bible}\n\n{text}"
            pending_bible = ""
        messages.append({"role": "user", "content": text})

    for turn in turns:
        user(instruction_message(turn.instruction_kind, turn.instruction))
        messages.append({"role": "assistant", "content": turn.content})
    last = CONTINUE_MESSAGE if continue_last else instruction_message(instruction_kind, instruction)
    user(f"{last}\n\n{notes}" if notes else last)
    return messages


SUMMARY_SYSTEM = (
    "You summarise an interactive story for its narrator. Write in the past tense, third "
    "person, plain prose. Keep names, places, objects, promises and unresolved threads; "
    "drop style and dialogue. No preamble."
)


def summary_messages(
    frame: StoryFrame, previous_summary: str | None, scenes: Sequence[str], *, words: int = 200
) -> list[dict[str, str]]:
    """Ask for a summary of ``scenes`` (continuing ``previous_summary`` if there is one)."""
    body = [f"Story: {frame.title}" + (f" ({frame.genre})" if frame.genre else "")]
    if previous_summary and previous_summary.strip():
        body.append(f"Summary so far:\n{previous_summary.strip()}")
    body.append("Scenes to add:\n\n" + "\n\n---\n\n".join(s.strip() for s in scenes))
    body.append(
        f"Write one summary, at most {words} words, of everything above "
        "(the summary so far and the new scenes)."
    )
    return [
        {"role": "system", "content": SUMMARY_SYSTEM},
        {"role": "user", "content": "\n\n".join(body)},
    ]


LORE_PROPOSAL_SYSTEM = (
    "You keep the world notes (lore) of an interactive story for its narrator. From a "
    "chapter's summary, pick the named people, places, items, factions and rules that will "
    "matter later. Reply with JSON only."
)


def lore_proposal_messages(
    frame: StoryFrame, summary: str, known: Sequence[str], *, most: int = 5
) -> list[dict[str, str]]:
    """Ask for up to ``most`` new or changed lore entries from a closed chapter's summary;
    ``known`` are the names of the entries the story has."""
    known_text = ", ".join(known[:100]) if known else "none yet"
    body = [
        f"Story: {frame.title}" + (f" ({frame.genre})" if frame.genre else ""),
        f"Chapter summary:\n{summary.strip()}",
        f"World notes the story already has: {known_text}.",
        f"List at most {most} entries worth remembering: new ones, or known ones whose facts "
        "changed in this chapter (use the known name). Each: a short name, two to four keywords "
        "that will appear in the story when it comes up, and one to three sentences of facts. "
        'Reply with JSON only: {"entries": [{"name": "...", "keywords": ["..."], "text": "..."}]} '
        '({"entries": []} when nothing is worth it).',
    ]
    return [
        {"role": "system", "content": LORE_PROPOSAL_SYSTEM},
        {"role": "user", "content": "\n\n".join(body)},
    ]
