"""The story repository on SQLite and PostgreSQL: the tree, the path, leases, deletion."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from core import repository as repo
from core.db import Database
from core.errors import Conflict, NotFound
from core.models import (
    Base,
    Chapter,
    InstructionKind,
    MemberStatus,
    Scene,
    SceneVariant,
    Story,
    SummaryKind,
    VariantKind,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def choices(*texts: str) -> list[repo.ChoiceSpec]:
    return [repo.ChoiceSpec(t) for t in texts]


async def new_story(db: Database, title: str = "The Lighthouse") -> int:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, title, genre="mystery", tone="eerie")
        return story.id


async def grow(db: Database, story_id: int, scenes: int) -> list[int]:
    """Append ``scenes`` scenes to the path; returns their active variant ids."""
    variant_ids: list[int] = []
    async with db.transaction() as s:
        last = await repo.tip(s, story_id)
        parent = last.variant.id if last else None
        for n in range(scenes):
            _, variant = await repo.add_scene(
                s,
                story_id,
                parent,
                f"Scene text {n}",
                choices("Go left", "Go right", "Wait", "Run"),
                instruction_kind=InstructionKind.CHOICE if parent else InstructionKind.OPENING,
                instruction="Go left" if parent else "",
                token_count=42,
            )
            parent = variant.id
            variant_ids.append(variant.id)
    return variant_ids


async def path_texts(db: Database, story_id: int) -> list[str]:
    async with db.read() as s:
        return [p.variant.content for p in await repo.active_path(s, story_id)]


async def test_a_story_grows_along_its_active_path(db: Database) -> None:
    story_id = await new_story(db)
    await grow(db, story_id, 3)
    assert await path_texts(db, story_id) == ["Scene text 0", "Scene text 1", "Scene text 2"]
    async with db.read() as s:
        path = await repo.active_path(s, story_id)
        assert [p.depth for p in path] == [0, 1, 2]
        stored = await repo.get_choices(s, path[-1].variant.id)
        assert [c.text for c in stored] == ["Go left", "Go right", "Wait", "Run"]
        assert [c.position for c in stored] == [1, 2, 3, 4]


async def test_switching_an_earlier_variant_changes_the_path_and_switching_back_restores_it(
    db: Database,
) -> None:
    story_id = await new_story(db)
    original = await grow(db, story_id, 4)
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        second_scene = path[1].scene_id
        branch = await repo.add_variant(
            s,
            second_scene,
            VariantKind.BRANCH,
            "A different scene 1",
            choices("Climb", "Swim", "Hide", "Shout"),
            instruction_kind=InstructionKind.DIRECTOR,
            instruction="Make it stormy",
        )
    # The branch has no continuation yet: the path ends at it.
    assert await path_texts(db, story_id) == ["Scene text 0", "A different scene 1"]
    await grow(db, story_id, 2)
    assert await path_texts(db, story_id) == [
        "Scene text 0", "A different scene 1", "Scene text 0", "Scene text 1"
    ]

    async with db.transaction() as s:
        await repo.set_active_variant(s, original[1])
    assert await path_texts(db, story_id) == [
        "Scene text 0", "Scene text 1", "Scene text 2", "Scene text 3"
    ]
    async with db.read() as s:
        path = await repo.active_path(s, story_id)
        assert [p.variant.id for p in path] == original  # the old continuation, untouched
        story = await repo.get_story(s, story_id)
        assert story.tip_scene_id == path[-1].scene_id

    async with db.transaction() as s:
        await repo.set_active_variant(s, branch.id)
    assert len(await path_texts(db, story_id)) == 4
    assert (await path_texts(db, story_id))[1] == "A different scene 1"


async def test_rewinding_to_scene_3_of_6_and_playing_on_keeps_scenes_4_to_6_as_another_version(
    db: Database,
) -> None:
    story_id = await new_story(db)
    original = await grow(db, story_id, 6)
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        third = await repo.rewind(s, story_id, path[2].scene_id)
        assert third.variant.id == original[2]
    assert await path_texts(db, story_id) == ["Scene text 0", "Scene text 1", "Scene text 2"]
    async with db.transaction() as s:  # nothing was deleted
        assert len(await repo.list_variants(s, path[5].scene_id)) == 1

    # Playing on writes a new version of scene 4; the old scene 4 keeps 5 and 6 under it.
    async with db.transaction() as s:
        scene, variant = await repo.add_scene(s, story_id, original[2], "A new scene 4",
                                              choices("Climb", "Swim", "Hide", "Shout"),
                                              instruction_kind=InstructionKind.CHOICE, instruction="Swim")
        assert scene.id == path[3].scene_id and (variant.number, variant.kind) == (2, "branch")
    assert await path_texts(db, story_id) == ["Scene text 0", "Scene text 1", "Scene text 2", "A new scene 4"]
    await grow(db, story_id, 1)
    assert len(await path_texts(db, story_id)) == 5

    async with db.transaction() as s:  # selecting the old version of scene 4 brings 5 and 6 back
        await repo.set_active_variant(s, original[3])
    async with db.read() as s:
        assert [p.variant.id for p in await repo.active_path(s, story_id)] == original


async def test_only_a_scene_of_the_current_path_can_be_rewound_to(db: Database) -> None:
    story_id = await new_story(db)
    original = await grow(db, story_id, 3)
    other = await new_story(db, "Elsewhere")
    await grow(db, other, 1)
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        elsewhere = await repo.tip(s, other)
        assert elsewhere is not None and [p.variant.id for p in path] == original
        await repo.add_variant(s, path[1].scene_id, VariantKind.BRANCH, "Another 1")  # scene 3 is off the path now
        with pytest.raises(NotFound):
            await repo.rewind(s, story_id, path[2].scene_id)
        with pytest.raises(NotFound):
            await repo.rewind(s, story_id, elsewhere.scene_id)


async def test_regenerate_keeps_the_choice_that_led_here(db: Database) -> None:
    story_id = await new_story(db)
    await grow(db, story_id, 2)
    async with db.transaction() as s:
        last = await repo.tip(s, story_id)
        assert last is not None
        regenerated = await repo.add_variant(s, last.scene_id, VariantKind.REGENERATE, "Again")
        assert regenerated.instruction_kind == InstructionKind.CHOICE
        assert regenerated.instruction == "Go left"
        assert regenerated.number == 2
        assert regenerated.source_variant_id == last.variant.id
    async with db.read() as s:
        variants = await repo.list_variants(s, last.scene_id)
        assert [(v.number, v.is_active, v.content) for v in variants] == [
            (1, False, "Scene text 1"),
            (2, True, "Again"),
        ]


async def test_continue_and_edit_are_new_variants_and_the_old_one_keeps_its_choices(
    db: Database,
) -> None:
    story_id = await new_story(db)
    await grow(db, story_id, 1)
    async with db.transaction() as s:
        first = await repo.tip(s, story_id)
        assert first is not None
        cont = await repo.add_variant(
            s, first.scene_id, VariantKind.CONTINUE, "Scene text 0 and more",
            choices("A", "B", "C", "D"), source_variant_id=first.variant.id,
        )
        edit = await repo.add_variant(
            s, first.scene_id, VariantKind.EDIT, "Hand written", source_variant_id=cont.id
        )
    async with db.read() as s:
        assert [c.text for c in await repo.get_choices(s, first.variant.id)] == [
            "Go left", "Go right", "Wait", "Run"
        ]
        assert [v.kind for v in await repo.list_variants(s, first.scene_id)] == [
            "original", "continue", "edit"
        ]
        assert (await repo.tip(s, story_id)).variant.id == edit.id


async def test_only_the_tip_can_be_continued(db: Database) -> None:
    story_id = await new_story(db)
    variants = await grow(db, story_id, 3)
    async with db.transaction() as s:
        with pytest.raises(Conflict, match="no longer the last"):
            await repo.add_scene(s, story_id, variants[0], "Stale click")
    assert await path_texts(db, story_id) == ["Scene text 0", "Scene text 1", "Scene text 2"]


async def test_schema_allows_one_active_variant_per_scene(db: Database) -> None:
    story_id = await new_story(db)
    await grow(db, story_id, 1)
    async with db.transaction() as s:
        last = await repo.tip(s, story_id)
        await repo.add_variant(s, last.scene_id, VariantKind.REGENERATE, "v2", activate=False)
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(
                SceneVariant.__table__.update()
                .where(SceneVariant.scene_id == last.scene_id)
                .values(is_active=True)
            )


async def test_schema_allows_one_child_scene_per_variant_and_one_root(db: Database) -> None:
    story_id = await new_story(db)
    variants = await grow(db, story_id, 1)
    async with db.read() as s:
        chapter_id = (await repo.tip(s, story_id)).chapter_id
    async with db.transaction() as s:
        s.add(Scene(story_id=story_id, chapter_id=chapter_id, parent_variant_id=variants[0], depth=1))
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            s.add(Scene(story_id=story_id, chapter_id=chapter_id, parent_variant_id=variants[0], depth=1))
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            s.add(Scene(story_id=story_id, chapter_id=chapter_id, parent_variant_id=None, depth=0))


async def test_schema_keeps_choice_positions_unique(db: Database) -> None:
    story_id = await new_story(db)
    variants = await grow(db, story_id, 1)
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            from core.models import SceneChoice

            s.add(SceneChoice(variant_id=variants[0], position=1, text="dup", label="dup"))


async def test_deleting_a_story_removes_every_row_of_its_tree(db: Database) -> None:
    keep = await new_story(db, "Kept")
    await grow(db, keep, 2)
    story_id = await new_story(db, "Doomed")
    await grow(db, story_id, 3)
    async with db.transaction() as s:
        last = await repo.tip(s, story_id)
        await repo.add_variant(s, last.scene_id, VariantKind.BRANCH, "alt", choices("x", "y", "z", "w"))
        await repo.open_chapter(s, story_id, (await repo.tip(s, story_id)).variant.id, summary="So far")
        await repo.add_character(s, story_id, "Mira", description="keeper")
        other = await repo.get_or_create_user(s, 2002, "Ben")
        await repo.set_member(s, story_id, other.id, MemberStatus.JOINED)
        assert await repo.acquire_lease(s, story_id, "p1", now=T0)
    counts_before = await _row_counts(db)

    async with db.transaction() as s:
        await repo.delete_story(s, story_id)

    counts_after = await _row_counts(db)
    async with db.read() as s:
        kept_counts = {
            "scenes": await s.scalar(select(func.count()).select_from(Scene).where(Scene.story_id == keep)),
        }
    assert kept_counts["scenes"] == 2
    for table in ("scenes", "scene_variants", "scene_choices", "chapters", "summaries",
                  "characters", "story_members", "generation_leases", "stories"):
        assert counts_before[table] > counts_after[table] or counts_before[table] == 0, table
    # Only the kept story's rows are left.
    assert counts_after["stories"] == 1
    assert counts_after["scene_variants"] == 2
    assert counts_after["scene_choices"] == 8
    assert counts_after["summaries"] == 0
    assert counts_after["characters"] == 0
    assert counts_after["generation_leases"] == 0
    assert counts_after["chapters"] == 1
    assert counts_after["story_members"] == 1
    async with db.read() as s:
        with pytest.raises(NotFound):
            await repo.get_story(s, story_id)


async def _row_counts(db: Database) -> dict[str, int]:
    async with db.read() as s:
        return {
            name: await s.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
        }


class QueryCounter:
    def __init__(self, db: Database) -> None:
        self.statements: list[str] = []
        self._engine = db.engine.sync_engine

    def __enter__(self) -> QueryCounter:
        event.listen(self._engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "COMMIT", "ROLLBACK")):
            self.statements.append(statement)


async def _bulk_story(db: Database, scenes: int) -> int:
    """A long story written with core SQL inserts (the repository path is too slow for
    thousands of scenes in a test): the same rows add_scene would write."""
    story_id = await new_story(db, f"{scenes} scenes")
    async with db.transaction() as s:
        chapter = await s.scalar(select(Chapter.id).where(Chapter.story_id == story_id))
        parent = None
        for depth in range(scenes):
            scene = Scene(story_id=story_id, chapter_id=chapter, parent_variant_id=parent, depth=depth)
            s.add(scene)
            await s.flush()
            variant = SceneVariant(
                scene_id=scene.id, number=1, kind="original", content=f"Scene {depth}",
                is_active=True, token_count=10,
            )
            s.add(variant)
            await s.flush()
            parent = variant.id
        await s.execute(Story.__table__.update().where(Story.id == story_id).values(tip_scene_id=scene.id))
    return story_id


async def test_reading_the_last_scenes_costs_the_same_for_10_and_1000_scenes(db: Database) -> None:
    short = await _bulk_story(db, 10)
    long = await _bulk_story(db, 1000)
    if db.dialect == "postgresql":
        # The planner needs table statistics (autovacuum keeps them; a bulk load in a
        # test outruns it): without them it may guess a sequential scan is cheaper.
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    results = {}
    for story_id in (short, long):
        async with db.read() as s:
            with QueryCounter(db) as counter:
                last = await repo.active_path(s, story_id, limit=5)
                chapters = await repo.path_chapters(s, story_id)
            results[story_id] = (len(counter.statements), [p.variant.content for p in last], counter.statements)
            assert len(chapters) == 1
    assert results[short][0] == results[long][0]
    assert results[short][1] == [f"Scene {n}" for n in range(5, 10)]
    assert results[long][1] == [f"Scene {n}" for n in range(995, 1000)]

    # The rows the database reads must not grow with the story either.
    path_sql = results[long][2][0]  # the recursive walk (before the chapter queries)
    assert "RECURSIVE" in path_sql.upper()
    if db.dialect == "postgresql":
        touched_long = await _rows_touched(db, long)
        touched_short = await _rows_touched(db, short)
        assert touched_long == touched_short, (touched_short, touched_long)
        assert touched_long < 100, touched_long  # ~5 scenes' worth, not 1,000
    else:
        plan = await _sqlite_plan(db, long)
        assert not any(line.startswith("SCAN scene") for line in plan), plan


async def test_the_whole_active_path_is_one_query_for_any_length(db: Database) -> None:
    story_id = await _bulk_story(db, 300)
    async with db.read() as s:
        with QueryCounter(db) as counter:
            path = await repo.active_path(s, story_id)
    assert [p.depth for p in path] == list(range(300))
    assert len(counter.statements) == 1  # the walk, anchored at the stored tip


async def _walk_statement(db: Database, story_id: int) -> tuple[str, object]:
    """The recursive walk ``active_path(limit=5)`` sends, with its parameters."""
    captured: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if "RECURSIVE" in statement.upper():
            captured.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", grab)
    try:
        async with db.read() as s:
            await repo.active_path(s, story_id, limit=5)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", grab)
    return captured[0]


async def _rows_touched(db: Database, story_id: int) -> int:
    """Sum of rows every plan node produced (PostgreSQL EXPLAIN ANALYZE) for the walk."""
    statement, parameters = await _walk_statement(db, story_id)
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        plan = await raw.driver_connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *parameters)

    def total(node: dict) -> int:
        own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
        return own + sum(total(child) for child in node.get("Plans", []))

    plan = json.loads(plan) if isinstance(plan, str) else plan
    return total(plan[0]["Plan"])


async def _sqlite_plan(db: Database, story_id: int) -> list[str]:
    """The steps of SQLite's plan for the walk (SCAN = a whole-table read)."""
    statement, parameters = await _walk_statement(db, story_id)
    async with db.engine.connect() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [row[3] for row in rows]


