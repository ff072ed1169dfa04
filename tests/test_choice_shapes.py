"""The shapes local models end a scene with (issue 22), read from a corpus of replies
(tests/fixtures/choice_replies.json): for each, the scene text players see, the choices
found, and that no character of the choices block is ever shown while the reply streams
— fed in one piece, one character at a time, and in random chunk sizes (Hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.choices import parse_choices
from core.streaming import SceneTextFilter
from core.text import storable

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "choice_replies.json").read_text(encoding="utf-8"))["cases"]
IDS = [case["name"] for case in CORPUS]


def stream(reply: str, sizes: list[int]) -> tuple[list[str], str, list[str]]:
    """Feed ``reply`` in pieces of ``sizes`` (cycled); return every view players saw,
    the final scene text and the choices read."""
    f = SceneTextFilter()
    views, shown, pos, i = [], "", 0, 0
    while pos < len(reply):
        size = sizes[i % len(sizes)]
        shown += f.feed(reply[pos:pos + size])
        views.append(shown)
        pos, i = pos + size, i + 1
    result = f.finish()
    shown += result.tail
    assert shown == result.scene_text  # what was shown is never taken back
    choices = [c.text for c in parse_choices(result.choice_block)] if result.block_found else []
    return views, result.scene_text, choices


def check(case: dict[str, Any], sizes: list[int]) -> None:
    views, scene, choices = stream(case["reply"], sizes)
    assert scene == case["scene"], case["name"]
    assert choices == case["choices"], case["name"]
    for view in views:  # every intermediate view is a prefix of the scene: no block text
        assert case["scene"].startswith(view), (case["name"], view[-80:])


def test_the_corpus_covers_the_shapes() -> None:
    assert len(CORPUS) >= 40
    kinds = {case["name"].split("/")[1] for case in CORPUS}
    assert {"end", "think", "crlf_trailing_space", "after_marker", "middle", "middle_then_marker"} <= kinds


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_in_one_piece(case: dict[str, Any]) -> None:
    check(case, [len(case["reply"]) or 1])


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_one_character_at_a_time(case: dict[str, Any]) -> None:
    check(case, [1])


@given(case=st.sampled_from(CORPUS), sizes=st.lists(st.integers(1, 24), min_size=1, max_size=40))
def test_in_random_chunks(case: dict[str, Any], sizes: list[int]) -> None:
    check(case, sizes)


def test_prose_is_not_held_back_longer_than_it_must_be() -> None:
    # The first paragraph of every reply shows before the reply ends, and a block in the
    # middle of prose shows as soon as the prose after it begins.
    for case in CORPUS:
        views, _, _ = stream(case["reply"], [1])
        first_line = case["scene"].split("\n")[0]
        assert any(view.startswith(first_line) for view in views[: len(case["reply"]) - 1]), case["name"]
        if case["name"].endswith("/middle"):
            prose_after = case["reply"].rindex("A cold draught")
            assert len(views[prose_after + 1]) > len(case["scene"]) - len("A cold draught rises from the stairwell, "
                                                                           "and the lantern steadies again.") - 1


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60))
def test_storable_text_is_always_utf8_without_control_characters(text: str) -> None:
    clean = storable(text)
    clean.encode("utf-8")  # no lone surrogate: PostgreSQL and Discord take it
    assert not any(ord(ch) < 32 and ch not in "\t\n" or 0x7F <= ord(ch) <= 0x9F for ch in clean)
    assert storable(clean) == clean
