"""The narration chunker (core/narration.py): scene text, whole or streamed, into the
pieces Kokoro reads — and the chunks always join back to exactly the narrated text."""

from __future__ import annotations

import random
from typing import Any

import pytest

from core.narration import (
    CHUNK_CHARS,
    FIRST_CHUNK_CHARS,
    Chunker,
    chunk_text,
    clean,
    is_speakable,
    narration_text,
)

LONG = (
    "Rain drummed on the tin roof as Mara pushed the door open. "
    "Inside, the great brass telescope pointed at a sky no one had looked at in years. "
    "Dust lay thick on the desk, except for one clean rectangle where a book had rested. "
    "She ran a finger along its edge; the dust there was thin, days old at most. "
    "Somebody had been here, and recently. "
) * 6
DIALOGUE = (
    '"Who\'s there?" Mara called. No answer. "I know you\'re here!"\n\n'
    '"Of course I am," said Mr. Hale, stepping out of the shadow. "Where else would I be?"\n'
    '"You— you were dead," she whispered. "They buried you. I saw it…"\n'
    '"Ah." He smiled. "About that."'
)
MARKDOWN = (
    "# Chapter One\n\n"
    "**The door** creaks open. *Salt wind* fills the stair; __someone__ left a ~~note~~ "
    "`letter`. ||A spoiler!|| See [the map](https://example.com/map.png) or "
    "https://example.com/a?b=c. Then <@123456> and <:smile:987> nod.\n"
    "> A quoted line.\n"
    "- a bullet\n"
    "-# small print\n"
)


def feed_in_pieces(text: str, rng: random.Random, chunker: Any = None, **options: int) -> list[Any]:
    """The chunks of ``text`` fed in random small pieces (to a Chunker, or ``chunker``)."""
    chunker = chunker or Chunker(**options)
    chunks: list[Any] = []
    i = 0
    while i < len(text):
        n = rng.choice((1, 1, 2, 3, 5, 8, 13, 40))
        chunks += chunker.feed(text[i:i + n])
        i += n
    return chunks + chunker.finish()


def test_a_long_scene_is_chunked_into_few_sentence_pieces() -> None:
    chunks = chunk_text(LONG)
    assert "".join(chunks) == narration_text(LONG) == LONG
    assert chunks[0] == "Rain drummed on the tin roof as Mara pushed the door open. "
    assert all(len(c) <= CHUNK_CHARS for c in chunks)
    assert all(c.rstrip().endswith(".") for c in chunks)  # whole sentences
    assert len(chunks) <= 1 + len(LONG) // 150  # a few sentences each, not one each


def test_a_short_scene_is_one_chunk_and_nothing_is_dropped() -> None:
    assert chunk_text("Oh.") == ["Oh."]
    assert chunk_text("No") == ["No"]
    assert chunk_text("A. B. C.") == ["A. B. C."]  # initials, not sentences
    assert chunk_text("Yes. No. Maybe.") == ["Yes. ", "No. Maybe."]
    assert chunk_text("") == []


def test_dialogue_keeps_its_quotes_and_abbreviations_together() -> None:
    chunks = chunk_text(DIALOGUE)
    assert "".join(chunks) == DIALOGUE
    assert chunks[0] == "\"Who's there?\" "
    assert not any(c.rstrip().endswith("Mr.") for c in chunks)


def test_markdown_urls_mentions_and_emoji_are_not_read() -> None:
    spoken = narration_text(MARKDOWN)
    assert spoken == (
        "Chapter One\n\n"
        "The door creaks open. Salt wind fills the stair; someone left a note "
        "letter. A spoiler! See the map or "
        ". Then  and  nod.\n"
        "A quoted line.\n"
        "a bullet\n"
        "small print\n"
    )
    assert "".join(chunk_text(MARKDOWN)) == spoken


def test_the_choice_list_is_not_read() -> None:
    reply = "The door opens.\n\n### Choices\n1. Go in\n2. Run\n3. Wait\n4. Call out"
    assert narration_text(reply) == "The door opens.\n\n"
    assert "".join(chunk_text(reply)) == "The door opens.\n\n"


