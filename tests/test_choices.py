"""Choice parsing on the messy formats local models really write."""

from __future__ import annotations

import json

import pytest

from core.choices import (
    CHOICE_COUNT,
    LABEL_LIMIT,
    Choice,
    build_choices_request,
    choices_response_format,
    merge_choices,
    needs_extra_call,
    parse_choices,
    parse_choices_reply,
    shorten_label,
)
from core.streaming import split_reply

FOUR = ["Open the iron door", "Follow the sound of water", "Search the guard's body", "Call out to Elric"]

MESSY_FORMATS: dict[str, str] = {
    "numbered_dot": "1. Open the iron door\n2. Follow the sound of water\n3. Search the guard's body\n4. Call out to Elric",
    "numbered_paren": "1) Open the iron door\n2) Follow the sound of water\n3) Search the guard's body\n4) Call out to Elric",
    "numbered_enclosed": "(1) Open the iron door\n(2) Follow the sound of water\n(3) Search the guard's body\n(4) Call out to Elric",
    "bracketed": "[1] Open the iron door\n[2] Follow the sound of water\n[3] Search the guard's body\n[4] Call out to Elric",
    "dash_bullets": "- Open the iron door\n- Follow the sound of water\n- Search the guard's body\n- Call out to Elric",
    "mixed_bullets": "* Open the iron door\n• Follow the sound of water\n+ Search the guard's body\n- Call out to Elric",
    "choice_n_colon": "Choice 1: Open the iron door\nChoice 2: Follow the sound of water\nChoice 3: Search the guard's body\nChoice 4: Call out to Elric",
    "bold_choice_n": "**Choice 1:** Open the iron door\n**Choice 2:** Follow the sound of water\n**Choice 3:** Search the guard's body\n**Choice 4:** Call out to Elric",
    "bold_numbers": "**1.** Open the iron door\n**2.** Follow the sound of water\n**3.** Search the guard's body\n**4.** Call out to Elric",
    "option_letters": "A) Open the iron door\nB) Follow the sound of water\nC) Search the guard's body\nD) Call out to Elric",
    "prose_around": (
        "Here are your options:\n\n1. Open the iron door\n2. Follow the sound of water\n"
        "3. Search the guard's body\n4. Call out to Elric\n\nWhat will you do?"
    ),
    "code_fence_json": "```json\n" + json.dumps(FOUR, indent=2) + "\n```",
    "json_object_with_key": 'Sure! {"choices": ' + json.dumps(FOUR) + "}",
    "json_trailing_comma": '["Open the iron door", "Follow the sound of water", "Search the guard\'s body", "Call out to Elric",]',
    "json_objects": json.dumps([{"id": i, "text": t} for i, t in enumerate(FOUR, 1)]),
    "blank_lines_between": "1. Open the iron door\n\n2. Follow the sound of water\n\n\n3. Search the guard's body\n\n4. Call out to Elric\n",
    "quoted_items": '1. "Open the iron door"\n2. "Follow the sound of water"\n3. “Search the guard\'s body”\n4. \'Call out to Elric\'',
    "inline_single_line": "1. Open the iron door 2. Follow the sound of water 3. Search the guard's body 4. Call out to Elric",
    "no_markers_plain_lines": "Open the iron door\nFollow the sound of water\nSearch the guard's body\nCall out to Elric",
    "indented_with_emphasis": "   1. *Open the iron door*\n   2. _Follow the sound of water_\n   3. Search the guard's body\n   4. ***Call out to Elric***",
    "emoji_keycaps": "1️⃣ Open the iron door\n2️⃣ Follow the sound of water\n3️⃣ Search the guard's body\n4️⃣ Call out to Elric",
    "dash_after_number": "1 - Open the iron door\n2 - Follow the sound of water\n3 – Search the guard's body\n4 — Call out to Elric",
}


@pytest.mark.parametrize("name", sorted(MESSY_FORMATS))
def test_messy_formats_give_the_four_choices(name: str) -> None:
    choices = parse_choices(MESSY_FORMATS[name])
    assert [c.text for c in choices] == FOUR, name
    assert not needs_extra_call(choices)


def test_bold_labels_become_button_labels_and_text_keeps_the_description() -> None:
    block = (
        "1. **Sneak past the guards** – Use the shadows along the east wall.\n"
        "2. **Bribe the captain:** Offer him the silver ring.\n"
        "3. **Fight** - Draw your sword.\n"
        "4. **Wait for nightfall**"
    )
    choices = parse_choices(block)
    assert [c.label for c in choices] == ["Sneak past the guards", "Bribe the captain", "Fight", "Wait for nightfall"]
    assert choices[0].text == "Sneak past the guards — Use the shadows along the east wall."
    assert choices[1].text == "Bribe the captain: Offer him the silver ring."
    assert choices[3].text == "Wait for nightfall"


def test_label_on_its_own_line_takes_the_next_line_as_description() -> None:
    block = (
        "**Option 1: Climb the tower**\nYou scale the ivy to the window.\n\n"
        "**Option 2: Enter the crypt**\nThe stairs vanish into darkness.\n\n"
        "**Option 3: Return to the village**\nSafety, for now.\n\n"
        "**Option 4: Read the letter**\nThe seal is already broken."
    )
    choices = parse_choices(block)
    assert [c.label for c in choices] == ["Climb the tower", "Enter the crypt", "Return to the village", "Read the letter"]
    assert choices[0].text == "Climb the tower: You scale the ivy to the window."


