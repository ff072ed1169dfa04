"""Character voices for quoted dialogue (core/narration.py): whose a quote is — a
character named right before or right after it — and the voiced chunks, which still join
back to exactly the narrated text, and without character voices are the plain chunks."""

from __future__ import annotations

import random

import pytest

from core.narration import (
    CHUNK_CHARS,
    CharacterVoices,
    Chunk,
    VoicedChunker,
    chunk_text,
    dialogue_spans,
    narration_text,
    voiced_chunks,
)
from tests.test_narration_chunker import DIALOGUE, LONG, MARKDOWN, feed_in_pieces

NARRATOR = "af_heart"
CAST = CharacterVoices({"Mara Voss": "bf_emma", "Tom": "am_adam", "Hale": None}, narrator=NARRATOR)
MARA, TOM = "bf_emma", "am_adam"


def spoken(text: str, cast: CharacterVoices = CAST) -> list[tuple[str, str | None]]:
    """The speakable chunks of ``text`` and their voices (None: the narrator's)."""
    return [(c.text.strip(), c.voice) for c in voiced_chunks(text, cast) if c.text.strip()]


def quotes(text: str, cast: CharacterVoices = CAST) -> dict[str, str]:
    """Each voiced quote of ``text`` → its voice."""
    spans, settled = dialogue_spans(text, cast)
    assert settled == len(text)
    return {text[start:end]: voice for start, end, voice in spans}


def streamed(text: str, rng: random.Random, cast: CharacterVoices | None = CAST) -> list[Chunk]:
    return feed_in_pieces(text, rng, VoicedChunker(cast))


# --- whose a quote is ------------------------------------------------------------------------


def test_a_name_right_before_the_quote_gives_it_that_characters_voice() -> None:
    assert spoken('Mara whispered, "Run."') == [("Mara whispered,", None), ('"Run."', MARA)]
    assert quotes('Tom said "Go" and left.') == {'"Go"': TOM}
    assert quotes('Then Mara Voss said: "Run."') == {'"Run."': MARA}  # the full name


def test_a_name_right_after_the_quote_gives_it_that_characters_voice() -> None:
    assert spoken('"Run," said Mara.') == [('"Run,"', MARA), ("said Mara.", None)]
    assert quotes('"Run!" Mara cried, and the lantern fell.') == {'"Run!"': MARA}
    assert quotes('"Why?" asked Tom.') == {'"Why?"': TOM}
    assert quotes('"Run," said old Tom.') == {'"Run,"': TOM}


def test_an_unknown_name_or_a_character_without_a_voice_is_read_by_the_narrator() -> None:
    for text in ('Zed whispered, "Run."', '"Run," said Zed.', '"Run," said Hale.', '"Run," said mara.',
                 '"Run," he said.', 'Mara turned. "Run."'):
        assert quotes(text) == {}, text
        assert voiced_chunks(text, CAST) == [Chunk(c) for c in chunk_text(text)], text


def test_the_name_must_be_right_next_to_the_quote_in_the_same_sentence() -> None:
    assert quotes('Mara leaned slowly towards the door and whispered, "Run."') == {}  # 4+ words away
    assert quotes('"Run," said the stranger to Tom.') == {}  # Tom is 5 words after it
    assert quotes('Mara looked up. "Run."') == {}  # another sentence
    assert quotes('"Run." Tom turned away.') == {}  # the full stop ended the sentence
    assert quotes('"Run." said Tom.') == {'"Run."': TOM}  # … unless the sentence goes on


def test_two_characters_in_one_paragraph_each_get_their_own_voice() -> None:
    text = 'Mara whispered, "Run." The lanterns went out. "Where?" asked Tom. "Anywhere," Mara said.'
    assert spoken(text) == [
        ("Mara whispered,", None), ('"Run."', MARA), ("The lanterns went out.", None),
        ('"Where?"', TOM), ("asked Tom.", None), ('"Anywhere,"', MARA), ("Mara said.", None),
    ]


def test_the_nearest_name_to_the_quote_is_its_speaker() -> None:
    assert quotes('"Run," Tom told Mara.') == {'"Run,"': TOM}
    assert quotes('Tom nodded as Mara said, "Run."') == {'"Run."': MARA}