async def test_chapters_follow_the_branch_they_were_made_on(db: Database) -> None:
    story_id = await new_story(db)
    variants = await grow(db, story_id, 2)
    async with db.transaction() as s:
        await repo.open_chapter(s, story_id, variants[1], summary="Asha found the key.", title="The Key")
    await grow(db, story_id, 2)
    async with db.read() as s:
        chapters = await repo.path_chapters(s, story_id)
        path = await repo.active_path(s, story_id)
    assert [(c.chapter.number, c.summary.content if c.summary else None) for c in chapters] == [
        (1, "Asha found the key."),
        (2, None),
    ]
    assert [p.chapter_id for p in path] == [chapters[0].chapter.id] * 2 + [chapters[1].chapter.id] * 2

    # Switching scene 2 to another variant leaves chapter 2 (and its summary) behind...
    async with db.transaction() as s:
        await repo.add_variant(s, path[1].scene_id, VariantKind.REGENERATE, "Other scene 1")
    async with db.read() as s:
        chapters = await repo.path_chapters(s, story_id)
    assert [(c.chapter.number, c.summary) for c in chapters] == [(1, None)]

    # ... and switching back brings it back.
    async with db.transaction() as s:
        await repo.set_active_variant(s, variants[1])
    async with db.read() as s:
        chapters = await repo.path_chapters(s, story_id)
    assert [c.chapter.title for c in chapters] == ["Chapter 1", "The Key"]
    assert chapters[0].summary.content == "Asha found the key."


