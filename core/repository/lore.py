"""A story's lore entries (world info, core/lore.py): adding, listing, finding (by name,
case-insensitively, or by id), editing with one step of Undo, removing, and accepting
or dismissing the entries the storyteller proposes.

Names are compared in Python (``str.casefold``), not with SQL ``lower()``: SQLite's
folds ASCII letters only, so "Ärger" and "ärger" would be one name on PostgreSQL and
two on SQLite. A story has at most a few hundred entries, so reading its names is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core.errors import Conflict, NotFound
from core.lore import (
    MAX_KEYWORDS,
    MAX_NAME_LENGTH,
    UPDATE_SUFFIX,
    Proposal,
    check_name,
    check_text,
    format_keywords,
    parse_keywords,
)
from core.models import LoreEntry, LoreStatus

MAX_ENTRIES = 500  # per story, proposals included


async def _names(session: AsyncSession, story_id: int) -> list[tuple[int, str]]:
    rows = await session.execute(select(LoreEntry.id, LoreEntry.name).where(LoreEntry.story_id == story_id))
    return [(row.id, row.name) for row in rows]


async def _id_named(session: AsyncSession, story_id: int, name: str, *, except_id: int | None = None) -> int | None:
    folded = " ".join(name.split()).casefold()
    for lore_id, other in await _names(session, story_id):
        if other.casefold() == folded and lore_id != except_id:
            return lore_id
    return None


async def _saved(session: AsyncSession, entry: LoreEntry, user_id: int | None) -> LoreEntry:
    if user_id is not None:
        entry.updated_by_id = user_id
    await session.flush()
    return entry


async def _proposal(session: AsyncSession, story_id: int, lore_id: int, refusal: str) -> LoreEntry:
    """A proposed entry by id; Conflict with ``refusal`` (naming it) for an active one."""
    entry = await get_lore_by_id(session, story_id, lore_id)
    if entry.status != LoreStatus.PROPOSED:
        raise Conflict(refusal.format(name=entry.name))
    return entry


async def add_lore(
    session: AsyncSession,
    story_id: int,
    name: str,
    *,
    keywords: str,
    content: str,
    pinned: bool = False,
    status: LoreStatus = LoreStatus.ACTIVE,
    user_id: int | None = None,
) -> LoreEntry:
    """Add an entry; InvalidLore past a limit, Conflict when the story already has an
    entry of that name (ignoring case, proposals included)."""
    name = check_name(name)
    stored_keywords = format_keywords(parse_keywords(keywords))
    content = check_text(content)
    names = await _names(session, story_id)
    if await _id_named(session, story_id, name) is not None:
        raise Conflict(msg.LORE_NAME_TAKEN.format(name=name))
    if len(names) >= MAX_ENTRIES:
        raise Conflict(msg.LORE_LIMIT.format(limit=MAX_ENTRIES))
    entry = LoreEntry(
        story_id=story_id,
        name=name,
        keywords=stored_keywords,
        content=content,
        pinned=pinned,
        status=status.value,
        created_by_id=user_id,
        updated_by_id=user_id,
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_lore(
    session: AsyncSession, story_id: int, *, status: LoreStatus | None = LoreStatus.ACTIVE
) -> Sequence[LoreEntry]:
    """The story's entries of this status (None: all), by name ignoring case."""
    query = select(LoreEntry).where(LoreEntry.story_id == story_id)
    if status is not None:
        query = query.where(LoreEntry.status == status.value)
    entries = (await session.scalars(query)).all()
    return sorted(entries, key=lambda entry: (entry.name.casefold(), entry.name))


async def get_lore_by_id(session: AsyncSession, story_id: int, lore_id: int) -> LoreEntry:
    """An entry of this story by id (whatever its status); NotFound when it is gone."""
    entry = await session.scalar(
        select(LoreEntry).where(LoreEntry.id == lore_id, LoreEntry.story_id == story_id)
    )
    if entry is None:
        raise NotFound(msg.LORE_GONE)
    return entry


async def get_lore(session: AsyncSession, story_id: int, name: str) -> LoreEntry:
    """An entry of this story by name, ignoring case (whatever its status)."""
    lore_id = await _id_named(session, story_id, name)
    if lore_id is None:
        raise NotFound(msg.LORE_NOT_FOUND.format(name=" ".join(name.split())))
    return await get_lore_by_id(session, story_id, lore_id)


async def edit_lore(
    session: AsyncSession,
    story_id: int,
    name: str,
    *,
    new_name: str | None = None,
    keywords: str | None = None,
    content: str | None = None,
    pinned: bool | None = None,
    user_id: int | None = None,
) -> LoreEntry:
    """Change an entry found by name; None leaves a field as it is. When its keywords or
    text change, the old pair is kept for :func:`undo_lore`."""
    new_name = None if new_name is None else check_name(new_name)
    new_keywords = None if keywords is None else format_keywords(parse_keywords(keywords))
    new_content = None if content is None else check_text(content)
    entry = await get_lore(session, story_id, name)
    if new_name is not None:
        if await _id_named(session, story_id, new_name, except_id=entry.id) is not None:
            raise Conflict(msg.LORE_NAME_TAKEN.format(name=new_name))
        entry.name = new_name
    new_keywords = entry.keywords if new_keywords is None else new_keywords
    new_content = entry.content if new_content is None else new_content
    if (new_keywords, new_content) != (entry.keywords, entry.content):
        entry.previous_keywords, entry.previous_content = entry.keywords, entry.content
        entry.keywords, entry.content = new_keywords, new_content
    if pinned is not None:
        entry.pinned = pinned
    return await _saved(session, entry, user_id)


