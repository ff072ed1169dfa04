"""ballots.closed_by_user_id: who closed a vote, so its winner's scene counts against them

The winning scene of a vote counts against the generation limit of whoever closed it
(Close vote, or the vote that made everyone have voted), else the host. It is stored
with the close claim, so a restart or another process that recovers the winner charges
the same person. Ballots closed before this revision have no closer: the host.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_by_user_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_ballots_closed_by_user_id_users'), 'users',
                                    ['closed_by_user_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ballots_closed_by_user_id_users'), type_='foreignkey')
        batch_op.drop_column('closed_by_user_id')