def test_json_objects_with_label_and_text() -> None:
    block = json.dumps([{"label": "Run", "text": "Run into the burning woods"}, {"label": "Hide", "description": "Hide in the well"}])
    choices = parse_choices(block)
    assert choices == [Choice("Run into the burning woods", "Run"), Choice("Hide in the well", "Hide")]


def test_more_than_four_keeps_the_first_four() -> None:
    block = "\n".join(f"{i}. Choice number {i}" for i in range(1, 7))
    choices = parse_choices(block)
    assert [c.text for c in choices] == [f"Choice number {i}" for i in range(1, 5)]


def test_three_choices_ask_for_the_extra_call() -> None:
    choices = parse_choices("1. Run\n2. Hide\n3. Fight")
    assert len(choices) == 3 and needs_extra_call(choices)


def test_duplicates_are_dropped_case_and_punctuation_insensitively() -> None:
    choices = parse_choices("1. Run away!\n2. run away\n3. Hide.\n4. Hide\n5. Fight\n6. Pray\n7. Sing")
    assert [c.text for c in choices] == ["Run away!", "Hide.", "Fight", "Pray"]


def test_empty_and_punctuation_only_choices_are_dropped() -> None:
    choices = parse_choices("1. ...\n2. Run\n3. —\n4. \"\"\n5. **\n6. ?!\n7. Hide")
    assert [c.text for c in choices] == ["Run", "Hide"]
    assert parse_choices('["", "...", "  "]') == []


def test_empty_and_garbage_blocks_give_no_choices() -> None:
    assert parse_choices("") == []
    assert parse_choices("\n\n   \n") == []
    assert parse_choices("```\n```") == []


def test_numbered_list_wins_over_stray_bullets() -> None:
    block = "Options:\n- (choose wisely)\n1. Run\n2. Hide\n3. Fight\n4. Talk"
    assert [c.text for c in parse_choices(block)] == ["Run", "Hide", "Fight", "Talk"]


def test_over_long_choice_keeps_full_text_and_shortens_the_label() -> None:
    long_text = (
        "Climb the crumbling north tower in the storm, hoping the old rope ladder still holds "
        "your weight, and signal the ship before it passes the reef"
    )
    (choice,) = parse_choices(f"1. {long_text}", limit=1)
    assert choice.text == long_text
    assert len(choice.label) <= LABEL_LIMIT
    assert choice.label.endswith("…")
    assert long_text.startswith(choice.label[:-1])
    assert long_text[len(choice.label) - 1] == " "  # cut at a word boundary


def test_shorten_label_edge_cases() -> None:
    assert shorten_label("short") == "short"
    assert shorten_label("x" * 200) == "x" * 79 + "…"
    exact = "y" * LABEL_LIMIT
    assert shorten_label(exact) == exact


def extract_choices(reply: str) -> tuple[str, list[Choice]]:
    """What the stream filter and the parser make of a whole reply."""
    result = split_reply(reply)
    return result.scene_text, (parse_choices(result.choice_block) if result.block_found else [])


def test_a_list_behind_a_closing_question_is_the_choices_block() -> None:
    reply = (
        "The storm rages over the harbour.\n\nWhat do you do next?\n\n"
        "1. Run to the lighthouse\n2. Hide in the boathouse\n3. Wake the harbourmaster\n4. Wait it out\n"
    )
    scene, choices = extract_choices(reply)
    assert scene == "The storm rages over the harbour."
    assert [c.text for c in choices] == ["Run to the lighthouse", "Hide in the boathouse", "Wake the harbourmaster", "Wait it out"]


def test_an_intro_line_and_a_closing_question_go_with_the_list() -> None:
    reply = "She smiled.\n\nYour options:\n- Kiss her\n- Leave\n- Ask about the map\n\nWhat will you do?"
    scene, choices = extract_choices(reply)
    assert scene == "She smiled."
    assert len(choices) == 3


def test_a_scene_with_a_short_list_in_its_prose_is_left_alone() -> None:
    reply = "He packed:\n- a rope\n- a knife\n\nThen he left."
    assert extract_choices(reply) == (reply, [])


def test_merge_tops_up_with_distinct_choices() -> None:
    first = parse_choices("1. Run\n2. Hide\n3. Fight")
    extra = parse_choices('["Hide", "Pray", "Sing", "Dance"]')
    assert [c.text for c in merge_choices(first, extra)] == ["Run", "Hide", "Fight", "Pray"]


def test_extra_call_request_asks_for_exactly_four_with_json_schema() -> None:
    request = build_choices_request("The dragon lands.", story_context="Genre: fantasy")
    schema = request.response_format["json_schema"]["schema"]["properties"]["choices"]
    assert request.response_format["type"] == "json_schema"
    assert schema["minItems"] == schema["maxItems"] == CHOICE_COUNT
    assert request.messages[0]["role"] == "system"
    assert "The dragon lands." in request.messages[-1]["content"]
    assert "Genre: fantasy" in request.messages[-1]["content"]
    assert "JSON" in request.messages[-1]["content"]
    assert "numbered" in request.plain_messages[-1]["content"]
    assert choices_response_format(3)["json_schema"]["schema"]["properties"]["choices"]["maxItems"] == 3


def test_extra_call_reply_parses_json_and_plain_and_thinking() -> None:
    assert [c.text for c in parse_choices_reply(json.dumps({"choices": FOUR}))] == FOUR
    assert [c.text for c in parse_choices_reply("<think>ok</think>\n1. A\n2. B\n3. C\n4. D")] == ["A", "B", "C", "D"]
