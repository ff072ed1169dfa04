"""summary jobs, lore entries, the author's note, summaries' previous text (Undo)

``rate_events``: what users did that has a cooldown (exports). ``summary_jobs``: a due rolling or chapter summary, claimed like a vote so a restart or a
second process runs it once (core/summaries.py). ``lore_entries``: a story's world info
(core/lore.py). ``stories.author_note``: a note to the storyteller placed near the end of
every prompt. ``summaries.previous_content``: the text before the last edit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lore_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('keywords', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('previous_keywords', sa.Text(), nullable=True),
    sa.Column('previous_content', sa.Text(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'proposed')", name=op.f('ck_lore_entries_status')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_lore_entries_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_lore_entries_story_id_stories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_lore_entries_updated_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lore_entries')),
    sa.UniqueConstraint('story_id', 'name', name=op.f('uq_lore_entries_story_id_name'))
    )
    op.create_table('summary_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('chapter_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('chapter', 'rolling')", name=op.f('ck_summary_jobs_kind')),
    sa.CheckConstraint("state IN ('due', 'running', 'done', 'failed')", name=op.f('ck_summary_jobs_state')),
    sa.ForeignKeyConstraint(['chapter_id'], ['chapters.id'], name=op.f('fk_summary_jobs_chapter_id_chapters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_summary_jobs_story_id_stories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['variant_id'], ['scene_variants.id'], name=op.f('fk_summary_jobs_variant_id_scene_variants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_summary_jobs')),
    sa.UniqueConstraint('variant_id', 'kind', name=op.f('uq_summary_jobs_variant_id_kind'))
    )
    with op.batch_alter_table('summary_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_summary_jobs_state', ['state', 'due_at'], unique=False)
        batch_op.create_index('ix_summary_jobs_story_id', ['story_id'], unique=False)

    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('author_note', sa.Text(), server_default='', nullable=False))

    op.create_table('rate_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_rate_events_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_events'))
    )
    with op.batch_alter_table('rate_events', schema=None) as batch_op:
        batch_op.create_index('ix_rate_events_kind_user', ['kind', 'user_id', 'at'], unique=False)

    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_content', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.drop_column('previous_content')

    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_column('author_note')

    with op.batch_alter_table('summary_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_summary_jobs_story_id')
        batch_op.drop_index('ix_summary_jobs_state')

    with op.batch_alter_table('rate_events', schema=None) as batch_op:
        batch_op.drop_index('ix_rate_events_kind_user')

    op.drop_table('rate_events')
    op.drop_table('summary_jobs')
    op.drop_table('lore_entries')
