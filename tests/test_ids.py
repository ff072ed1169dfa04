"""Ids from outside are parsed in one place, core/ids.py (DESIGN §9, "Untrusted input at
the edges"): the parser and every DynamicItem template, property-tested.

A forged custom id or select value may carry 0, -1, 2^31, 10^15, 2^63, leading zeros or
Arabic-Indic digits. Ids are INTEGER columns (1..2^31-1): PostgreSQL refuses anything
larger as a query argument, where SQLite answers "no row". So every template admits
exactly 1..2^31-1 in ASCII digits: anything else matches none and is answered as a stale
component (end to end on both databases: tests/test_ids_discord.py).
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from bot.ui import scene as ui
from core import ids

MAX_ID = ids.MAX_ID
# The numbers a forged id or option tries: around both ends of INTEGER and far beyond.
BOUNDARIES = (0, -1, 1, MAX_ID, MAX_ID + 1, 2**31, 2**32, 2**53, 2**63, 2**64, 10**15)
NOT_IDS = ("", "0", "00", "007", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "abc", "١", "١٢", "²", "１",
           "9" * 40, "2147483648", "9223372036854775808")


def sample_custom_ids(target: str) -> dict[str, str]:
    """A custom id of every DynamicItem the bot registers, with ``target`` as its id (the
    choice number, where there is one, is a valid one)."""
    built = {
        "choose": ui.ChoiceButton(1234567, 2).custom_id,
        "variant": ui.VariantSelect(1234567).custom_id,
        "rate": ui.RatingSelect(1234567).custom_id,
        **{f"retry:{kind}": ui.RetryButton(kind, 1234567).custom_id
           for kind in ("open", "choose", "act", "regen", "cont", "branch")},
        "retry:choose:n": ui.RetryButton("choose", 1234567, 3).custom_id,
    }
    for item in ui.DYNAMIC_ITEMS:
        if item not in (ui.ChoiceButton, ui.VariantSelect, ui.RatingSelect, ui.RetryButton):
            button = item(1234567)  # type: ignore[call-arg]  # a _simple_button: one id
            built[button.custom_id.split(":")[2]] = button.custom_id
    return {name: custom_id.replace("1234567", target) for name, custom_id in built.items()}


TEMPLATES = [item.__discord_ui_compiled_template__ for item in ui.DYNAMIC_ITEMS]


def handled(custom_id: str) -> bool:
    return any(template.fullmatch(custom_id) for template in TEMPLATES)


# --- the parser and the templates (no Discord, no database) -------------------------------------


def test_every_dynamic_item_has_a_sample_custom_id() -> None:
    samples = sample_custom_ids("1234567")
    assert len(samples) == len(ui.DYNAMIC_ITEMS) + 6  # Retry: six kinds, and one with a choice number
    for item in ui.DYNAMIC_ITEMS:
        assert any(item.__discord_ui_compiled_template__.fullmatch(c) for c in samples.values()), item


def test_the_id_pattern_is_made_from_max_id() -> None:
    assert re.fullmatch(ids.ID_PATTERN, str(MAX_ID)) and not re.fullmatch(ids.ID_PATTERN, str(MAX_ID + 1))
    assert ids.decimal_range_pattern(1) == "(?:1)"
    assert ids.decimal_range_pattern(12) == "(?:[1-9]|1[0-1]|12)"


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=-10, max_value=10**7))
def test_a_range_pattern_matches_exactly_the_numbers_in_its_range(limit: int, n: int) -> None:
    pattern = re.compile(ids.decimal_range_pattern(limit))
    assert bool(pattern.fullmatch(str(n))) == (1 <= n <= limit)


@given(st.one_of(st.sampled_from(BOUNDARIES), st.integers(), st.integers(min_value=-(2**65), max_value=2**65)))
@example(MAX_ID)
@example(MAX_ID + 1)
def test_parse_id_gives_the_number_exactly_when_a_column_can_hold_it(n: int) -> None:
    in_range = 1 <= n <= MAX_ID
    assert ids.parse_id(str(n)) == (n if in_range else None)
    assert ids.is_id(n) == in_range
    for name, custom_id in sample_custom_ids(str(n)).items():
        assert handled(custom_id) == in_range, (name, custom_id)
        if in_range:  # what the item is built from is the number itself
            item = next(i for i in ui.DYNAMIC_ITEMS if i.__discord_ui_compiled_template__.fullmatch(custom_id))
            match = item.__discord_ui_compiled_template__.fullmatch(custom_id)
            assert match is not None and n in {int(v) for v in match.groupdict().values() if v and v.isdigit()}


@given(st.one_of(
    st.sampled_from(NOT_IDS),
    st.text(max_size=30),
    st.text(alphabet="0123456789", min_size=11, max_size=60),
    st.from_regex(r"0[0-9]{1,12}", fullmatch=True),  # leading zeros
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=12),  # any script's digits
))
def test_anything_else_is_no_id_and_no_custom_id(text_: str) -> None:
    valid = text_.isascii() and text_.isdigit() and not text_.startswith("0") and int(text_) <= MAX_ID
    assert (ids.parse_id(text_) is not None) == valid
    if ids.parse_id(text_) is not None:
        assert str(ids.parse_id(text_)) == text_
    for name, custom_id in sample_custom_ids(text_).items():
        assert handled(custom_id) == valid, (name, custom_id)


@given(st.sampled_from(sorted(sample_custom_ids("42").values())), st.sampled_from(["kahani:v2", "kahani", "Kahani:v1",
                                                                                  "kahani:v1:", "xkahani:v1"]))
def test_another_version_prefix_matches_no_template(custom_id: str, prefix: str) -> None:
    assert handled(custom_id)
    assert not handled(custom_id.replace("kahani:v1", prefix, 1))
    assert not handled(custom_id + ":x") and not handled(custom_id + " ") and not handled(custom_id + "\n")


@given(st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.sampled_from(NOT_IDS),
                 st.text(max_size=25)))
def test_a_select_value_becomes_a_number_only_in_its_range(value: str) -> None:
    stars = ids.parse_int(value, 1, 5)
    assert stars == (int(value) if value in {"1", "2", "3", "4", "5"} else None)
    number = ids.parse_int(value, -(2**31), MAX_ID)
    plain = re.fullmatch(r"0|-?[1-9][0-9]*", value) is not None
    assert (number is not None) == (plain and -(2**31) <= int(value) <= MAX_ID)