async def test_rolling_summary_is_found_on_the_path(db: Database) -> None:
    story_id = await new_story(db)
    variants = await grow(db, story_id, 4)
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        await repo.set_summary(s, variants[2], path[2].chapter_id, SummaryKind.ROLLING, "Up to 2", through_depth=2)
        await repo.set_summary(s, variants[1], path[1].chapter_id, SummaryKind.ROLLING, "Up to 1", through_depth=1)
    async with db.read() as s:
        path = await repo.active_path(s, story_id)
        summary = await repo.rolling_summary(s, path)
    assert summary is not None and summary.content == "Up to 2"


async def test_characters_and_user_settings(db: Database) -> None:
    story_id = await new_story(db)
    async with db.transaction() as s:
        await repo.add_character(s, story_id, "Mira", description="The keeper", personality="wry")
        with pytest.raises(Conflict):
            await repo.add_character(s, story_id, "mira")
        await repo.update_character(s, story_id, "MIRA", voice="af_bella")
        user = await repo.get_or_create_user(s, 1001, "Asha")
        settings = await repo.get_user_settings(s, user.id)
        assert (settings.scene_length, settings.tts_speed, settings.auto_narrate) == ("medium", 1.0, False)
        await repo.update_user_settings(s, user.id, tts_voice="af_sky", tts_speed=1.25)
    async with db.read() as s:
        [mira] = await repo.list_characters(s, story_id)
        assert (mira.name, mira.voice, mira.personality) == ("Mira", "af_bella", "wry")
        settings = await repo.get_user_settings(s, user.id)
        assert (settings.tts_voice, settings.tts_speed) == ("af_sky", 1.25)
    async with db.transaction() as s:
        await repo.remove_character(s, story_id, "Mira")
        with pytest.raises(NotFound):
            await repo.get_character(s, story_id, "Mira")


