"""ballots: the winner's generation hand-off (taken_at, takes)

A closed ballot's winning scene is claimed for generation with
``UPDATE ballots SET taken_at … WHERE taken_at IS NULL … RETURNING``, so a process that
dies between closing a vote and starting its scene is recovered exactly once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('takes', sa.Integer(), server_default=sa.text('0'), nullable=False))
    # Ballots decided before this revision count as handed off, with no automatic retry
    # left (core.votes.MAX_TAKES = 2): an upgrade does not resume old stories on its own.
    op.execute("UPDATE ballots SET taken_at = closed_at, takes = 2 WHERE winner_position IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_column('takes')
        batch_op.drop_column('taken_at')
