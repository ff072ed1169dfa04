"""the LLM queue (llm_queue, llm_lanes) and generation limits (generation_starts)

``llm_queue`` holds the generations waiting for or holding one of the LLM server's
LLM_MAX_CONCURRENCY slots across all processes; ``llm_lanes`` remembers when each server
(or DM player) was last served, for round robin; ``generation_starts`` is what the
per-user and per-server limits count.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('generation_starts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=True),
    sa.Column('guild_id', sa.BigInteger(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generation_starts'))
    )
    with op.batch_alter_table('generation_starts', schema=None) as batch_op:
        batch_op.create_index('ix_generation_starts_guild', ['guild_id', 'started_at'], unique=False)
        batch_op.create_index('ix_generation_starts_started_at', ['started_at'], unique=False)
        batch_op.create_index('ix_generation_starts_user', ['user_id', 'started_at'], unique=False)

    op.create_table('llm_lanes',
    sa.Column('lane', sa.String(length=40), nullable=False),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('lane', name=op.f('pk_llm_lanes'))
    )
    op.create_table('llm_queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('lane', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('waiting', 'running')", name=op.f('ck_llm_queue_state')),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], name=op.f('fk_llm_queue_story_id_stories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_queue'))
    )
    with op.batch_alter_table('llm_queue', schema=None) as batch_op:
        batch_op.create_index('ix_llm_queue_state', ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('llm_queue', schema=None) as batch_op:
        batch_op.drop_index('ix_llm_queue_state')

    op.drop_table('llm_queue')
    op.drop_table('llm_lanes')
    with op.batch_alter_table('generation_starts', schema=None) as batch_op:
        batch_op.drop_index('ix_generation_starts_user')
        batch_op.drop_index('ix_generation_starts_started_at')
        batch_op.drop_index('ix_generation_starts_guild')

    op.drop_table('generation_starts')