# --- leases ---------------------------------------------------------------------------


async def test_a_lease_is_exclusive_until_it_expires(db: Database) -> None:
    story_id = await new_story(db)
    async with db.transaction() as s:
        assert await repo.acquire_lease(s, story_id, "proc-a", now=T0, frontend_ref="msg:1")
    async with db.transaction() as s:
        assert not await repo.acquire_lease(s, story_id, "proc-b", now=T0 + timedelta(seconds=29))
        assert await repo.heartbeat_lease(s, story_id, "proc-a", now=T0 + timedelta(seconds=20))
    async with db.transaction() as s:
        # The heartbeat moved the expiry to T0+50 s.
        assert not await repo.acquire_lease(s, story_id, "proc-b", now=T0 + timedelta(seconds=45))
        assert await repo.acquire_lease(s, story_id, "proc-b", now=T0 + timedelta(seconds=51))
    async with db.transaction() as s:
        assert not await repo.heartbeat_lease(s, story_id, "proc-a", now=T0 + timedelta(seconds=52))
        assert not await repo.release_lease(s, story_id, "proc-a")
        lease = await repo.get_lease(s, story_id)
        assert lease.holder == "proc-b" and lease.frontend_ref is None
        assert await repo.release_lease(s, story_id, "proc-b")
        assert await repo.acquire_lease(s, story_id, "proc-c", now=T0 + timedelta(seconds=53))


