"""Who may see and do what (core/access.py), end to end through the Discord stand-in.

Every command and scene component is tried by every kind of actor on every kind of
story, on SQLite and PostgreSQL. The expected outcome of each try comes from the tables
below (written out by hand, not computed by the policy): allowed, or refused with an
ephemeral answer that names nothing of the story — nothing else sent anywhere, nothing
changed in the database. A story that may not be seen is answered exactly as a story
that does not exist, so a stranger learns nothing by trying numbers.

Every story holds a generation lease (held by a process elsewhere) for the whole module:
an allowed request then stops at "still writing" (or opens its form, or shows what it
shows) instead of starting a generation, so the tries do not disturb one another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, text

from bot.app import KahaniBot
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import MemberStatus, StoryMember, VariantKind, utcnow
from core.votes import MAX_DURATION
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, Permissions, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message, Overwrite
from tests.fakes.llm import FakeLLM
from tests.harness import running_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTORS = ("owner", "joined", "invited", "kicked", "viewer", "outsider", "stranger", "mod_thread", "mod_elsewhere")
STORIES = ("solo", "dm", "open", "private", "invite")

# Who may see (info, export, chapters, cast, autocomplete), play (resume, choose, vote, act,
# rate, narrate, join), host (regenerate, branch, continue, switch versions) and moderate
# (end, delete, settings, invite, kick, chapters, characters, story voice) each story.
#   solo:    alice's solo story in a public thread      dm:      alice's solo story in her DMs
#   open:    group story, public thread, open table      private: group story in a private thread
#   invite:  group story, public thread, invite-only table
# Actors: owner alice; joined / invited / kicked members (of the group stories); viewer, a
# server member who is none of these; outsider, a member of another server, typing there;
# stranger, in DMs; mod_thread, Manage Threads on the story's channel; mod_elsewhere,
# Manage Threads only as an override on another channel, typing there.
#                   owner joined invited kicked viewer outsider stranger mod_thread mod_elsewhere
RULES = {
    "see": {
        "solo":    "Y     .      .       .      .      .        .        .          .",
        "dm":      "Y     .      .       .      .      .        .        .          .",
        "open":    "Y     Y      Y       Y      Y      .        .        Y          Y",
        "private": "Y     Y      Y       .      .      .        .        Y          .",
        "invite":  "Y     Y      Y       .      .      .        .        Y          .",
    },
    "play": {
        "solo":    "Y     .      .       .      .      .        .        .          .",
        "dm":      "Y     .      .       .      .      .        .        .          .",
        "open":    "Y     Y      Y       .      Y      .        .        Y          Y",
        "private": "Y     Y      Y       .      .      .        .        .          .",
        "invite":  "Y     Y      Y       .      .      .        .        .          .",
    },
    "host": {s: "Y     .      .       .      .      .        .        .          ." for s in STORIES},
    "moderate": {
        "solo":    "Y     .      .       .      .      .        .        Y          .",
        "dm":      "Y     .      .       .      .      .        .        .          .",
        "open":    "Y     .      .       .      .      .        .        Y          .",
        "private": "Y     .      .       .      .      .        .        Y          .",
        "invite":  "Y     .      .       .      .      .        .        Y          .",
    },
}


def allowed(need: str, story: str, actor: str) -> bool:
    return RULES[need][story].split()[ACTORS.index(actor)] == "Y"


# What a refusal may say: nothing of the story (the "hidden" answer is the no-such-story one).
REFUSALS = {msg.STORY_NOT_FOUND, msg.NOT_YOUR_STORY, msg.NOT_A_PLAYER_KICKED, msg.VOTE_INVITE_ONLY,
            msg.GROUP_HOST_ONLY, msg.NOT_YOUR_STORY_TO_MANAGE, msg.VOTE_HOST_ONLY_CLOSE,
            msg.VOTE_MEMBERS_ONLY_CLOSE}
GROUP_STORIES = ("open", "private", "invite")
TABLES = ("users", "user_settings", "stories", "story_members", "chapters", "scenes", "scene_variants",
          "scene_choices", "summaries", "characters", "ballots", "votes", "variant_messages",
          "generation_leases")


# --- the world: one server with a story of each kind, another server, the bot -------------------


@dataclass
class Seeded:
    id: int
    place: Channel  # the thread, or alice's DM
    title: str
    message: Message | None = None  # the live scene, with its components


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    guild: Guild
    general: Channel
    backroom: Channel
    elsewhere: Channel
    users: dict[str, User]
    pawn: User  # invited and kicked by the moderation tries; never an actor
    stories: dict[str, Seeded] = field(default_factory=dict)
    members: dict[tuple[int, int], str] = field(default_factory=dict)  # as seeded: (story, user) → status

    @property
    def db(self) -> Database:
        return self.bot.db

    def channel_of(self, actor: str) -> Channel:
        """Where the actor types: their server's channel, or their DMs."""
        if actor == "stranger":
            return self.standin.dm_channel(self.users[actor])
        return {"outsider": self.elsewhere, "mod_elsewhere": self.backroom}.get(actor, self.general)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    url = module_database_url
    async with DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern")
        other = standin.add_guild("Elsewhere")
        users = {name: standin.add_user(name, guild=guild) for name in ACTORS if name not in ("outsider", "stranger")}
        users["outsider"] = standin.add_user("outsider", guild=other)
        users["stranger"] = standin.add_user("stranger")
        pawn = standin.add_user("pawn", guild=guild)
        general = standin.add_channel(guild, "stories", overwrites=(
            Overwrite(users["mod_thread"].id, True, allow=Permissions.MANAGE_THREADS),))
        backroom = standin.add_channel(guild, "backroom", overwrites=(
            Overwrite(users["mod_elsewhere"].id, True, allow=Permissions.MANAGE_THREADS),))
        elsewhere = standin.add_channel(other, "lobby")
        # Exports one after another for every actor: the cooldown has its own test.
        async with running_bot(standin, url, llm_base_url=llm.base_url, export_cooldown_seconds=0) as running:
            world = World(standin, running.bot, guild, general, backroom, elsewhere, users, pawn)
            for kind in STORIES:
                world.stories[kind] = await seed(world, kind)
            await show_live_scenes(world)
            async with world.db.read() as s:
                world.members = {(m.story_id, m.user_id): m.status for m in await s.scalars(select(StoryMember))}
            yield world


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def seed(world: World, kind: str) -> Seeded:
    """A story of ``kind``: two scenes (the last with two versions), a character, the
    members the tables assume, a vote that lasts all day, and a lease held elsewhere."""
    alice = world.users["owner"]
    title = f"The {kind.title()} Lighthouse"
    group = kind in GROUP_STORIES
    if kind == "dm":
        place = world.standin.dm_channel(alice)
    else:
        # As /story new makes them: a private thread is the bot's, with its players added.
        private = kind == "private"
        members = (alice, world.users["joined"], world.users["invited"]) if private else ()
        place = world.standin.add_thread(world.general, title, private=private,
                                         owner=world.standin.bot_user if private else alice, members=members)
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, alice.id, alice.name)
        votes: dict[str, Any] = {"duration": MAX_DURATION}
        if kind == "invite":
            votes["open_table"] = False
        story = await repo.create_story(
            s, owner, title, premise=f"Secret premise of {kind}", mode="group" if group else "solo",
            guild_id=None if kind == "dm" else world.guild.id,
            channel_id=place.id if kind == "dm" else world.general.id,
            thread_id=None if kind == "dm" else place.id, private=kind == "private", settings={"votes": votes})
        _, first = await repo.add_scene(s, story.id, None, f"Scene one of {kind}.", [repo.ChoiceSpec("Go on")])
        scene, _ = await repo.add_scene(s, story.id, first.id, f"Scene two of {kind}.",
                                        [repo.ChoiceSpec("Climb"), repo.ChoiceSpec("Wait")])
        await repo.add_variant(s, scene.id, VariantKind.REGENERATE, f"Scene two again, {kind}.",
                               [repo.ChoiceSpec("Climb"), repo.ChoiceSpec("Wait")])
        await repo.add_character(s, story.id, "Mara", description=f"Mara's secret of {kind}")
        if group:
            for name, status in (("joined", MemberStatus.JOINED), ("invited", MemberStatus.INVITED),
                                 ("kicked", MemberStatus.KICKED)):
                user = await repo.get_or_create_user(s, world.users[name].id, name)
                await repo.set_member(s, story.id, user.id, status)
        await repo.acquire_lease(s, story.id, "elsewhere:1:held-by-the-test", now=utcnow(), ttl=timedelta(days=1))
    return Seeded(story.id, place, title)