def test_a_quote_after_an_attributed_one_continues_the_same_speaker() -> None:
    assert quotes('"Run," said Mara. "They are coming."') == {'"Run,"': MARA, '"They are coming."': MARA}
    # More than the attribution between them: the narrator's again.
    assert quotes('"Run," said Mara. Tom stared at her. "Why?"') == {'"Run,"': MARA}
    # Not across paragraphs.
    assert quotes('"Run," said Mara.\n"Why?"') == {'"Run,"': MARA}


def test_curly_quotes_and_guillemets_are_quotes_too() -> None:
    assert spoken("“Run,” said Mara. «Where?» asked Tom.") == [
        ("“Run,”", MARA), ("said Mara.", None), ("«Where?»", TOM), ("asked Tom.", None)]
    assert quotes("Mara said, “It’s Tom’s boat.”") == {"“It’s Tom’s boat.”": MARA}


def test_a_first_name_two_characters_share_names_neither() -> None:
    cast = CharacterVoices({"Mara Voss": MARA, "Mara Lin": TOM}, narrator=NARRATOR)
    assert quotes('"Run," said Mara.', cast) == {}
    assert quotes('"Run," said Mara Lin.', cast) == {'"Run,"': TOM}
    # A possessive is still the name.
    assert quotes("Then Mara's voice, cold: \"Run.\"") == {'"Run."': MARA}


def test_a_character_with_the_narrators_voice_needs_no_chunk_of_its_own() -> None:
    cast = CharacterVoices({"Mara": " af_heart ", "Tom": ""}, narrator=NARRATOR)
    assert not cast
    assert voiced_chunks('"Run," said Mara.', cast) == [Chunk('"Run," said Mara.')]


def test_an_unclosed_quote_runs_to_the_end_of_its_line() -> None:
    text = 'Tom said, "Run, and do not look back\nThe door slammed.'
    assert quotes(text) == {'"Run, and do not look back': TOM}


# --- the chunks ----------------------------------------------------------------------------


def test_a_quote_spanning_a_chunk_boundary_is_read_with_its_speakers_voice_throughout() -> None:
    line = "the tide comes in fast and the causeway floods before you know it, "
    text = f'The gulls cried. "Listen, {line * 8}so we go now," said Tom. Mara nodded.'
    chunks = voiced_chunks(text, CAST)
    assert "".join(c.text for c in chunks) == text
    quote = text[text.index('"'):text.index(' said')]
    voiced = [c for c in chunks if c.voice == TOM]
    assert len(voiced) >= 2 and "".join(c.text for c in voiced) == quote  # cut, all Tom's
    assert all(len(c.text) <= CHUNK_CHARS for c in chunks)
    assert {c.voice for c in chunks if c.text.strip() and c not in voiced} == {None}
    for seed in range(20):  # the same written token by token
        pieces = streamed(text, random.Random(seed))
        assert "".join(c.text for c in pieces) == text
        assert "".join(c.text for c in pieces if c.voice == TOM) == quote


@pytest.mark.parametrize("text", [LONG, DIALOGUE, MARKDOWN, DIALOGUE.replace('"', "“", 1), "", "Oh.", '"'])
def test_voiced_chunks_join_back_to_exactly_the_narrated_text(text: str) -> None:
    cast = CharacterVoices({"Mara": MARA, "Hale": TOM, "Mr. Hale": TOM}, narrator=NARRATOR)
    assert "".join(c.text for c in voiced_chunks(text, cast)) == narration_text(text)
    for seed in range(30):
        assert "".join(c.text for c in streamed(text, random.Random(seed), cast)) == narration_text(text)


def test_the_dialogue_scene_gives_its_speakers_their_lines() -> None:
    cast = CharacterVoices({"Mara": MARA, "Mr. Hale": TOM}, narrator=NARRATOR)
    assert quotes(DIALOGUE, cast) == {
        "\"Who's there?\"": MARA,  # "… Mara called."
        '"Of course I am,"': TOM,  # "… said Mr. Hale"
        '"Where else would I be?"': TOM,  # only that sentence between: the same speaker
    }  # "she whispered", "He smiled": nobody named, the narrator's