async def test_start_up_reclaims_only_expired_leases(db: Database) -> None:
    crashed = await new_story(db, "Crashed")
    alive = await new_story(db, "Alive")
    async with db.transaction() as s:
        assert await repo.acquire_lease(s, crashed, "dead-proc", now=T0, frontend_ref="msg:77")
        assert await repo.acquire_lease(s, alive, "live-proc", now=T0 + timedelta(seconds=25))
    async with db.transaction() as s:
        reclaimed = await repo.reclaim_expired_leases(s, now=T0 + timedelta(seconds=31))
    assert [(l.story_id, l.holder, l.frontend_ref) for l in reclaimed] == [(crashed, "dead-proc", "msg:77")]
    async with db.read() as s:
        assert await repo.get_lease(s, crashed) is None
        assert (await repo.get_lease(s, alive)).holder == "live-proc"


async def test_two_concurrent_lease_attempts_exactly_one_wins(database_url: str, engine_name: str) -> None:
    # Two engines = two independent connections (two processes, as far as the DB knows).
    first, second = Database.from_url(database_url), Database.from_url(database_url)
    try:
        story_id = await new_story(first)
        for attempt in range(5):
            gate = asyncio.Event()

            async def contender(db: Database, holder: str) -> bool:
                await gate.wait()
                async with db.transaction() as s:
                    return await repo.acquire_lease(s, story_id, holder, now=T0 + timedelta(minutes=attempt))

            tasks = [
                asyncio.create_task(contender(first, f"a{attempt}")),
                asyncio.create_task(contender(second, f"b{attempt}")),
            ]
            await asyncio.sleep(0)  # let both reach the gate, then open it at once
            gate.set()
            results = await asyncio.gather(*tasks)
            assert sorted(results) == [False, True], results
            async with first.transaction() as s:
                holder = (await repo.get_lease(s, story_id)).holder
                assert holder == (f"a{attempt}" if results[0] else f"b{attempt}")
                await repo.release_lease(s, story_id, holder)
    finally:
        await first.dispose()
        await second.dispose()