def test_the_first_chunk_is_flushed_as_soon_as_its_sentence_is_complete() -> None:
    chunker = Chunker()
    assert chunker.feed("The door creaks") == []
    assert chunker.feed(" open.") == []  # could still be "open.\u2026" or "Mr."
    assert chunker.feed(" S") == ["The door creaks open. "]


def test_a_first_sentence_longer_than_80_characters_is_cut_at_a_clause() -> None:
    text = ("The keeper's logbook, swollen with damp and smelling of tar and old salt, "
            "lay open on the landing where somebody had left it in a hurry.")
    chunker = Chunker()
    first = chunker.feed(text[:100])
    assert first == ["The keeper's logbook, swollen with damp and smelling of tar and old salt, "]
    assert "".join(first + chunker.feed(text[100:]) + chunker.finish()) == text


def test_an_endless_word_is_cut_hard_and_kept_whole() -> None:
    word = "a" * 1000
    chunks = chunk_text(f"Start. {word} end.")
    assert "".join(chunks) == f"Start. {word} end."
    assert all(len(c) <= CHUNK_CHARS for c in chunks)


def test_whitespace_only_pieces_are_kept_but_not_speakable() -> None:
    chunks = chunk_text("\n\n   Hello there.   \n\n")
    assert "".join(chunks) == "\n\n   Hello there.   \n\n"
    assert [is_speakable(c) for c in chunks] == [True]
    assert not is_speakable(" … ") and is_speakable("7")


def random_scene(rng: random.Random) -> str:
    words = ["the", "door", "Mara", "whispered", "Mr.", "Dr.", "J.", "I", "a", "old", "lantern", "x" * 90,
             "**bold**", "*it*", "__u__", "snake_case", "`code`", "~~gone~~", "||spoiler||", "[link](https://a.b/c)",
             "https://example.com/path.", "www.example.org", "<@42>", "<:e:1>", "—", "…", "\"Hi!\"", "'yes'",
             "(aside)", "#", "-", ">", "1.", "émigré", "naïve", "日本", "🙂"]
    seps = [" ", " ", " ", "  ", ", ", ". ", "! ", "? ", "... ", "; ", ": ", "\n", "\n\n", "\n# ", "\n- ",
            "\n> ", "\n-# ", "\t", " \n  "]
    parts = []
    for _ in range(rng.randint(0, 120)):
        parts.append(rng.choice(words))
        parts.append(rng.choice(seps))
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(["  ", "\n", "# Title\n", "**", "> "]))
    return "".join(parts)[: rng.randint(0, 2000)]


@pytest.mark.parametrize("seed", range(300))
def test_streamed_chunks_always_join_back_to_the_narrated_text(seed: int) -> None:
    rng = random.Random(seed)
    scene = random_scene(rng)
    expected = narration_text(scene)
    streamed = feed_in_pieces(scene, rng)
    whole = chunk_text(scene)
    assert "".join(streamed) == expected
    assert "".join(whole) == expected
    assert all(chunk for chunk in streamed)
    assert all(len(chunk) <= CHUNK_CHARS for chunk in streamed)
    if streamed:
        assert len(streamed[0]) <= FIRST_CHUNK_CHARS
    # Nothing that would be read is lost: every letter of the cleaned scene is spoken.
    assert sorted(ch for ch in "".join(streamed) if ch.isalnum()) == sorted(ch for ch in expected if ch.isalnum())


@pytest.mark.parametrize("seed", range(100))
def test_cleaning_a_line_in_pieces_equals_cleaning_it_whole(seed: int) -> None:
    rng = random.Random(1000 + seed)
    scene = random_scene(rng)
    # Cut only where a space run ends and a word begins, as the chunker does.
    cuts = sorted({i for i in range(1, len(scene)) if scene[i - 1].isspace() and not scene[i].isspace()
                   and rng.random() < 0.3})
    pieces = [scene[a:b] for a, b in zip([0, *cuts], [*cuts, len(scene)], strict=True)]
    out, at_line_start = "", True
    for piece in pieces:
        out += clean(piece, at_line_start=at_line_start)
        _, newline, line = piece.rpartition("\n")
        at_line_start = bool(newline or at_line_start) and not line.strip(" \t")
    assert out == clean(scene)
