"""story_members.notify and guild_settings: async tables and server settings (#19)

``story_members.notify`` is a player's opt-in (``/story notify``) to a DM when a vote
opens on a story they joined or its next scene is up; off for everyone until asked.
``guild_settings`` holds a server's own settings (``/server``): content notes that
every story there follows and ``/story info`` shows, and whether ``/story new`` starts
a solo or a group story there when the player does not say.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('story_members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table('guild_settings',
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('content_notes', sa.Text(), nullable=False),
    sa.Column('default_mode', sa.String(length=10), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("default_mode IN ('solo', 'group')", name=op.f('ck_guild_settings_default_mode')),
    sa.PrimaryKeyConstraint('guild_id', name=op.f('pk_guild_settings'))
    )


def downgrade() -> None:
    op.drop_table('guild_settings')
    with op.batch_alter_table('story_members', schema=None) as batch_op:
        batch_op.drop_column('notify')