async def show_live_scenes(world: World) -> None:
    """The owner brings each story's latest scene up with its components (/story resume)."""
    alice = world.users["owner"]
    for seeded in world.stories.values():
        rec = await world.standin.slash(alice, world.general, "story resume", story=seeded.id)
        assert await answer_of(world, rec) == msg.RESUMED.format(where=getattr_mention(seeded.place))
        seeded.message = [m for m in seeded.place.messages
                          if m.author is world.standin.bot_user and m.component_items()][-1]


def getattr_mention(place: Channel) -> str:
    return "your DMs" if place.is_dm else f"<#{place.id}>"


# --- asking and checking ------------------------------------------------------------------------


MODAL = "<a form opened>"


async def answer_of(world: World, rec: InteractionRecord) -> str:
    """What the user sees in answer: a form, or the text of the last answer message."""
    response = await rec.wait_response(timeout=10)
    if response.type == 9:
        return MODAL
    if response.type == 6:  # a deferred update: the answer is a followup
        await world.standin.wait_until(lambda: rec.followups, what="the followup", timeout=10)
        return await answer_text(rec.followups)
    if response.type == 5:
        await world.standin.wait_until(lambda: rec.followups or (rec.original and rec.original.content),
                                       what="the followup", timeout=10)
    answers = [m for m in [rec.original, *rec.followups] if m is not None and (m.content or m.embeds)]
    if response.type == 7 and not answers:
        return "<the message was updated>"
    assert answers, f"no answer to {rec.data}"
    return await answer_text(answers)


