"""Lore (world info): keyword matching, the order and budget of what goes into the
prompt (core/lore.py), and the repository on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.errors import Conflict, NotFound
from core.lore import (
    LORE_HEADING,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    InvalidLore,
    Lore,
    LoreSelection,
    format_keywords,
    lore_block,
    parse_keywords,
    select_lore,
)
from core.models import LoreEntry, LoreStatus

_ids = iter(range(1, 10_000))


def lore(name: str, *keywords: str, text: str = "", pinned: bool = False) -> Lore:
    return Lore(next(_ids), name, keywords, text or f"About {name}.", pinned)


def words(text: str) -> int:
    """A simple token count: one per word."""
    return len(text.split())


def select(
    entries: list[Lore], *, recent: list[str] | None = None, action: str = "", budget: int = 10_000
) -> LoreSelection:
    return select_lore(entries, recent=recent or [], action=action, budget=budget, count=words)


def names(entries: list[Lore]) -> list[str]:
    return [entry.name for entry in entries]


# --- keywords ----------------------------------------------------------------------------


def test_keywords_are_trimmed_deduplicated_ignoring_case_and_keep_the_first_spelling() -> None:
    assert parse_keywords(" Mara ,mara, the  Iron Gate\nR2-D2,, ,MARA\n") == ("Mara", "the Iron Gate", "R2-D2")
    assert parse_keywords("") == ()
    assert format_keywords(("Mara", "Iron Gate")) == "Mara, Iron Gate"


def test_too_many_or_too_long_keywords_are_refused_with_a_sentence() -> None:
    parse_keywords(",".join(f"k{n}" for n in range(MAX_KEYWORDS)))
    with pytest.raises(InvalidLore, match=f"at most {MAX_KEYWORDS} keywords"):
        parse_keywords(",".join(f"k{n}" for n in range(MAX_KEYWORDS + 1)))
    parse_keywords("x" * MAX_KEYWORD_LENGTH)
    with pytest.raises(InvalidLore, match=f"at most {MAX_KEYWORD_LENGTH} characters"):
        parse_keywords("x" * (MAX_KEYWORD_LENGTH + 1))


# --- matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("Mara", "and Mara's lantern went out"),
        ("Mara", "MARA, wait!"),
        ("mara", "Mara."),
        ("Iron Gate", "they reached the iron\n  gate at dusk"),
        ("R2-D2", "beeps from R2-D2."),
        (".NET", "written in .NET, sadly"),
        ("Ærø", "the ferry to ærø left"),
        ("Straße", "DIE STRASSE war leer"),
        ("Mara", "Mara"),
    ],
)
def test_a_keyword_matches_whole_words_in_any_case(keyword: str, text: str) -> None:
    entry = lore("Entry", keyword)
    assert select([entry], action=text).included == [entry]


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("Mara", "the Maratha empire"),
        ("Mara", "Samara"),
        ("Mara", "Mara2 and mara_x"),
        ("Iron Gate", "the iron-gate and the iron gates"),
        ("R2-D2", "R2-D22"),
        ("Ærø", "Ærøskøbing"),
        (".NET", "ASP.NET"),
    ],
)
def test_a_keyword_does_not_match_inside_a_word(keyword: str, text: str) -> None:
    assert select([lore("Entry", keyword)], action=text).included == []


def test_an_entry_without_keywords_is_only_included_when_pinned() -> None:
    silent, pinned = lore("Silent"), lore("Rules", pinned=True)
    selection = select([silent, pinned], action="Silent rules")
    assert selection.included == [pinned]
    assert selection.why == {pinned.id: msg.LORE_WHY_PINNED}


def test_pinned_entries_come_first_by_name_then_the_most_recently_triggered() -> None:
    zeta = lore("Zeta", text="z", pinned=True)
    alpha = lore("alpha", text="a", pinned=True)
    old = lore("Old", "lighthouse")
    newer = lore("Newer", "harbour")
    early_in_last = lore("Early", "fog")
    late_in_last = lore("Late", "bell")
    acted = lore("Acted", "rope")
    recent = [
        "The lighthouse stood dark.",  # oldest
        "The harbour was empty.",
        "Fog rolled in, and far off a bell rang.",  # the last scene
    ]
    selection = select(
        [old, newer, early_in_last, late_in_last, acted, zeta, alpha], recent=recent, action="I pull the rope."
    )
    assert names(selection.included) == ["alpha", "Zeta", "Acted", "Late", "Early", "Newer", "Old"]
    assert selection.why[acted.id] == "keyword 'rope' in the action"
    assert selection.why[late_in_last.id] == "keyword 'bell' in the last scene"
    assert selection.why[newer.id] == "keyword 'harbour' in the 2nd-last scene"
    assert selection.why[old.id] == "keyword 'lighthouse' in the 3rd-last scene"


def test_an_entry_counts_where_it_was_mentioned_last() -> None:
    mara = lore("Mara", "Mara")
    gate = lore("Gate", "gate")
    # Mara is in an older scene too, but its latest mention is after the gate's.
    selection = select([mara, gate], recent=["Mara slept.", "The gate creaked; Mara woke."])
    assert names(selection.included) == ["Mara", "Gate"]
    assert selection.why[mara.id] == "keyword 'Mara' in the last scene"


def test_the_matching_keyword_is_reported_and_the_longer_one_wins_a_tie() -> None:
    gate = lore("The Gate", "iron", "Iron Gate")
    selection = select([gate], action="They open the IRON GATE.")
    assert selection.why[gate.id] == "keyword 'Iron Gate' in the action"


def test_entries_mentioned_by_triggered_entries_come_in_one_level_deep() -> None:
    mara = lore("Mara", "Mara", text="Mara serves the Order of Ash.")
    order = lore("Order of Ash", "Order of Ash", text="Founded at the Ember Keep.")
    keep = lore("Ember Keep", "Ember Keep", text="A ruin.")
    rules = lore("Rules", text="Magic costs blood; ask the Order of Ash.", pinned=True)
    blood = lore("Blood", "blood", text="Mara's blood is silver.")
    selection = select([keep, order, mara, rules, blood], action="I talk to Mara.")
    # Mara (direct) and Rules (pinned) bring in Order of Ash and Blood; the Order's own
    # mention of the Ember Keep is a second level and is not followed.
    assert names(selection.included) == ["Rules", "Mara", "Order of Ash", "Blood"]
    assert selection.why[order.id] == "keyword 'Order of Ash' in lore 'Rules'"
    assert selection.why[blood.id] == "keyword 'blood' in lore 'Rules'"
    assert keep.id not in selection.why


def test_recursion_triggered_entries_come_after_every_direct_one() -> None:
    mara = lore("Mara", "Mara", text="Sister of Tomas.")
    tomas = lore("Tomas", "Tomas")
    far = lore("Far", "lantern")
    selection = select([tomas, far, mara], recent=["A lantern burned."], action="Mara waits.")
    assert names(selection.included) == ["Mara", "Far", "Tomas"]


def test_an_entry_over_budget_is_left_out_and_smaller_later_ones_still_fit() -> None:
    pinned = lore("Rules", text="one two three", pinned=True)  # "- Rules: one two three" = 5
    big = lore("Big", "dragon", text=" ".join(["word"] * 50))
    small = lore("Small", "cave", text="dark")  # "- Small: dark" = 3
    heading = words(LORE_HEADING)
    selection = select([big, small, pinned], recent=["The dragon sleeps in a cave."], budget=heading + 5 + 3)
    assert selection.included == [pinned, small]
    assert selection.left_out == [big]
    assert selection.tokens == heading + 5 + 3
    assert selection.why[big.id] == "keyword 'dragon' in the last scene"


def test_a_pinned_entry_that_does_not_fit_is_reported_left_out() -> None:
    pinned = lore("Huge", text=" ".join(["word"] * 100), pinned=True)
    selection = select([pinned], budget=20)
    assert selection.included == []
    assert selection.left_out == [pinned]
    assert selection.tokens == 0
    assert selection.block == ""


def test_an_entry_left_out_of_the_budget_triggers_nothing() -> None:
    big = lore("Big", "dragon", text="Guards the Hoard. " + " ".join(["word"] * 50))
    hoard = lore("Hoard", "Hoard")
    selection = select([big, hoard], action="the dragon", budget=20)
    assert selection.left_out == [big]
    assert hoard.id not in selection.why


def test_the_lore_block_has_one_bullet_per_entry_and_its_cost_adds_up() -> None:
    a = lore("Mara", "Mara", text="A smuggler.\n\nOwes the guild.")
    b = lore("Rules", text="No magic.", pinned=True)
    selection = select([a, b], action="Mara")
    assert selection.block == "World notes:\n- Rules: No magic.\n- Mara: A smuggler. Owes the guild."
    assert selection.tokens == words(selection.block)
    assert lore_block([]) == ""


def test_lore_of_a_stored_entry() -> None:
    entry = LoreEntry(id=7, name="Mara", keywords="Mara, the smuggler", content="A smuggler.", pinned=True)
    assert Lore.of(entry) == Lore(7, "Mara", ("Mara", "the smuggler"), "A smuggler.", True)


# --- the repository (SQLite and PostgreSQL) ------------------------------------------------


async def new_story(db: Database, title: str = "The Lighthouse") -> tuple[int, int]:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, title, genre="mystery", tone="eerie")
        return story.id, owner.id


async def test_lore_is_added_listed_by_name_and_found_ignoring_case(db: Database) -> None:
    story_id, user_id = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "  the Iron  Gate ", keywords="gate, GATE, iron gate", content=" Old. ")
        entry = await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="A smuggler.", user_id=user_id)
        assert (entry.created_by_id, entry.updated_by_id) == (user_id, user_id)
    async with db.read() as s:
        assert [e.name for e in await repo.list_lore(s, story_id)] == ["Mara", "the Iron Gate"]
        gate = await repo.get_lore(s, story_id, "THE IRON GATE")
        assert (gate.keywords, gate.content, gate.status) == ("gate, iron gate", "Old.", LoreStatus.ACTIVE)
        assert (await repo.get_lore_by_id(s, story_id, gate.id)).name == "the Iron Gate"
        with pytest.raises(NotFound, match="no lore entry called Nobody"):
            await repo.get_lore(s, story_id, "Nobody")
        with pytest.raises(NotFound):
            await repo.get_lore_by_id(s, story_id + 1, gate.id)


async def test_a_duplicate_name_in_another_case_is_a_conflict(db: Database) -> None:
    story_id, _ = await new_story(db)
    other_story, _ = await new_story(db, "Another")
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Ærø", keywords="", content="An island.")
        with pytest.raises(Conflict, match="already has a lore entry called ærø"):
            await repo.add_lore(s, story_id, "ærø", keywords="", content="")
        await repo.add_lore(s, story_id, "Mara", keywords="", content="")
        with pytest.raises(Conflict):
            await repo.edit_lore(s, story_id, "Mara", new_name="ÆRØ")
        # Another story may use the name; an entry may change the case of its own.
        await repo.add_lore(s, other_story, "ÆRØ", keywords="", content="")
        renamed = await repo.edit_lore(s, story_id, "ærø", new_name="ÆRØ")
        assert renamed.name == "ÆRØ"


async def test_edit_then_undo_restores_and_undo_again_redoes(db: Database) -> None:
    story_id, user_id = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="A smuggler.")
        with pytest.raises(Conflict, match="nothing|no earlier version"):
            await repo.undo_lore(s, story_id, "Mara")
    async with db.transaction() as s:
        edited = await repo.edit_lore(
            s, story_id, "mara", keywords="Mara, the smuggler", content="A spy.", pinned=True, user_id=user_id
        )
        assert (edited.keywords, edited.content, edited.pinned) == ("Mara, the smuggler", "A spy.", True)
        assert edited.updated_by_id == user_id
    async with db.transaction() as s:
        undone = await repo.undo_lore(s, story_id, "Mara")
        assert (undone.keywords, undone.content) == ("Mara", "A smuggler.")
        assert undone.pinned  # Undo is about the text, not the pin
    async with db.transaction() as s:
        redone = await repo.undo_lore(s, story_id, "Mara")
        assert (redone.keywords, redone.content) == ("Mara, the smuggler", "A spy.")


async def test_pinning_or_renaming_keeps_the_undo_step_of_the_last_text_edit(db: Database) -> None:
    story_id, _ = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="A smuggler.")
        await repo.edit_lore(s, story_id, "Mara", content="A spy.")
        await repo.edit_lore(s, story_id, "Mara", new_name="Mara Vell", pinned=True, content="A spy.")
        undone = await repo.undo_lore(s, story_id, "mara vell")
        assert undone.content == "A smuggler."


async def test_remove_deletes_the_entry(db: Database) -> None:
    story_id, _ = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="")
    async with db.transaction() as s:
        await repo.remove_lore(s, story_id, "MARA")
    async with db.read() as s:
        assert await repo.list_lore(s, story_id) == []
        with pytest.raises(NotFound):
            await repo.remove_lore(s, story_id, "Mara")


async def test_proposed_entries_are_not_listed_as_active_until_accepted(db: Database) -> None:
    story_id, user_id = await new_story(db)
    async with db.transaction() as s:
        kept = await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="", status=LoreStatus.PROPOSED)
        dropped = await repo.add_lore(s, story_id, "Tomas", keywords="", content="", status=LoreStatus.PROPOSED)
        await repo.add_lore(s, story_id, "Rules", keywords="", content="")
    async with db.transaction() as s:
        assert [e.name for e in await repo.list_lore(s, story_id)] == ["Rules"]
        assert [e.name for e in await repo.list_lore(s, story_id, status=LoreStatus.PROPOSED)] == ["Mara", "Tomas"]
        accepted = await repo.accept_lore(s, story_id, kept.id, user_id=user_id)
        assert accepted.status == LoreStatus.ACTIVE
        with pytest.raises(Conflict):
            await repo.accept_lore(s, story_id, kept.id)
        with pytest.raises(Conflict):
            await repo.dismiss_lore(s, story_id, kept.id)
        await repo.dismiss_lore(s, story_id, dropped.id)
        with pytest.raises(NotFound):
            await repo.dismiss_lore(s, story_id, dropped.id)
    async with db.read() as s:
        assert [e.name for e in await repo.list_lore(s, story_id, status=None)] == ["Mara", "Rules"]


async def test_lore_names_for_autocomplete_prefix_first_then_substring(db: Database) -> None:
    story_id, _ = await new_story(db)
    async with db.transaction() as s:
        for name in ("Gatekeeper", "The Iron Gate", "gate", "Mara", "Ærø"):
            await repo.add_lore(s, story_id, name, keywords="", content="")
    async with db.read() as s:
        assert await repo.lore_names(s, story_id, "GATE") == ["gate", "Gatekeeper", "The Iron Gate"]
        assert await repo.lore_names(s, story_id, "ærø") == ["Ærø"]
        assert await repo.lore_names(s, story_id, "", limit=2) == ["gate", "Gatekeeper"]


@pytest.mark.parametrize(
    ("name", "keywords", "content"),
    [
        ("x" * (MAX_NAME_LENGTH + 1), "", ""),
        ("   ", "", ""),
        ("Mara", "", "x" * (MAX_TEXT_LENGTH + 1)),
        ("Mara", ",".join(f"k{n}" for n in range(MAX_KEYWORDS + 1)), ""),
    ],
)
async def test_entries_over_the_limits_are_refused(db: Database, name: str, keywords: str, content: str) -> None:
    story_id, _ = await new_story(db)
    async with db.transaction() as s:
        with pytest.raises(InvalidLore):
            await repo.add_lore(s, story_id, name, keywords=keywords, content=content)
        await repo.add_lore(s, story_id, "x" * MAX_NAME_LENGTH, keywords="", content="x" * MAX_TEXT_LENGTH)
        await repo.add_lore(s, story_id, "Ok", keywords="", content="")
        with pytest.raises(InvalidLore):
            await repo.edit_lore(s, story_id, "Ok", new_name=name, keywords=keywords, content=content)


async def test_deleting_a_story_deletes_its_lore(db: Database) -> None:
    story_id, _ = await new_story(db)
    kept_id, _ = await new_story(db, "Kept")
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="")
        await repo.add_lore(s, story_id, "Tomas", keywords="", content="", status=LoreStatus.PROPOSED)
        await repo.add_lore(s, kept_id, "Mara", keywords="Mara", content="")
    async with db.transaction() as s:
        await repo.delete_story(s, story_id)
    async with db.read() as s:
        assert await s.scalar(sql_select(func.count()).select_from(LoreEntry)) == 1
        assert [e.name for e in await repo.list_lore(s, kept_id)] == ["Mara"]
