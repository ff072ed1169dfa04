"""Reading a story back (issue 17): the path in pages, and the shape of the tree."""

from __future__ import annotations

import random
import re

from bot.ui.render import split_text
from core import repository as repo
from core.db import Database
from core.models import InstructionKind
from core.reading import PAGE_LIMIT, ReadScene, outline, reader_pages
from tests.test_repository import choices, grow, new_story

WORDS = "salt lantern keeper stair gull tide rope shutter ledger brass fog harbour".split()


def fifty_scenes(seed: int = 7) -> list[ReadScene]:
    rng = random.Random(seed)
    scenes = []
    for n in range(1, 51):
        paragraphs = ["".join(f"{rng.choice(WORDS)}{n}x{i} " for i in range(rng.randint(20, 160))).strip() + "."
                      for _ in range(rng.randint(1, 6))]
        chapter = 1 + (n - 1) // 12
        scenes.append(ReadScene(n, chapter, f"Chapter {chapter}", "" if n == 1 else f"Choice {n}",
                                "\n\n".join(paragraphs)))
    return scenes


def test_a_50_scene_story_reads_back_in_pages_with_every_word_in_order() -> None:
    scenes = fifty_scenes()
    pages = reader_pages(scenes, split_text)
    assert all(len(p.text) <= PAGE_LIMIT for p in pages)
    read = re.findall(r"\S+", "\n\n".join(p.text for p in pages))
    wanted = [w for s in scenes for w in re.findall(r"\S+", s.text)]
    assert [w for w in read if re.fullmatch(r"[a-z]+\d+x\d+\.?", w)] == wanted  # no word lost, cut or moved
    # Every chapter starts a page, which is where "jump to chapter" lands.
    starts = {p.chapter: p for p in reversed(pages)}
    assert sorted(starts) == [1, 2, 3, 4, 5]
    for chapter, page in starts.items():
        assert page.text.startswith(f"__**Chapter {chapter}**__")
        assert page.first_scene == 1 + (chapter - 1) * 12
    assert pages[0].first_scene == 1 and pages[-1].last_scene == 50
    assert all(a.last_scene <= b.first_scene for a, b in zip(pages, pages[1:], strict=False))


def test_a_scene_longer_than_a_page_is_split_at_paragraphs() -> None:
    long = "\n\n".join(f"Paragraph {i} " + ("word " * 150).strip() for i in range(12))
    pages = reader_pages([ReadScene(1, 1, "Chapter 1", "", long)], split_text)
    assert len(pages) >= 2 and all(len(p.text) <= PAGE_LIMIT for p in pages)
    assert all(p.first_scene == p.last_scene == 1 for p in pages)
    assert all(p.text.endswith("word") for p in pages)  # cut between paragraphs, never inside one
    assert re.findall(r"Paragraph (\d+)", "".join(p.text for p in pages)) == [str(i) for i in range(12)]


async def test_the_tree_shows_where_the_story_forks_and_how_far_each_branch_goes(db: Database) -> None:
    story_id = await new_story(db)
    original = await grow(db, story_id, 6)
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        await repo.rewind(s, story_id, path[2].scene_id)
        tree = await repo.story_outline(s, story_id)
    assert (tree.path_scenes, tree.scenes, tree.forks, tree.rewound) == (3, 6, (), 3)

    async with db.transaction() as s:  # play on from scene 3: a new version of scene 4
        await repo.add_scene(s, story_id, original[2], "Another 4", choices("a", "b"),
                             instruction_kind=InstructionKind.CHOICE, instruction="Swim")
    await grow(db, story_id, 1)
    async with db.read() as s:
        tree = await repo.story_outline(s, story_id)
    assert (tree.path_scenes, tree.scenes, tree.versions, tree.rewound) == (5, 7, 8, 0)
    [fork] = tree.forks
    assert (fork.scene_number, fork.versions, fork.active) == (4, 2, 2)
    assert fork.others == ((1, "original", 2),)  # version 1 of scene 4 goes on for 2 more scenes


def test_an_empty_story_has_an_empty_outline() -> None:
    assert outline([], [], None).path_scenes == 0