async def answer_text(answers: list[Message]) -> str:
    last = answers[-1]
    return last.content or last.embeds[0].get("description") or last.embeds[0].get("title", "")


async def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    async with world.db.read() as s:
        return {t: sorted(map(tuple, (await s.execute(text(f"SELECT * FROM {t}"))).all()), key=repr)
                for t in TABLES}


def public_messages(world: World) -> int:
    return sum(len(c.all_messages) - sum(1 for m in c.all_messages if m.ephemeral_for is not None)
               for c in world.standin.channels.values())


async def reset(world: World) -> None:
    """Undo what allowed tries changed: statuses, memberships, votes, open ballots."""
    async with world.db.transaction() as s:
        await s.execute(text("UPDATE stories SET status = 'active'"))
        await s.execute(text("DELETE FROM votes"))
        await s.execute(text("UPDATE ballots SET closed_at = opened_at, closed_by = 'void' WHERE closed_at IS NULL"))
        for member in (await s.scalars(select(StoryMember))).all():
            status = world.members.get((member.story_id, member.user_id))
            if status is None:
                await s.delete(member)
            elif member.status != status:
                member.status = status


@dataclass
class Outcome:
    story: str
    actor: str
    expected: bool
    answer: str

    def wrong(self) -> str | None:
        refused = self.answer in REFUSALS
        if self.expected == (not refused):
            return None
        return f"{self.actor} on {self.story}: expected {'allowed' if self.expected else 'refused'}, got {self.answer!r}"


async def attempt(world: World, story: str, actor: str, expected: bool, send: Any, *,
                  undo: bool = False) -> Outcome:
    """One try: ``send()`` makes the interaction. A refusal must be ephemeral, name nothing
    of the story, hide it entirely from whoever may not see it, and change nothing."""
    before = await snapshot(world) if not expected else None
    posted = public_messages(world)
    rec = await send()
    answer = await answer_of(world, rec)
    outcome = Outcome(story, actor, expected, answer)
    if answer in REFUSALS:
        seeded = world.stories[story]
        sent = [m for m in [rec.original, *rec.followups] if m is not None and m is not rec.message]
        for message in sent:
            assert message.flags & EPHEMERAL and message.ephemeral_for is rec.user, (outcome, message)
            shown = message.text + repr(message.embeds) + repr(message.components)
            for secret in (seeded.title, f"Secret premise of {story}", "Mara", "Scene two"):
                assert secret not in shown, (outcome, shown)
            assert not message.attachments, outcome
        assert public_messages(world) == posted, f"{outcome}: something was posted"
        if not allowed("see", story, actor) and rec.message is None:
            assert answer == msg.STORY_NOT_FOUND, outcome  # as if there were no such story
    if before is not None:
        assert await snapshot(world) == before, f"{outcome}: the database changed"
    elif undo:  # an allowed try that changes what the next tries depend on
        place = world.stories[story].place
        ended = answer.startswith(msg.STORY_ENDED_NOW.split("{")[0])
        if ended and place.is_thread and place.owner_id == world.standin.bot_user.id:
            # /story end archives and locks a thread Kahani may manage (here: the threads it
            # made; it may not touch the others): open it again for the next tries.
            await world.standin.wait_until(lambda: place.archived, what="the ended story's thread archived")
            place.archived = place.locked = False
            world.standin._dispatch_channel("THREAD_UPDATE", place)
        await reset(world)
    return outcome