@pytest.mark.parametrize("text", [LONG, DIALOGUE, MARKDOWN])
def test_without_character_voices_the_chunks_are_the_plain_chunkers(text: str) -> None:
    plain = chunk_text(text)
    assert [c.text for c in voiced_chunks(text)] == plain
    assert all(c.voice is None for c in voiced_chunks(text))
    # Characters that have voices but do not speak here change nothing either.
    nobody = CharacterVoices({"Zed": MARA}, narrator=NARRATOR)
    assert voiced_chunks(text, nobody) == [Chunk(c) for c in plain]
    for seed in range(10):
        plain_streamed = [Chunk(c) for c in feed_in_pieces(text, random.Random(seed))]
        assert streamed(text, random.Random(seed), None) == plain_streamed
        assert streamed(text, random.Random(seed), nobody) == plain_streamed


def test_a_chunk_waits_for_the_name_after_its_quote_and_no_longer() -> None:
    chunker = VoicedChunker(CAST)
    # The chunker's first chunk ends after the quote; its speaker may come next …
    assert chunker.feed('"Who is there?" ') == []
    assert chunker.feed("Tom ") == []
    # … and is there as soon as the name is complete.
    assert chunker.feed("asked. ") == [Chunk('"Who is there?"', TOM), Chunk(" ")]
    assert chunker.finish() == [Chunk("Tom asked. ")]
    # Three words after it without a name: the narrator's, the plain chunk.
    chunker = VoicedChunker(CAST)
    assert [chunker.feed(p) for p in ('"Who is there?" ', "The ", "wind ", "howled ", "on.")] == \
        [[], [], [], [], [Chunk('"Who is there?" ')]]
    # The name before it: nothing to wait for once the chunk is cut.
    chunker = VoicedChunker(CAST)
    assert [chunker.feed(p) for p in ("Tom asked, ", '"Who is there?" ', "The ")] == \
        [[], [], [Chunk("Tom asked, "), Chunk('"Who is there?"', TOM), Chunk(" ")]]


def test_a_characters_complete_quote_ends_a_chunk_without_waiting_for_more_sentences() -> None:
    chunker = VoicedChunker(CAST)
    fed = [chunker.feed(p) for p in ("The lamp flickers. ", "Tom whispered, ", '"Someone is on the stair." ', "It ")]
    assert fed == [[], [Chunk("The lamp flickers. ")], [],
                   [Chunk("Tom whispered, "), Chunk('"Someone is on the stair."', TOM)]]
    assert chunker.finish() == [Chunk(" It ")]
    # The plain chunker waits for a few sentences there.
    assert VoicedChunker().feed('The lamp flickers. Tom whispered, "Someone is on the stair." It ') == \
        [Chunk("The lamp flickers. ")]


def test_a_long_quote_named_before_it_is_read_in_that_voice_before_it_is_complete() -> None:
    chunker = VoicedChunker(CAST)
    ready = chunker.feed('Tom said, "' + "the tide comes in fast and the causeway floods before you know it, " * 8)
    assert ready and ready[-1].voice == TOM  # not waiting for the closing quote
    rest = chunker.feed('so we go now." Mara nodded.') + chunker.finish()
    assert [c.voice for c in rest if c.text.strip()] == [TOM, None]


def test_any_text_fed_any_way_joins_back_and_gets_the_same_voices() -> None:
    cast = CharacterVoices({"Mara Voss": MARA, "Tom": TOM, "Hale": None, "Mr. Hale": "bm_george"}, narrator=NARRATOR)
    parts = ["Mara", "Tom", "Hale", "Mr.", "said", "whispered,", '"', "“", "”", "«", "»", "Run", "run.", "Now!",
             "?", ",", ".", "\n", "\n\n", "**bold**", "the", "sea", "https://x.y/z.", "…", "Voss", "Mara's", ":"]
    for seed in range(300):
        rng = random.Random(seed)
        text = "".join(rng.choice(parts) + rng.choice((" ", " ", "", "  ")) for _ in range(rng.randint(0, 150)))
        whole = voiced_chunks(text, cast)
        assert "".join(c.text for c in whole) == narration_text(text)
        for options in ({}, {"first_chars": 10, "max_chars": 30, "target_chars": 20}):
            pieces = feed_in_pieces(text, rng, VoicedChunker(cast, **options))
            assert "".join(c.text for c in pieces) == narration_text(text), seed
            assert "".join(c.text for c in pieces if c.voice) == "".join(c.text for c in whole if c.voice), seed
