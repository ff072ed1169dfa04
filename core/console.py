"""``kahani play``: play a story in the terminal against the configured model.

It drives the same engine the Discord bot uses, so it proves the engine works without
Discord and lets a newcomer try Kahani with nothing but LM Studio. Input is read line by
line (it works with a pipe too); end of input quits.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from core import repository as repo
from core.db import Database
from core.engine import ChoicesReady, EngineEvent, Failed, SceneDone, SceneText, StoryEngine, Summarising
from core.models import AppState, InstructionKind, SceneLength, StoryStatus, User
from core.summaries import SummaryWorker

CONSOLE_USER_KEY = "console_user_id"
HELP = """\
  1-4   take that choice          r   regenerate this scene
  text  do something of your own  c   continue this scene
  b     branch: the scene again, in a direction you give
  v     list this scene's versions and switch to one
  n     start a new chapter       i   story info
  q     quit (the story is saved; resume it with `kahani play`)"""


class Console:
    """A line-based front end over :class:`StoryEngine`."""

    def __init__(
        self,
        engine: StoryEngine,
        *,
        read: Callable[[str], str] = input,
        out: TextIO = sys.stdout,
    ) -> None:
        self.engine = engine
        self.db: Database = engine.db
        self._read = read
        self.out = out
        # Summaries fall due as the story grows; they are written while the player reads.
        self.summaries = SummaryWorker(self.db, engine)

    # --- i/o -----------------------------------------------------------------------

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    async def ask(self, prompt: str) -> str | None:
        """One line of input, or None at end of input."""
        try:
            return (await asyncio.to_thread(self._read, prompt)).strip()
        except EOFError:
            return None

    # --- the session ---------------------------------------------------------------

    async def run(self, story_id: int | None = None) -> int:
        self.summaries.start()
        try:
            return await self._run(story_id)
        finally:
            await self.summaries.close()

    async def _run(self, story_id: int | None) -> int:
        user_id = await self._console_user()
        if story_id is None:
            story_id = await self._pick_story(user_id)
            if story_id is None:
                return 0
        async with self.db.read() as s:
            story = await repo.get_story(s, story_id)
            tip = await repo.tip(s, story_id)
            title = story.title
        self.say(f"\n=== {title} ===  (? for help)\n")
        if tip is None:
            if not await self._show(self.engine.next_scene(story_id, user_id=user_id)):
                self.say("(type r to try again)")
        else:
            await self._print_tip(story_id)
        await self._loop(story_id, user_id)
        return 0

    async def _loop(self, story_id: int, user_id: int) -> None:
        while True:
            line = await self.ask("\n> ")
            if line is None or line.lower() in ("q", "quit", "exit"):
                self.say("\nSaved. Resume with `kahani play`.")
                return
            if not line:
                continue
            async with self.db.read() as s:
                tip = await repo.tip(s, story_id)
                choices = await repo.get_choices(s, tip.variant.id) if tip else []
            command = line.lower()
            if command in ("?", "h", "help"):
                self.say(HELP)
            elif tip is None:
                if command == "r":
                    await self._show(self.engine.next_scene(story_id, user_id=user_id))
                else:
                    self.say("The story has no scene yet: type r to write the first one.")
            elif command.isdigit() and 1 <= int(command) <= len(choices):
                choice = choices[int(command) - 1]
                self.say(f"\n→ {choice.text}\n")
                await self._show(self.engine.next_scene(
                    story_id, instruction_kind=InstructionKind.CHOICE, instruction=choice.text,
                    after_variant_id=tip.variant.id, user_id=user_id,
                ))
            elif command == "r":
                await self._show(self.engine.regenerate(tip.variant.id, user_id=user_id))
            elif command == "c":
                await self._show(self.engine.continue_scene(tip.variant.id, user_id=user_id))
            elif command == "b":
                direction = await self.ask("Which direction should this scene take instead? ")
                if direction:
                    await self._show(self.engine.branch(tip.variant.id, direction, user_id=user_id))
            elif command == "v":
                await self._variants(story_id, tip.scene_id)
            elif command == "n":
                await self._new_chapter(story_id, user_id)
            elif command == "i":
                await self._info(story_id)
            elif len(line) < 3:
                self.say("Type 1-4, your own action, or ? for help.")
            else:
                self.say(f"\n→ {line}\n")
                await self._show(self.engine.next_scene(
                    story_id, instruction_kind=InstructionKind.ACTION, instruction=line,
                    after_variant_id=tip.variant.id, user_id=user_id,
                ))

    async def _show(self, events: AsyncIterator[EngineEvent]) -> bool:
        """Print a generation as it streams; True when a scene was stored."""
        streamed = ""
        async for event in events:
            if isinstance(event, SceneText):
                streamed += event.text
                self.say(event.text, end="")
            elif isinstance(event, ChoicesReady):
                self.say()
            elif isinstance(event, Summarising):
                self.say("(catching up on the story so far…)")
            elif isinstance(event, SceneDone):
                if event.content != streamed:  # e.g. a reply cut short, trimmed
                    self.say(f"\n(final text)\n{event.content}")
                self._print_choices([c.text for c in event.choices])
                if event.context.flagged():
                    self.say(f"(the story fills {event.context.percent}% of the model's context: "
                             "type n to start a new chapter)")
                return True
            elif isinstance(event, Failed):
                self.say(f"\n! {event.reason}")
                return False
        return False

    def _print_choices(self, choices: list[str]) -> None:
        self.say()
        for n, text in enumerate(choices, start=1):
            self.say(f"  {n}. {text}")

    async def _print_tip(self, story_id: int) -> None:
        async with self.db.read() as s:
            tip = await repo.tip(s, story_id)
            assert tip is not None
            choices = await repo.get_choices(s, tip.variant.id)
        self.say(tip.variant.content)
        self._print_choices([c.text for c in choices])

    async def _variants(self, story_id: int, scene_id: int) -> None:
        async with self.db.read() as s:
            variants = await repo.list_variants(s, scene_id)
        for v in variants:
            mark = "*" if v.is_active else " "
            snippet = " ".join(v.content.split())[:60]
            self.say(f" {mark}{v.number}. [{v.kind}] {snippet}…")
        if len(variants) < 2:
            return
        pick = await self.ask("Switch to version (number, Enter to keep): ")
        chosen = next((v for v in variants if pick and pick.isdigit() and v.number == int(pick)), None)
        if chosen is None:
            return
        await self.engine.select_variant(chosen.id)
        self.say()
        await self._print_tip(story_id)

    async def _new_chapter(self, story_id: int, user_id: int) -> None:
        title = await self.ask("Title of the new chapter (Enter for none): ")
        try:
            chapter = await self.engine.new_chapter(story_id, title=title or "", user_id=user_id)
        except Exception as exc:  # KahaniError carries the reason; anything else too
            self.say(f"! {getattr(exc, 'message', exc)}")
            return
        self.say(f"{chapter.title} begins with the next scene. (The last chapter's summary is written "
                 "in the background.)")

    async def _info(self, story_id: int) -> None:
        # The memory as the next scene will have it: due summaries are written first.
        await self.summaries.drain()
        report = await self.engine.context_report(story_id)
        for chapter, summary in await self.engine.story_so_far(story_id):
            self.say(f"{chapter.title}: {summary or '(no summary yet)'}")
        self.say(f"Context: {report.percent}% of {report.budget} tokens")

    # --- choosing a story -------------------------------------------------------------

    async def _console_user(self) -> int:
        async with self.db.transaction() as s:
            state = await s.get(AppState, CONSOLE_USER_KEY)
            if state is not None:
                return int(state.value)
            user = await repo.get_or_create_user(s, None, "console")
            s.add(AppState(key=CONSOLE_USER_KEY, value=str(user.id)))
            return user.id

    async def _pick_story(self, user_id: int) -> int | None:
        async with self.db.read() as s:
            stories = await repo.list_stories(s, owner_id=user_id, status=StoryStatus.ACTIVE.value)
        if stories:
            self.say("Your stories:")
            for n, story in enumerate(stories, start=1):
                self.say(f"  {n}. {story.title}" + (f" ({story.genre})" if story.genre else ""))
            pick = await self.ask("Number to resume, or Enter for a new story: ")
            if pick is None:
                return None
            if pick.isdigit() and 1 <= int(pick) <= len(stories):
                return stories[int(pick) - 1].id
        return await self._create_story(user_id)

    async def _create_story(self, user_id: int) -> int | None:
        self.say("A new story. Press Enter to skip a question.")
        answers: dict[str, str] = {}
        for key, question in (
            ("title", "Title: "),
            ("genre", "Genre (e.g. fantasy, mystery): "),
            ("tone", "Tone (e.g. whimsical, grim): "),
            ("world_setting", "World / setting: "),
            ("premise", "Premise (how does it start?): "),
            ("scene_length", "Scene length (short/medium/long) [medium]: "),
        ):
            answer = await self.ask(question)
            if answer is None:
                return None
            answers[key] = answer
        length = answers.pop("scene_length").lower() or SceneLength.MEDIUM.value
        if length not in {m.value for m in SceneLength}:
            self.say(f"(unknown length {length!r}: using medium)")
            length = SceneLength.MEDIUM.value
        title = answers.pop("title") or "Untitled story"
        async with self.db.transaction() as s:
            owner = await s.get_one(User, user_id)
            story = await repo.create_story(s, owner, title[:200], scene_length=length, genre=answers["genre"],
                                            tone=answers["tone"], world_setting=answers["world_setting"],
                                            premise=answers["premise"])
            return story.id
