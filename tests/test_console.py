"""``kahani play`` driven through stdin, against the fake LM Studio and a real database."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from core import repository as repo
from core.db import Database
from tests.fakes.llm import SUMMARY_PROMPT_START, FakeLLM, Reply, tags_in

pytestmark = pytest.mark.filesystem  # starts ``python -m bot play`` from the checkout

ROOT = Path(__file__).resolve().parents[1]


def scene(text: str, *choices: str) -> str:
    return text + "\n\n### Choices\n" + "\n".join(f"{n}. {c}" for n, c in enumerate(choices, 1))


async def play(fake: FakeLLM, db_path: Path, lines: list[str], *args: str,
               env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "LLM_", "DATABASE_"))}
    env.update(LLM_BASE_URL=fake.base_url, DATABASE_URL=f"sqlite+aiosqlite:///{db_path}", PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "play", *args, cwd=db_path.parent, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate("\n".join(lines).encode() + b"\n"), 60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_a_story_is_played_in_the_terminal(fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.script(scene("The keeper's door stands open.", "Go in", "Knock", "Leave", "Wait"))
    fake_llm.script(scene("Inside, the lamp is still warm.", "Touch it", "Climb", "Call out", "Hide"))
    fake_llm.script(scene("Inside, the lamp is cold as stone.", "Touch it", "Climb", "Call out", "Hide"))
    fake_llm.script(scene("A storm tears at the shutters.", "Bar them", "Run", "Pray", "Sing"))
    fake_llm.script(scene("Thunder answers.", "Count", "Duck", "Laugh", "Listen"))
    fake_llm.script("Asha found the keeper's house empty and a storm rising.")
    lines = [
        "The Lighthouse", "mystery", "eerie", "a rocky island", "the keeper has vanished", "short",
        "1",            # Go in
        "r",            # regenerate: a cold lamp
        "v", "1",       # back to the warm lamp
        "b", "a storm breaks",
        "c",            # continue the storm scene
        "n", "The Storm",
        "i",
        "q",
    ]
    code, out, err = await play(fake_llm, tmp_path / "kahani.db", lines)
    assert code == 0, err
    assert "Traceback" not in err
    for text in ("The keeper's door stands open.", "1. Go in", "→ Go in", "Inside, the lamp is still warm.",
                 "Inside, the lamp is cold as stone.", "A storm tears at the shutters.", "Thunder answers.",
                 "The Storm begins with the next scene.", "Chapter 1: Asha found the keeper's house empty",
                 "Saved."):
        assert text in out, (text, out)
    assert "### Choices" not in out
    # The switch back showed the warm lamp as the current scene.
    assert out.index("[regenerate]") < out.rindex("Inside, the lamp is still warm.")

    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'kahani.db'}")
    try:
        async with db.read() as s:
            [story] = await repo.list_stories(s)
            assert (story.title, story.genre, story.scene_length) == ("The Lighthouse", "mystery", "short")
            path = await repo.active_path(s, story.id)
            assert [p.depth for p in path] == [0, 1]
            assert [v.kind for v in await repo.list_variants(s, path[1].scene_id)] == [
                "original", "regenerate", "branch", "continue"
            ]
            assert path[1].variant.content == "A storm tears at the shutters.\n\nThunder answers."
            assert [c.chapter.title for c in await repo.path_chapters(s, story.id)] == ["Chapter 1", "The Storm"]
    finally:
        await db.dispose()
    # The player's instructions reached the model in order.
    last_user = [r["messages"][-1]["content"] for r in fake_llm.chat_requests if r.get("stream")]
    assert last_user[1].startswith("The player chooses: Go in")
    assert "a storm breaks" in last_user[3]

    # Resuming shows where the story stopped.
    code, out, err = await play(fake_llm, tmp_path / "kahani.db", ["q"], "--story", str(story.id))
    assert code == 0, err
    assert "=== The Lighthouse ===" in out and "Thunder answers." in out


async def test_the_console_says_when_the_storyteller_is_down(tmp_path: Path, closed_port: int) -> None:
    class Closed:
        base_url = f"http://127.0.0.1:{closed_port}/v1"

    code, out, err = await play(Closed(), tmp_path / "kahani.db", ["", "", "", "", "", "", "q"])  # type: ignore[arg-type]
    assert code == 0, err
    assert "is not reachable" in out


async def test_a_long_story_in_the_terminal_gets_a_rolling_summary_that_the_next_scene_carries(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Played past its budget on a 2,048-token context (LLM_CONTEXT_LENGTH): the older
    scenes are summarised, and every scene's request remembers every earlier scene."""
    prose = " ".join(["The tide climbs the black rocks while the lamp turns above, slow and patient."] * 7)
    depth = iter(range(100))

    def tagged(body: dict[str, Any], n: int) -> Reply | None:
        if not body.get("stream"):
            return None  # summaries name the tags they were given (tests/fakes/llm.py)
        return Reply(text=scene(f"[#{next(depth)}] {prose}", "Go on", "Wait", "Listen", "Hide"))

    fake_llm.responder = tagged
    fake_llm.token_rate = None
    lines = ["The Long Tide", "", "", "", "", "short", *["1"] * 14, "i", "q"]
    code, out, err = await play(fake_llm, tmp_path / "kahani.db", lines, env_extra={"LLM_CONTEXT_LENGTH": "2048"})
    assert code == 0, err
    assert "Traceback" not in err
    requests = [r for r in fake_llm.chat_requests if r.get("stream")]
    assert len(requests) == 15
    for n, request in enumerate(requests):
        missing = set(range(n)) - tags_in(" ".join(str(m["content"]) for m in request["messages"]))
        assert not missing, f"scene {n}'s request forgot scenes {sorted(missing)}"
    summaries = [r for r in fake_llm.chat_requests if str(r["messages"][0]["content"]).startswith(SUMMARY_PROMPT_START)]
    assert summaries, "the story outgrew the context but nothing was summarised"
    assert "Earlier in this chapter: " in requests[-1]["messages"][1]["content"]
    assert "Chapter 1: The keeper's story went on" in out  # `i` shows the summary so far