# Row-lock interleaving is specific to PostgreSQL (SQLite serialises writers).
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
async def test_postgresql_lease_race_blocks_the_loser_until_the_winner_commits(
    database_url: str,
) -> None:
    first, second = Database.from_url(database_url), Database.from_url(database_url)
    try:
        story_id = await new_story(first)
        async with first.transaction() as s1:
            assert await repo.acquire_lease(s1, story_id, "winner", now=T0)
            # The second connection's insert waits on the uncommitted row...
            loser = asyncio.create_task(_try_lease(second, story_id, "loser"))
            await _wait_until_blocked(first)
            assert not loser.done()
        # ... and, once the winner commits, finds the lease held.
        assert await loser is False
    finally:
        await first.dispose()
        await second.dispose()


async def _try_lease(db: Database, story_id: int, holder: str) -> bool:
    async with db.transaction() as s:
        return await repo.acquire_lease(s, story_id, holder, now=T0 + timedelta(seconds=1))


async def _wait_until_blocked(db: Database) -> None:
    """Wait until some other backend waits on a lock (pg_stat_activity), without sleeping blind."""
    engine = db.engine
    async with engine.connect() as conn:
        for _ in range(500):
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
            await conn.rollback()
            if waiting:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the second lease attempt never waited on the lock")