def check_all(outcomes: list[Outcome]) -> None:
    wrong = [w for o in outcomes if (w := o.wrong()) is not None]
    assert not wrong, "\n".join(wrong)


# --- commands -----------------------------------------------------------------------------------

COMMANDS: list[tuple[str, str, dict[str, Any]]] = [
    ("story info", "see", {}),
    ("story export", "see", {"format": "markdown"}),
    ("chapter list", "see", {}),
    ("chapter summary", "see", {}),
    ("character list", "see", {}),
    ("story resume", "play", {}),
    ("story settings", "moderate", {}),
    ("story vote-settings", "moderate", {}),
    ("story delete", "moderate", {}),
    ("story end", "moderate", {}),
    ("story invite", "moderate", {"player": "pawn"}),
    ("story kick", "moderate", {"player": "pawn"}),
    ("chapter new", "moderate", {}),
    ("character add", "moderate", {}),
    ("character edit", "moderate", {"name": "Mara"}),
    ("character remove", "moderate", {"name": "Mara"}),
    ("narrate voice", "moderate", {"voice": "default", "scope": "story"}),
    ("narrate speed", "moderate", {"speed": 1.0, "scope": "story"}),
    ("story memory", "see", {}),
    ("story note", "see", {}),
    ("story note", "moderate", {"text": "Keep it grim."}),
    ("lore list", "see", {}),
    ("lore show", "see", {"entry": "Bell"}),
    ("lore add", "moderate", {}),
    ("lore edit", "moderate", {"entry": "Bell"}),
    ("lore remove", "moderate", {"entry": "Bell"}),
    ("lore proposals", "moderate", {}),
]


@pytest.mark.parametrize(("command", "need", "options"), COMMANDS, ids=[c[0] for c in COMMANDS])
async def test_every_actor_gets_from_a_command_what_the_rules_say(world: World, command: str, need: str,
                                                                  options: dict[str, Any]) -> None:
    outcomes = []
    for story in STORIES:
        for actor in ACTORS:
            user = world.users[actor]
            values = {k: world.pawn if v == "pawn" else v for k, v in options.items()}

            async def send() -> InteractionRecord:
                return await world.standin.slash(user, world.channel_of(actor), command,
                                                 story=world.stories[story].id, **values)

            outcomes.append(await attempt(world, story, actor, allowed(need, story, actor), send,
                                          undo=command == "story end"))
    check_all(outcomes)


async def test_a_stranger_trying_numbers_gets_the_same_answer_as_for_no_story(world: World) -> None:
    stranger = world.users["stranger"]
    dm = world.standin.dm_channel(stranger)
    answers = set()
    for story_id in [*(s.id for s in world.stories.values()), 999_999, 2**31 - 1, 2**31, 2**53]:
        for command in ("story info", "story export", "chapter list", "character list", "story resume"):
            options = {"format": "markdown"} if command == "story export" else {}
            answers.add(await answer_of(world, await world.standin.slash(stranger, dm, command, story=story_id,
                                                                         **options)))
    assert answers == {msg.STORY_NOT_FOUND}


