"""The story database: SQLAlchemy 2 models for the story tree and everything around it.

A story is a tree (docs/architecture.md, "The story tree"): a scene hangs under the variant it continues from
(``parent_variant_id``), each scene has variants, each variant its own choices. The path
that is "the story" follows each scene's active variant; the story stores its current tip
so that the recent scenes are read by walking up from it (docs/architecture.md, "The story tree").

Constraints live in the schema, not only in code: one active variant per scene, one child
scene per variant, one root scene per story, unique choice positions, and cascades that
delete a story's whole tree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: Alembic can drop and compare them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC (which also keeps its string comparisons correct) and made aware on load.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class StoryMode(enum.StrEnum):
    SOLO = "solo"
    GROUP = "group"


class StoryStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class SceneLength(enum.StrEnum):
    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


class VariantKind(enum.StrEnum):
    ORIGINAL = "original"
    REGENERATE = "regenerate"
    BRANCH = "branch"
    CONTINUE = "continue"
    EDIT = "edit"


class InstructionKind(enum.StrEnum):
    """What led to a scene: nothing (the opening), a choice, a player's action, a director's note."""

    OPENING = "opening"
    CHOICE = "choice"
    ACTION = "action"
    DIRECTOR = "director"


class MemberRole(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class MemberStatus(enum.StrEnum):
    INVITED = "invited"
    JOINED = "joined"
    KICKED = "kicked"


class SummaryKind(enum.StrEnum):
    CHAPTER = "chapter"  # the closed chapter that ends at this variant
    ROLLING = "rolling"  # the current chapter's older scenes, up to this variant


class JobState(enum.StrEnum):
    DUE = "due"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # gave up after its attempts; a scene that needs it runs it again


class LoreStatus(enum.StrEnum):
    ACTIVE = "active"
    PROPOSED = "proposed"  # suggested by the storyteller at a chapter's end; not used yet


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _fk(target: str, ondelete: str = "CASCADE", **kw: Any) -> ForeignKey:
    return ForeignKey(target, ondelete=ondelete, **kw)


class User(Base):
    """A person: a Discord account (or the local console player, who has no Discord id)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    discord_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    settings: Mapped[UserSettings | None] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class UserSettings(Base):
    """Per-user defaults: generation preferences and narration (voice, speed, auto-narrate)."""

    __tablename__ = "user_settings"
    __table_args__ = (
        CheckConstraint(_in("scene_length", SceneLength), name="scene_length"),
        CheckConstraint("tts_speed >= 0.5 AND tts_speed <= 2.0", name="tts_speed"),
    )

    user_id: Mapped[int] = mapped_column(_fk("users.id"), primary_key=True)
    scene_length: Mapped[str] = mapped_column(String(10), default=SceneLength.MEDIUM.value)
    tts_voice: Mapped[str | None] = mapped_column(String(200))
    tts_speed: Mapped[float] = mapped_column(Float, default=1.0)
    auto_narrate: Mapped[bool] = mapped_column(Boolean, default=False)
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="settings")


