"""Where a variant is shown: the Discord messages (channel id, message id) that carry
it, so a variant switch edits them in place."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import SceneVariant, VariantMessage


async def set_variant_messages(
    session: AsyncSession, variant_id: int, messages: Sequence[tuple[int, int]]
) -> None:
    """Record the (channel id, message id) pairs that show a variant, in order; the
    components sit on the last one. Replaces what was recorded before."""
    await session.execute(delete(VariantMessage).where(VariantMessage.variant_id == variant_id))
    ids = [message_id for _, message_id in messages]
    if ids:  # a message shows one variant at a time (variant switching edits in place)
        await session.execute(delete(VariantMessage).where(VariantMessage.message_id.in_(ids)))
    session.add_all(
        VariantMessage(variant_id=variant_id, position=n, channel_id=channel_id, message_id=message_id)
        for n, (channel_id, message_id) in enumerate(messages)
    )
    await session.flush()


async def get_variant_messages(session: AsyncSession, variant_id: int) -> list[tuple[int, int]]:
    rows = await session.execute(
        select(VariantMessage.channel_id, VariantMessage.message_id)
        .where(VariantMessage.variant_id == variant_id)
        .order_by(VariantMessage.position)
    )
    return [(channel_id, message_id) for channel_id, message_id in rows]


async def scene_messages(session: AsyncSession, scene_id: int) -> list[tuple[int, int]]:
    """The messages showing any variant of a scene (a variant switch edits them in place)."""
    rows = await session.execute(
        select(VariantMessage.channel_id, VariantMessage.message_id)
        .join(SceneVariant, SceneVariant.id == VariantMessage.variant_id)
        .where(SceneVariant.scene_id == scene_id)
        .order_by(VariantMessage.position)
    )
    return [(channel_id, message_id) for channel_id, message_id in rows]