async def undo_lore(session: AsyncSession, story_id: int, name: str, *, user_id: int | None = None) -> LoreEntry:
    """Bring back an entry's keywords and text from before its last edit. The current
    ones take their place, so undoing again redoes. Conflict when there is nothing to undo."""
    entry = await get_lore(session, story_id, name)
    if entry.previous_keywords is None and entry.previous_content is None:
        raise Conflict(msg.LORE_NOTHING_TO_UNDO.format(name=entry.name))
    previous_keywords = entry.keywords if entry.previous_keywords is None else entry.previous_keywords
    previous_content = entry.content if entry.previous_content is None else entry.previous_content
    entry.previous_keywords, entry.previous_content = entry.keywords, entry.content
    entry.keywords, entry.content = previous_keywords, previous_content
    return await _saved(session, entry, user_id)


async def remove_lore(session: AsyncSession, story_id: int, name: str) -> None:
    """Delete an entry found by name (active or proposed)."""
    entry = await get_lore(session, story_id, name)
    await session.delete(entry)
    await session.flush()


async def accept_lore(
    session: AsyncSession, story_id: int, lore_id: int, *, user_id: int | None = None
) -> LoreEntry:
    """Make a proposed entry part of the story's lore (by id: proposals are answered
    from a message's buttons). Conflict when it already is."""
    entry = await _proposal(session, story_id, lore_id, msg.LORE_ALREADY_ACTIVE)
    base_id = await _updated_entry(session, story_id, entry.name)
    if base_id is not None:  # a proposed change: it updates the entry (Undo brings it back)
        base = await get_lore_by_id(session, story_id, base_id)
        merged = {k.casefold(): k for k in reversed(parse_keywords(base.keywords) + parse_keywords(entry.keywords))}
        keywords = format_keywords(list(reversed(merged.values()))[:MAX_KEYWORDS])
        await session.delete(entry)
        await session.flush()
        return await edit_lore(session, story_id, base.name, keywords=keywords, content=entry.content,
                               user_id=user_id)
    entry.status = LoreStatus.ACTIVE.value
    return await _saved(session, entry, user_id)


async def _updated_entry(session: AsyncSession, story_id: int, name: str) -> int | None:
    """The active entry a proposed change (named "<entry> (update)") is for, if any."""
    if not name.endswith(UPDATE_SUFFIX):
        return None
    base_id = await _id_named(session, story_id, name[: -len(UPDATE_SUFFIX)])
    if base_id is None:
        return None
    base = await get_lore_by_id(session, story_id, base_id)
    return base_id if base.status == LoreStatus.ACTIVE.value else None


async def propose_lore(session: AsyncSession, story_id: int, proposals: Sequence[Proposal]) -> list[LoreEntry]:
    """Store the storyteller's proposals (status proposed: not in any prompt until a person
    accepts them). A proposal for an entry the story has becomes "<name> (update)"; one
    for a name already proposed replaces that proposal's text."""
    stored: list[LoreEntry] = []
    for proposal in proposals:
        name = proposal.name
        existing_id = await _id_named(session, story_id, name)
        if existing_id is not None:
            existing = await get_lore_by_id(session, story_id, existing_id)
            if existing.status == LoreStatus.ACTIVE.value:
                name = f"{existing.name[:MAX_NAME_LENGTH - len(UPDATE_SUFFIX)]}{UPDATE_SUFFIX}"
                existing_id = await _id_named(session, story_id, name)
        if existing_id is not None:
            pending = await get_lore_by_id(session, story_id, existing_id)
            if pending.status == LoreStatus.PROPOSED.value:
                pending.content, pending.keywords = proposal.text, format_keywords(proposal.keywords)
                stored.append(await _saved(session, pending, None))
            continue
        stored.append(await add_lore(session, story_id, name, keywords=format_keywords(proposal.keywords),
                                     content=proposal.text, status=LoreStatus.PROPOSED))
    return stored


async def dismiss_lore(session: AsyncSession, story_id: int, lore_id: int) -> None:
    """Delete a proposed entry. Conflict for an active one (that is :func:`remove_lore`)."""
    entry = await _proposal(session, story_id, lore_id, msg.LORE_NOT_PROPOSED)
    await session.delete(entry)
    await session.flush()


async def lore_names(
    session: AsyncSession,
    story_id: int,
    prefix: str,
    limit: int = 25,
    *,
    status: LoreStatus | None = None,
) -> list[str]:
    """Entry names for autocomplete, ignoring case: those that start with ``prefix``
    first, then those that contain it, each by name; at most ``limit``."""
    query = select(LoreEntry.name).where(LoreEntry.story_id == story_id)
    if status is not None:
        query = query.where(LoreEntry.status == status.value)
    names = sorted((await session.scalars(query)).all(), key=lambda name: (name.casefold(), name))
    typed = " ".join(prefix.split()).casefold()
    starting = [name for name in names if name.casefold().startswith(typed)]
    containing = [name for name in names if typed in name.casefold() and not name.casefold().startswith(typed)]
    return (starting + containing)[:limit]