class Story(Base):
    __tablename__ = "stories"
    __table_args__ = (
        CheckConstraint(_in("mode", StoryMode), name="mode"),
        CheckConstraint(_in("status", StoryStatus), name="status"),
        CheckConstraint(_in("scene_length", SceneLength), name="scene_length"),
        Index("ix_stories_owner_id", "owner_id"),
        Index("ix_stories_guild_id", "guild_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(_fk("users.id"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    mode: Mapped[str] = mapped_column(String(10), default=StoryMode.SOLO.value)
    status: Mapped[str] = mapped_column(String(10), default=StoryStatus.ACTIVE.value)
    title: Mapped[str] = mapped_column(String(200))
    genre: Mapped[str] = mapped_column(String(100), default="")
    tone: Mapped[str] = mapped_column(String(100), default="")
    world_setting: Mapped[str] = mapped_column(Text, default="")
    premise: Mapped[str] = mapped_column(Text, default="")
    point_of_view: Mapped[str] = mapped_column(String(20), default="second")
    scene_length: Mapped[str] = mapped_column(String(10), default=SceneLength.MEDIUM.value)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Played in a private thread: only its members see it (core/access.py).
    private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The author's note: steers every scene, placed near the end of the prompt.
    author_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The last scene of the active path; recomputed whenever the path changes.
    tip_scene_id: Mapped[int | None] = mapped_column(
        _fk("scenes.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StoryMember(Base):
    """Who plays a story: the owner, invited, joined (Join button or first vote), kicked."""

    __tablename__ = "story_members"
    __table_args__ = (
        CheckConstraint(_in("role", MemberRole), name="role"),
        CheckConstraint(_in("status", MemberStatus), name="status"),
        Index("ix_story_members_user_id", "user_id"),
    )

    story_id: Mapped[int] = mapped_column(_fk("stories.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(10), default=MemberRole.MEMBER.value)
    status: Mapped[str] = mapped_column(String(10), default=MemberStatus.JOINED.value)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    # /story notify: a DM when a vote opens or the next scene is up (off unless asked).
    notify: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Chapter(Base):
    """Consecutive scenes of a path.

    Chapters form a tree like the scenes: a chapter opens after a variant (the last one
    of the chapter before, ``opened_after_variant_id``; none for the first chapter) and
    its ``parent_chapter_id`` is that previous chapter, so the chapters of the current path
    are found by walking up from the tip scene's chapter.
    """

    __tablename__ = "chapters"
    __table_args__ = (
        Index("ix_chapters_story_id", "story_id"),
        Index("ix_chapters_parent_chapter_id", "parent_chapter_id"),
        # One first chapter per story (NULLs never collide in a plain unique index).
        Index(
            "uq_chapters_first_per_story",
            "story_id",
            unique=True,
            sqlite_where=text("parent_chapter_id IS NULL"),
            postgresql_where=text("parent_chapter_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    parent_chapter_id: Mapped[int | None] = mapped_column(_fk("chapters.id"))
    opened_after_variant_id: Mapped[int | None] = mapped_column(
        _fk("scene_variants.id", use_alter=True), unique=True
    )
    start_scene_id: Mapped[int | None] = mapped_column(
        _fk("scenes.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Scene(Base):
    __tablename__ = "scenes"
    __table_args__ = (
        Index("ix_scenes_story_id", "story_id"),
        Index("ix_scenes_chapter_id", "chapter_id"),
        # One root scene per story.
        Index(
            "uq_scenes_root_per_story",
            "story_id",
            unique=True,
            sqlite_where=text("parent_variant_id IS NULL"),
            postgresql_where=text("parent_variant_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    chapter_id: Mapped[int] = mapped_column(_fk("chapters.id"))
    # One child scene per variant: the variant's continuation.
    parent_variant_id: Mapped[int | None] = mapped_column(
        _fk("scene_variants.id", use_alter=True), unique=True
    )
    depth: Mapped[int] = mapped_column(Integer)  # 0 for the root scene
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    variants: Mapped[list[SceneVariant]] = relationship(
        back_populates="scene",
        foreign_keys="SceneVariant.scene_id",
        order_by="SceneVariant.number",
        passive_deletes=True,
    )


class SceneVariant(Base):
    """One version of a scene. Nothing is overwritten: every change is a new variant."""

    __tablename__ = "scene_variants"
    __table_args__ = (
        CheckConstraint(_in("kind", VariantKind), name="kind"),
        CheckConstraint(_in("instruction_kind", InstructionKind), name="instruction_kind"),
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating"),
        UniqueConstraint("scene_id", "number"),
        # One active variant per scene.
        Index(
            "uq_scene_variants_active_per_scene",
            "scene_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scene_id: Mapped[int] = mapped_column(_fk("scenes.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the scene
    kind: Mapped[str] = mapped_column(String(12))
    instruction_kind: Mapped[str] = mapped_column(String(10), default=InstructionKind.OPENING)
    instruction: Mapped[str] = mapped_column(Text, default="")
    # The variant this one was made from (regenerate/continue/edit/branch).
    source_variant_id: Mapped[int | None] = mapped_column(
        _fk("scene_variants.id", ondelete="SET NULL")
    )
    content: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    favourite: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(_fk("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    scene: Mapped[Scene] = relationship(back_populates="variants", foreign_keys=[scene_id])
    choices: Mapped[list[SceneChoice]] = relationship(
        order_by="SceneChoice.position", passive_deletes=True
    )


class SceneChoice(Base):
    __tablename__ = "scene_choices"
    __table_args__ = (
        UniqueConstraint("variant_id", "position"),
        CheckConstraint("position >= 1 AND position <= 6", name="position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(_fk("scene_variants.id"))
    position: Mapped[int] = mapped_column(Integer)  # 1-based, as shown to players
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(80))  # shortened for a button


class Summary(Base):
    """A chapter summary or a rolling summary, stored on the variant where it was made.

    It summarises the path up to that variant, so switching an earlier variant brings
    back that branch's summaries (docs/architecture.md, "The story tree").
    """

    __tablename__ = "summaries"
    __table_args__ = (
        UniqueConstraint("variant_id", "kind"),
        CheckConstraint(_in("kind", SummaryKind), name="kind"),
        Index("ix_summaries_chapter_id", "chapter_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(_fk("scene_variants.id"))
    chapter_id: Mapped[int] = mapped_column(_fk("chapters.id"))
    kind: Mapped[str] = mapped_column(String(10))
    content: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    # Rolling summaries cover the chapter's scenes with depth <= this one.
    through_depth: Mapped[int] = mapped_column(Integer)
    edited_by_id: Mapped[int | None] = mapped_column(_fk("users.id", ondelete="SET NULL"))
    # The text before the last edit, for Undo (None: nothing to undo).
    previous_content: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SummaryJob(Base):
    """A summary that is due: the rolling summary of a chapter's older scenes, or a closed
    chapter's summary (core/summaries.py). Claimed like a vote (``UPDATE … RETURNING``),
    so a restart or a second process picks it up and it runs once."""

    __tablename__ = "summary_jobs"
    __table_args__ = (
        UniqueConstraint("variant_id", "kind"),
        CheckConstraint(_in("kind", SummaryKind), name="kind"),
        CheckConstraint(_in("state", JobState), name="state"),
        Index("ix_summary_jobs_state", "state", "due_at"),
        Index("ix_summary_jobs_story_id", "story_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    kind: Mapped[str] = mapped_column(String(10))
    # Rolling: the tip when it came due (summarise what the next scene's prompt cannot
    # hold). Chapter: the chapter's last variant (its summary is stored there).
    variant_id: Mapped[int] = mapped_column(_fk("scene_variants.id"))
    chapter_id: Mapped[int] = mapped_column(_fk("chapters.id"))
    state: Mapped[str] = mapped_column(String(10), default=JobState.DUE.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]  # a crashed holder's claim lapses then
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoreEntry(Base):
    """World info: a place, faction, item, rule or secret that goes into the prompt when
    one of its keywords comes up (or always, when pinned); core/lore.py."""

    __tablename__ = "lore_entries"
    __table_args__ = (
        UniqueConstraint("story_id", "name"),
        CheckConstraint(_in("status", LoreStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    name: Mapped[str] = mapped_column(String(100))
    keywords: Mapped[str] = mapped_column(Text, default="")  # comma-separated
    content: Mapped[str] = mapped_column(Text, default="")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default=LoreStatus.ACTIVE.value)
    # Before the last edit, for Undo (None: nothing to undo).
    previous_keywords: Mapped[str | None] = mapped_column(Text)
    previous_content: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(_fk("users.id", ondelete="SET NULL"))
    updated_by_id: Mapped[int | None] = mapped_column(_fk("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Character(Base):
    __tablename__ = "characters"
    __table_args__ = (UniqueConstraint("story_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    personality: Mapped[str] = mapped_column(Text, default="")
    voice: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ballot(Base):
    """A group vote on a variant's choices. Closing it is a database claim on closed_at."""

    __tablename__ = "ballots"
    __table_args__ = (
        Index("ix_ballots_story_id", "story_id"),
        Index("ix_ballots_deadline_open", "deadline"),
        # One open ballot per variant.
        Index(
            "uq_ballots_open_per_variant",
            "variant_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    variant_id: Mapped[int] = mapped_column(_fk("scene_variants.id"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline: Mapped[datetime]
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(20))  # deadline|everyone|host|void
    # Who closed it (Close vote, or the vote that made everyone have voted): the winner's
    # scene counts against them. None: the deadline, a kick, or a moderator Kahani never
    # stored closed it, and the scene counts against the host.
    closed_by_user_id: Mapped[int | None] = mapped_column(_fk("users.id", ondelete="SET NULL"))
    winner_position: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)  # how it was decided, for the message
    # The winner's generation handed off: claimed (UPDATE … WHERE taken_at IS NULL …
    # RETURNING) by the closer at once, or by a recovery check when the closer died.
    taken_at: Mapped[datetime | None]
    takes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # hand-offs so far


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (CheckConstraint("position >= 1 AND position <= 6", name="position"),)

    ballot_id: Mapped[int] = mapped_column(_fk("ballots.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    action_text: Mapped[str | None] = mapped_column(Text)  # a proposed own action
    cast_at: Mapped[datetime] = mapped_column(default=utcnow)


class VariantMessage(Base):
    """The Discord messages that show a variant, in order; components sit on the last."""

    __tablename__ = "variant_messages"
    __table_args__ = (UniqueConstraint("variant_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(_fk("scene_variants.id"))
    position: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger, unique=True)


class GenerationLease(Base):
    """At most one generation per story across processes; expires if its holder dies."""

    __tablename__ = "generation_leases"

    story_id: Mapped[int] = mapped_column(_fk("stories.id"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(40), default="")
    # Opaque to the engine: e.g. the Discord message being streamed into, saved before
    # streaming so a restarted bot can mark it interrupted and offer Retry.
    frontend_ref: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class LLMQueueEntry(Base):
    """One generation waiting for, or holding, one of the LLM server's slots
    (LLM_MAX_CONCURRENCY across all processes; core/llmqueue.py). Its holder's process
    refreshes ``expires_at``; a crashed process's entries expire and free their slot."""

    __tablename__ = "llm_queue"
    __table_args__ = (
        CheckConstraint("state IN ('waiting', 'running')", name="state"),
        Index("ix_llm_queue_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # the process that waits
    story_id: Mapped[int] = mapped_column(_fk("stories.id"))
    # Who takes turns: a server (its stories share one turn) or a DM player.
    lane: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(10), default="waiting")
    enqueued_at: Mapped[datetime]
    granted_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class LLMLane(Base):
    """When a lane was last given a slot: the queue serves lanes round robin."""

    __tablename__ = "llm_lanes"

    lane: Mapped[str] = mapped_column(String(40), primary_key=True)
    served_at: Mapped[datetime]


class GenerationStart(Base):
    """A generation asked for, by whom and where: the per-user and per-server limits
    (GENERATIONS_PER_USER_PER_MINUTE, …_PER_GUILD_…) count these; old rows are pruned."""

    __tablename__ = "generation_starts"
    __table_args__ = (
        Index("ix_generation_starts_user", "user_id", "started_at"),
        Index("ix_generation_starts_guild", "guild_id", "started_at"),
        Index("ix_generation_starts_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime]


class RateEvent(Base):
    """Something a user did that has a cooldown (e.g. an export): core/cooldowns.py
    counts these, across processes; old rows are pruned."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_kind_user", "kind", "user_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int] = mapped_column(_fk("users.id"))
    at: Mapped[datetime]


class GuildSettings(Base):
    """A server's own settings (/server): content notes every story there follows, and
    whether /story new starts a solo or a group story when the player does not say."""

    __tablename__ = "guild_settings"
    __table_args__ = (CheckConstraint(_in("default_mode", StoryMode), name="default_mode"),)

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    content_notes: Mapped[str] = mapped_column(Text, default="")
    default_mode: Mapped[str] = mapped_column(String(10), default=StoryMode.GROUP.value)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AppState(Base):
    """Small key/value facts the bot keeps between starts (e.g. the synced commands' hash)."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