async def test_autocomplete_and_the_story_list_offer_only_what_the_caller_may_see(world: World) -> None:
    wrong = []
    by_id = {s.id: kind for kind, s in world.stories.items()}
    for actor in ACTORS:
        expected = {kind for kind in STORIES if allowed("see", kind, actor)}
        rec = await world.standin.autocomplete(world.users[actor], world.channel_of(actor), "story info",
                                               option="story", value="")
        offered = {by_id[c["value"]] for c in (await rec.wait_response()).data["choices"] if c["value"] in by_id}
        if offered != expected:
            wrong.append(f"{actor}: autocomplete offers {sorted(offered)}, may see {sorted(expected)}")
        listed = await answer_of(world, await world.standin.slash(world.users[actor], world.channel_of(actor),
                                                                  "story list"))
        shown = {kind for kind, s in world.stories.items() if s.title in listed}
        if shown != expected:
            wrong.append(f"{actor}: /story list shows {sorted(shown)}, may see {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


# --- components on a story's live scene ------------------------------------------------------------

COMPONENTS: list[tuple[str, str, str]] = [
    # (what is clicked, the need, which stories have it)
    ("1. Climb", "play", "all"),
    ("Your action", "play", "all"),
    ("Regenerate", "host", "all"),
    ("Continue", "host", "all"),
    ("Branch", "host", "all"),
    ("<versions>", "host", "all"),
    ("<rating>", "play", "all"),
    ("Favourite", "play", "all"),
    ("Narrate", "play", "all"),
    ("Join", "play", "group"),
    ("Close vote", "close", "group"),
]


def may_click(world: World, story: str, actor: str) -> bool:
    """Whether Discord shows the actor the story's message at all (else they cannot click)."""
    seeded = world.stories[story]
    user = world.users[actor]
    perms = world.standin.permissions_for(user, seeded.place)
    return bool(perms & Permissions.VIEW_CHANNEL)


def expected_for(need: str, story: str, actor: str) -> bool:
    if need == "close":  # the default settings: the host (or a moderator) closes a vote early
        return allowed("moderate", story, actor)
    return allowed(need, story, actor)


@pytest.mark.parametrize(("what", "need", "where"), COMPONENTS, ids=[c[0] for c in COMPONENTS])
async def test_every_actor_who_sees_a_scene_gets_from_its_components_what_the_rules_say(
        world: World, what: str, need: str, where: str) -> None:
    outcomes = []
    for story in (GROUP_STORIES if where == "group" else STORIES):
        seeded = world.stories[story]
        assert seeded.message is not None
        for actor in ACTORS:
            if not may_click(world, story, actor):
                assert actor in ("outsider", "stranger") or story in ("dm", "private"), (story, actor)
                continue
            user = world.users[actor]

            async def send() -> InteractionRecord:
                if what == "<versions>":
                    options = [c for c in seeded.message.component_items() if ":variant:" in c.get("custom_id", "")]
                    other = [o["value"] for o in options[0]["options"] if not o.get("default")][0]
                    return await world.standin.select(user, seeded.message, [other], custom_id=options[0]["custom_id"])
                if what == "<rating>":
                    rating = next(c["custom_id"] for c in seeded.message.component_items()
                                  if ":rate:" in c.get("custom_id", ""))
                    return await world.standin.select(user, seeded.message, ["4"], custom_id=rating)
                return await world.standin.click(user, seeded.message, what)

            outcomes.append(await attempt(world, story, actor, expected_for(need, story, actor), send,
                                          undo=what in ("1. Climb", "Join")))
    check_all(outcomes)


# --- private threads and invitations ------------------------------------------------------------------


async def test_an_invited_player_is_added_to_the_private_thread_and_a_kicked_one_taken_off(world: World) -> None:
    private = world.stories["private"]
    newcomer = world.standin.add_user(f"newcomer-{len(world.standin.users)}", guild=world.guild)
    rec = await world.standin.slash(world.users["owner"], private.place, "story invite", player=newcomer)
    assert "invited" in await answer_of(world, rec)
    await world.standin.wait_until(lambda: newcomer.id in private.place.thread_members, what="them in the thread")
    async with world.db.read() as s:
        user = await repo.find_user(s, newcomer.id)
        assert user is not None
        member = await repo.get_member(s, private.id, user.id)
        assert member is not None and member.status == MemberStatus.INVITED.value
    rec = await world.standin.slash(world.users["owner"], private.place, "story kick", player=newcomer)
    assert await answer_of(world, rec) == msg.MEMBER_KICKED.format(user=f"<@{newcomer.id}>", title=private.title)
    await world.standin.wait_until(lambda: newcomer.id not in private.place.thread_members, what="them gone")


async def test_a_members_only_story_is_exported_publicly_only_in_its_own_thread(world: World) -> None:
    joined = world.users["joined"]
    for kind in ("private", "invite"):
        seeded = world.stories[kind]
        rec = await world.standin.slash(joined, world.general, "story export", format="markdown", public=True,
                                        story=seeded.id)
        assert await answer_of(world, rec) == msg.EXPORT_PRIVATE_NOT_PUBLIC
        rec = await world.standin.slash(joined, seeded.place, "story export", format="markdown", public=True,
                                        story=seeded.id)
        answer = await answer_of(world, rec)
        sent = [m for m in [rec.original, *rec.followups] if m is not None and m.attachments]
        assert seeded.title in answer and sent and not sent[-1].flags & EPHEMERAL, answer
