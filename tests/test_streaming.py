"""SceneTextFilter: think blocks and the choices marker never reach the player."""

from __future__ import annotations

import pytest

from core.streaming import (
    CHOICES_MARKER,
    SceneTextFilter,
    split_reply,
    strip_think,
    trim_to_last_sentence,
)

SCENE = "The door creaks open.\n\nMara steps in; the lamp #3 flickers."
REPLY = (
    "<think>Plan: a door, a lamp.</think>\n\n"
    + SCENE
    + "\n\n---\n\n### Choices\n1. Run\n2. Hide\n3. Fight\n4. Talk"
)
FORBIDDEN = ("<", ">", "Plan", "###", "Choices", "---", "Run")


def run_pieces(pieces: list[str]) -> tuple[list[str], str, str]:
    """Feed pieces; check every intermediate view; return (views, scene, block)."""
    f = SceneTextFilter()
    shown = ""
    views = []
    for piece in pieces:
        shown += f.feed(piece)
        views.append(shown)
    result = f.finish()
    shown += result.tail
    assert shown == result.scene_text
    return views, result.scene_text, result.choice_block


def assert_clean(views: list[str], scene: str) -> None:
    for view in views:
        for bad in FORBIDDEN:
            assert bad not in view, (bad, view)
        assert scene.startswith(view)


def test_marker_never_visible_at_any_split() -> None:
    # Every 1-split and every 2-split position of a reply with a think block and marker.
    n = len(REPLY)
    for i in range(n + 1):
        views, scene, block = run_pieces([REPLY[:i], REPLY[i:]])
        assert scene == SCENE
        assert block == "1. Run\n2. Hide\n3. Fight\n4. Talk"
        assert_clean(views, SCENE)
    for i in range(n + 1):
        for j in range(i, n + 1):
            views, scene, block = run_pieces([REPLY[:i], REPLY[i:j], REPLY[j:]])
            assert scene == SCENE, (i, j)
            assert block.startswith("1. Run")
            assert_clean(views, SCENE)


def test_one_character_at_a_time_shows_the_scene_progressively() -> None:
    views, scene, _ = run_pieces(list(REPLY))
    assert scene == SCENE
    assert_clean(views, SCENE)
    # Text is not held back longer than needed: the first sentence shows before the end.
    assert any(v.startswith("The door creaks open.") for v in views[: len(REPLY) // 2])


@pytest.mark.parametrize(
    "marker_line",
    [
        "### Choices",
        "## Choices:",
        "#### CHOICES",
        "**Choices:**",
        "**Choices**:",
        "Choices:",
        "Choices",
        "__Choices__",
        "### Your choices",
        "  **Possible choices:**  ",
        "**Options:**",
    ],
)
def test_close_variants_of_the_marker_are_accepted(marker_line: str) -> None:
    reply = f"She waits.\n\n{marker_line}\n1. Go\n2. Stay"
    for split in range(len(reply) + 1):
        views, scene, block = run_pieces([reply[:split], reply[split:]])
        assert scene == "She waits."
        assert block == "1. Go\n2. Stay"
        for view in views:
            lowered = view.lower()
            assert "hoice" not in lowered and "option" not in lowered
            assert "#" not in view and "*" not in view


def test_marker_written_mid_line_is_still_the_marker() -> None:
    result = split_reply("She waits. ### Choices 1. Go 2. Stay")
    assert result.scene_text == "She waits."
    assert result.choice_block == "1. Go 2. Stay"
    assert result.marker_found


def test_choices_line_with_the_list_on_the_same_line() -> None:
    result = split_reply("She waits.\nChoices: 1. Go 2. Stay 3. Run")
    assert result.scene_text == "She waits."
    assert result.choice_block == "1. Go 2. Stay 3. Run"


@pytest.mark.parametrize(
    "text",
    [
        "Chloe walked in.",
        "The choices she made haunted her.",
        "Choices were made that night.",
        "#1 fan of the band",
        "**Boom!** The door burst open.",
        "What a night it was.",
        "[The lights go out.]",
    ],
)
def test_story_text_resembling_a_marker_is_shown_without_waiting_for_the_end(text: str) -> None:
    f = SceneTextFilter()
    shown = "".join(f.feed(ch) for ch in text + " More")
    assert shown.startswith(text)
    assert f.finish().scene_text == text + " More"


def test_a_list_in_the_story_is_shown_once_prose_follows_it() -> None:
    # A list may turn out to be the choices (models that forget the marker end with one):
    # it is held while it could still end the reply, and shown when the story goes on.
    f = SceneTextFilter()
    shown = "".join(f.feed(ch) for ch in "She packed:\n- a rope\n- a knife\n- bread\n")
    assert shown == "She packed:"
    shown += "".join(f.feed(ch) for ch in "Then she left the house.")
    assert shown.startswith("She packed:\n- a rope\n- a knife\n- bread\nThen she left")



def test_headings_inside_the_scene_stay_visible() -> None:
    reply = "## Chapter Two\n\nThe storm broke.\n\n### Choices\n1. Run"
    assert split_reply(reply).scene_text == "## Chapter Two\n\nThe storm broke."


def test_reply_without_marker_is_released_whole_at_finish() -> None:
    f = SceneTextFilter()
    shown = f.feed("It ends here.\n\n##")
    result = f.finish()
    assert shown + result.tail == "It ends here.\n\n##"
    assert not result.marker_found and result.choice_block == ""


def test_rules_and_blank_lines_between_paragraphs_are_kept() -> None:
    result = split_reply("One.\n\n---\n\nTwo.\n\n### Choices\n1. x")
    assert result.scene_text == "One.\n\n---\n\nTwo."


def test_reply_cut_inside_think_shows_nothing() -> None:
    f = SceneTextFilter()
    assert f.feed("<think>I should write a long") == ""
    result = f.finish()
    assert result.scene_text == "" and not result.marker_found


def test_thinking_tags_and_stray_closing_tags_are_removed() -> None:
    assert split_reply("<thinking>hmm</thinking>Go.").scene_text == "Go."
    assert split_reply("Go.</think> Now.").scene_text == "Go. Now."
    assert split_reply("a < b, and <thin ice>").scene_text == "a < b, and <thin ice>"


def test_think_inside_choice_block_is_removed() -> None:
    result = split_reply("Go.\n### Choices\n<think>pick good ones</think>1. A\n2. B")
    assert result.choice_block == "1. A\n2. B"


def test_feed_after_finish_is_an_error() -> None:
    f = SceneTextFilter()
    f.finish()
    with pytest.raises(RuntimeError):
        f.feed("x")


def test_strip_think_for_whole_replies() -> None:
    assert strip_think("<think>a\nb</think>\n\n[\"x\"]") == '["x"]'
    assert strip_think("plain") == "plain"


def test_trim_to_last_sentence_drops_an_unfinished_sentence() -> None:
    assert trim_to_last_sentence('He ran. She said, "Stop!" And then th') == 'He ran. She said, "Stop!"'
    assert trim_to_last_sentence("no sentence end at all") == "no sentence end at all"
    assert trim_to_last_sentence("Done.") == "Done."


def test_marker_constant_is_what_the_filter_detects() -> None:
    assert split_reply(f"x\n{CHOICES_MARKER}\n1. a").marker_found