async def test_a_cooldown_refuses_within_its_time_and_counts_per_user_and_kind(db: Database) -> None:
    from core import cooldowns
    from core.models import RateEvent

    async with db.transaction() as s:
        asha = await repo.get_or_create_user(s, 1001, "Asha")
        ben = await repo.get_or_create_user(s, 1002, "Ben")
        await cooldowns.take(s, "export", asha.id, every=timedelta(seconds=30), now=T0)
    with pytest.raises(cooldowns.CoolingDown) as refused:
        async with db.transaction() as s:
            await cooldowns.take(s, "export", asha.id, every=timedelta(seconds=30), now=T0 + timedelta(seconds=10))
    assert refused.value.message == "You just did that: you can again in 20 s."
    async with db.transaction() as s:  # someone else, or something else: not held back
        await cooldowns.take(s, "export", ben.id, every=timedelta(seconds=30), now=T0 + timedelta(seconds=10))
        await cooldowns.take(s, "other", asha.id, every=timedelta(seconds=30), now=T0 + timedelta(seconds=10))
        await cooldowns.take(s, "export", asha.id, every=timedelta(seconds=30), now=T0 + timedelta(seconds=30))
    async with db.transaction() as s:  # a day later the old rows are pruned
        await cooldowns.take(s, "export", asha.id, every=timedelta(seconds=30), now=T0 + timedelta(days=2))
        count = await s.scalar(select(func.count()).select_from(RateEvent).where(RateEvent.user_id == asha.id,
                                                                                RateEvent.kind == "export"))
    assert count == 1


async def test_a_story_has_at_most_so_many_characters_and_lore_entries(db: Database) -> None:
    from core.repository.characters import MAX_CHARACTERS
    from core.repository.lore import MAX_ENTRIES

    story_id = await new_story(db)
    async with db.transaction() as s:
        for n in range(MAX_CHARACTERS):
            await repo.add_character(s, story_id, f"Keeper {n}")
        for n in range(MAX_ENTRIES):
            await repo.add_lore(s, story_id, f"Place {n}", keywords=f"place{n}", content="")
    with pytest.raises(Conflict, match=f"at most {MAX_CHARACTERS} characters"):
        async with db.transaction() as s:
            await repo.add_character(s, story_id, "One too many")
    with pytest.raises(Conflict, match=f"at most {MAX_ENTRIES} lore entries"):
        async with db.transaction() as s:
            await repo.add_lore(s, story_id, "One too many", keywords="", content="")
    async with db.read() as s:
        assert len(await repo.list_characters(s, story_id)) == MAX_CHARACTERS


async def test_forgetting_a_person_deletes_their_solo_stories_votes_and_settings_and_anonymises_them(
    db: Database,
) -> None:
    from core.models import Ballot, User, Vote
    from core.privacy import FORMER_PLAYER, forget, kept_about

    async with db.transaction() as s:
        asha = await repo.get_or_create_user(s, 1001, "Asha")
        ben = await repo.get_or_create_user(s, 1002, "Ben")
        await repo.get_user_settings(s, asha.id)
        own = await repo.create_story(s, asha, "Asha's", mode="solo")
        await repo.add_scene(s, own.id, None, "Asha's scene.")
        hosted = await repo.create_story(s, asha, "Asha's table", mode="group")
        table = await repo.create_story(s, ben, "Ben's table", mode="group")
        _, variant = await repo.add_scene(s, table.id, None, "Ben's scene.", created_by_id=asha.id)
        await repo.set_member(s, table.id, asha.id, MemberStatus.JOINED)
        ballot = Ballot(story_id=table.id, variant_id=variant.id, deadline=T0)
        s.add(ballot)
        await s.flush()
        s.add(Vote(ballot_id=ballot.id, user_id=asha.id, position=1))
        own_id, hosted_id, table_id, asha_id = own.id, hosted.id, table.id, asha.id
    async with db.read() as s:
        kept = await kept_about(s, 1001)
    assert kept is not None and [t for _, t, _ in kept.solo] == ["Asha's"]
    assert (kept.hosted, kept.tables, kept.votes, kept.has_settings) == (1, 1, 1, True)
    async with db.transaction() as s:
        assert await forget(s, 1001) is not None
    async with db.read() as s:
        assert await kept_about(s, 1001) is None  # nothing is found under her Discord id
        assert await s.get(Story, own_id) is None  # her solo story, every scene of it
        assert await s.scalar(select(func.count()).select_from(Vote)) == 0
        former = await s.get(User, asha_id)
        assert former is not None and (former.discord_id, former.display_name) == (None, FORMER_PLAYER)
        assert await s.get(Story, hosted_id) is not None  # the table she hosts goes on
        [kept_scene] = await repo.active_path(s, table_id)  # Ben's story is as it was
        assert kept_scene.variant.content == "Ben's scene."
        assert await kept_about(s, 1002) is not None
