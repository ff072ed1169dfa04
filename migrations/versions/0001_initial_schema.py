"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Foreign keys that close a cycle (stories -> scenes -> scene_variants -> scenes,
# chapters <-> scenes): added once every table exists. SQLite cannot ALTER a
# constraint in, so batch mode copies those tables (they are empty here).
CYCLIC_FOREIGN_KEYS = [
    # (table, column, referred table, ON DELETE)
    ("stories", "tip_scene_id", "scenes", "SET NULL"),
    ("chapters", "opened_after_variant_id", "scene_variants", "CASCADE"),
    ("chapters", "start_scene_id", "scenes", "SET NULL"),
    ("scenes", "parent_variant_id", "scene_variants", "CASCADE"),
]


def _fk_name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    op.create_table('app_state',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_app_state'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('discord_id', sa.BigInteger(), nullable=True),
    sa.Column('display_name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('discord_id', name=op.f('uq_users_discord_id'))
    )
    op.create_table('stories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=True),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('thread_id', sa.BigInteger(), nullable=True),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('genre', sa.String(length=100), nullable=False),
    sa.Column('tone', sa.String(length=100), nullable=False),
    sa.Column('world_setting', sa.Text(), nullable=False),
    sa.Column('premise', sa.Text(), nullable=False),
    sa.Column('point_of_view', sa.String(length=20), nullable=False),
    sa.Column('scene_length', sa.String(length=10), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('tip_scene_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('solo', 'group')", name=op.f('ck_stories_mode')),
    sa.CheckConstraint("scene_length IN ('short', 'medium', 'long')", name=op.f('ck_stories_scene_length')),
    sa.CheckConstraint("status IN ('active', 'ended')", name=op.f('ck_stories_status')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_stories_owner_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stories')),
    sa.UniqueConstraint('thread_id', name=op.f('uq_stories_thread_id'))
    )
    op.create_index('ix_stories_guild_id', 'stories', ['guild_id'], unique=False)
    op.create_index('ix_stories_owner_id', 'stories', ['owner_id'], unique=False)
    op.create_table('user_settings',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('scene_length', sa.String(length=10), nullable=False),
    sa.Column('tts_voice', sa.String(length=200), nullable=True),
    sa.Column('tts_speed', sa.Float(), nullable=False),
    sa.Column('auto_narrate', sa.Boolean(), nullable=False),
    sa.Column('preferences', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("scene_length IN ('short', 'medium', 'long')", name=op.f('ck_user_settings_scene_length')),
    sa.CheckConstraint('tts_speed >= 0.5 AND tts_speed <= 2.0', name=op.f('ck_user_settings_tts_speed')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_settings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_user_settings'))
    )
    op.create_table('chapters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('parent_chapter_id', sa.Integer(), nullable=True),
    sa.Column('opened_after_variant_id', sa.Integer(), nullable=True),
    sa.Column('start_scene_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_chapter_id'], ['chapters.id'], name=op.f('fk_chapters_parent_chapter_id_chapters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_chapters_story_id_stories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chapters')),
    sa.UniqueConstraint('opened_after_variant_id', name=op.f('uq_chapters_opened_after_variant_id'))
    )
    op.create_index('ix_chapters_parent_chapter_id', 'chapters', ['parent_chapter_id'], unique=False)
    op.create_index('ix_chapters_story_id', 'chapters', ['story_id'], unique=False)
    op.create_index('uq_chapters_first_per_story', 'chapters', ['story_id'], unique=True, sqlite_where=sa.text('parent_chapter_id IS NULL'), postgresql_where=sa.text('parent_chapter_id IS NULL'))
    op.create_table('characters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('personality', sa.Text(), nullable=False),
    sa.Column('voice', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_characters_story_id_stories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_characters')),
    sa.UniqueConstraint('story_id', 'name', name=op.f('uq_characters_story_id_name'))
    )
    op.create_table('generation_leases',
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.String(length=40), nullable=False),
    sa.Column('frontend_ref', sa.String(length=200), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_generation_leases_story_id_stories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('story_id', name=op.f('pk_generation_leases'))
    )
    op.create_table('story_members',
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'member')", name=op.f('ck_story_members_role')),
    sa.CheckConstraint("status IN ('invited', 'joined', 'kicked')", name=op.f('ck_story_members_status')),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_story_members_story_id_stories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_story_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('story_id', 'user_id', name=op.f('pk_story_members'))
    )
    op.create_index('ix_story_members_user_id', 'story_members', ['user_id'], unique=False)
    op.create_table('scenes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('chapter_id', sa.Integer(), nullable=False),
    sa.Column('parent_variant_id', sa.Integer(), nullable=True),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chapter_id'], ['chapters.id'], name=op.f('fk_scenes_chapter_id_chapters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_scenes_story_id_stories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scenes')),
    sa.UniqueConstraint('parent_variant_id', name=op.f('uq_scenes_parent_variant_id'))
    )
    op.create_index('ix_scenes_chapter_id', 'scenes', ['chapter_id'], unique=False)
    op.create_index('ix_scenes_story_id', 'scenes', ['story_id'], unique=False)
    op.create_index('uq_scenes_root_per_story', 'scenes', ['story_id'], unique=True, sqlite_where=sa.text('parent_variant_id IS NULL'), postgresql_where=sa.text('parent_variant_id IS NULL'))
    op.create_table('scene_variants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scene_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('instruction_kind', sa.String(length=10), nullable=False),
    sa.Column('instruction', sa.Text(), nullable=False),
    sa.Column('source_variant_id', sa.Integer(), nullable=True),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('token_count', sa.Integer(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('rating', sa.SmallInteger(), nullable=True),
    sa.Column('favourite', sa.Boolean(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("instruction_kind IN ('opening', 'choice', 'action', 'director')", name=op.f('ck_scene_variants_instruction_kind')),
    sa.CheckConstraint("kind IN ('original', 'regenerate', 'branch', 'continue', 'edit')", name=op.f('ck_scene_variants_kind')),
    sa.CheckConstraint('rating IS NULL OR (rating >= 1 AND rating <= 5)', name=op.f('ck_scene_variants_rating')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_scene_variants_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['scene_id'], ['scenes.id'], name=op.f('fk_scene_variants_scene_id_scenes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_variant_id'], ['scene_variants.id'], name=op.f('fk_scene_variants_source_variant_id_scene_variants'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scene_variants')),
    sa.UniqueConstraint('scene_id', 'number', name=op.f('uq_scene_variants_scene_id_number'))
    )
    op.create_index('uq_scene_variants_active_per_scene', 'scene_variants', ['scene_id'], unique=True, sqlite_where=sa.text('is_active'), postgresql_where=sa.text('is_active'))
    op.create_table('ballots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('extended', sa.Boolean(), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=20), nullable=True),
    sa.Column('winner_position', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_ballots_story_id_stories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['variant_id'], ['scene_variants.id'], name=op.f('fk_ballots_variant_id_scene_variants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ballots'))
    )
    op.create_index('ix_ballots_deadline_open', 'ballots', ['deadline'], unique=False)
    op.create_index('ix_ballots_story_id', 'ballots', ['story_id'], unique=False)
    op.create_index('uq_ballots_open_per_variant', 'ballots', ['variant_id'], unique=True, sqlite_where=sa.text('closed_at IS NULL'), postgresql_where=sa.text('closed_at IS NULL'))
    op.create_table('scene_choices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=False),
    sa.CheckConstraint('position >= 1 AND position <= 6', name=op.f('ck_scene_choices_position')),
    sa.ForeignKeyConstraint(['variant_id'], ['scene_variants.id'], name=op.f('fk_scene_choices_variant_id_scene_variants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scene_choices')),
    sa.UniqueConstraint('variant_id', 'position', name=op.f('uq_scene_choices_variant_id_position'))
    )
    op.create_table('summaries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('chapter_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('token_count', sa.Integer(), nullable=False),
    sa.Column('through_depth', sa.Integer(), nullable=False),
    sa.Column('edited_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('chapter', 'rolling')", name=op.f('ck_summaries_kind')),
    sa.ForeignKeyConstraint(['chapter_id'], ['chapters.id'], name=op.f('fk_summaries_chapter_id_chapters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['edited_by_id'], ['users.id'], name=op.f('fk_summaries_edited_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['variant_id'], ['scene_variants.id'], name=op.f('fk_summaries_variant_id_scene_variants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_summaries')),
    sa.UniqueConstraint('variant_id', 'kind', name=op.f('uq_summaries_variant_id_kind'))
    )
    op.create_index('ix_summaries_chapter_id', 'summaries', ['chapter_id'], unique=False)
    op.create_table('variant_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['variant_id'], ['scene_variants.id'], name=op.f('fk_variant_messages_variant_id_scene_variants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variant_messages')),
    sa.UniqueConstraint('message_id', name=op.f('uq_variant_messages_message_id')),
    sa.UniqueConstraint('variant_id', 'position', name=op.f('uq_variant_messages_variant_id_position'))
    )
    op.create_table('votes',
    sa.Column('ballot_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('action_text', sa.Text(), nullable=True),
    sa.Column('cast_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('position >= 1 AND position <= 6', name=op.f('ck_votes_position')),
    sa.ForeignKeyConstraint(['ballot_id'], ['ballots.id'], name=op.f('fk_votes_ballot_id_ballots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_votes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ballot_id', 'user_id', name=op.f('pk_votes'))
    )

    for table, column, referred, ondelete in CYCLIC_FOREIGN_KEYS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_foreign_key(
                _fk_name(table, column, referred), referred, [column], ["id"], ondelete=ondelete
            )


def downgrade() -> None:
    for table, column, referred, _ in reversed(CYCLIC_FOREIGN_KEYS):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(_fk_name(table, column, referred), type_="foreignkey")
    op.drop_table('votes')
    op.drop_table('variant_messages')
    op.drop_index('ix_summaries_chapter_id', table_name='summaries')
    op.drop_table('summaries')
    op.drop_table('scene_choices')
    op.drop_index('uq_ballots_open_per_variant', table_name='ballots')
    op.drop_index('ix_ballots_story_id', table_name='ballots')
    op.drop_index('ix_ballots_deadline_open', table_name='ballots')
    op.drop_table('ballots')
    op.drop_index('uq_scene_variants_active_per_scene', table_name='scene_variants')
    op.drop_table('scene_variants')
    op.drop_index('uq_scenes_root_per_story', table_name='scenes')
    op.drop_index('ix_scenes_story_id', table_name='scenes')
    op.drop_index('ix_scenes_chapter_id', table_name='scenes')
    op.drop_table('scenes')
    op.drop_index('ix_story_members_user_id', table_name='story_members')
    op.drop_table('story_members')
    op.drop_table('generation_leases')
    op.drop_table('characters')
    op.drop_index('uq_chapters_first_per_story', table_name='chapters')
    op.drop_index('ix_chapters_story_id', table_name='chapters')
    op.drop_index('ix_chapters_parent_chapter_id', table_name='chapters')
    op.drop_table('chapters')
    op.drop_table('user_settings')
    op.drop_index('ix_stories_owner_id', table_name='stories')
    op.drop_index('ix_stories_guild_id', table_name='stories')
    op.drop_table('stories')
    op.drop_table('users')
    op.drop_table('app_state')
