"""The story repository: reads and writes of the story tree, chapters, characters,
members, user settings and generation leases, one module per aggregate:

- ``users``: users and their settings
- ``stories``: creating, finding and deleting stories
- ``members``: a story's members and a user's membership statuses
- ``tree``: scenes, variants, choices and the path through them (``ChoiceSpec``,
  ``PathScene``, ``active_path``, ``ancestry``, ``tip``)
- ``chapters``: chapters and summaries (``PathChapter``)
- ``characters``: a story's characters
- ``leases``: generation leases (``LEASE_TTL``, ``insert_for``)
- ``messages``: the Discord messages that show a variant
- ``lore``: a story's lore entries (world info), with Undo and proposals

This package re-exports every public name, so callers keep writing
``from core import repository as repo`` and ``repo.get_story(...)``.

Every function takes the caller's ``AsyncSession`` (one unit of work, see
``core.db.Database.transaction``) and never commits: the caller decides when a unit
of work ends. Reading the active path walks up from the story's tip in one recursive
query, so its cost does not grow with the story (docs/architecture.md, "The story tree").
"""

from __future__ import annotations

# VariantKind is a model enum; it stays reachable as repo.VariantKind, as it was when
# the repository was one module (callers pass it to add_variant).
from core.models import VariantKind
from core.repository.chapters import (
    PathChapter,
    chapter_chain,
    current_chapter_id,
    open_chapter,
    path_chapters,
    rolling_summary,
    set_summary,
)
from core.repository.characters import (
    add_character,
    character_name_taken,
    edit_character,
    get_character,
    list_characters,
    remove_character,
    update_character,
)
from core.repository.leases import (
    LEASE_TTL,
    acquire_lease,
    get_lease,
    heartbeat_lease,
    insert_for,
    reclaim_expired_leases,
    reclaim_leases,
    release_lease,
)
from core.repository.lore import (
    accept_lore,
    add_lore,
    dismiss_lore,
    edit_lore,
    get_lore,
    get_lore_by_id,
    list_lore,
    lore_names,
    propose_lore,
    remove_lore,
    undo_lore,
)
from core.repository.members import get_member, list_members, member_statuses, set_member
from core.repository.messages import get_variant_messages, scene_messages, set_variant_messages
from core.repository.stories import (
    create_story,
    delete_story,
    get_story,
    list_stories,
    stories_for_user,
    story_for_thread,
)
from core.repository.tree import (
    ChoiceSpec,
    PathScene,
    active_path,
    add_scene,
    add_variant,
    ancestry,
    get_choices,
    get_variant,
    list_variants,
    rate_variant,
    replace_choices,
    rewind,
    set_active_variant,
    story_outline,
    tip,
    variant_story_id,
)
from core.repository.users import find_user, get_or_create_user, get_user_settings, update_user_settings

__all__ = [
    # users
    "find_user",
    "get_or_create_user",
    "get_user_settings",
    "update_user_settings",
    # stories
    "create_story",
    "get_story",
    "list_stories",
    "story_for_thread",
    "stories_for_user",
    "delete_story",
    # members
    "member_statuses",
    "get_member",
    "set_member",
    "list_members",
    # tree
    "ChoiceSpec",
    "PathScene",
    "VariantKind",
    "add_scene",
    "get_variant",
    "variant_story_id",
    "list_variants",
    "get_choices",
    "replace_choices",
    "rewind",
    "story_outline",
    "add_variant",
    "set_active_variant",
    "active_path",
    "ancestry",
    "tip",
    "rate_variant",
    # chapters
    "open_chapter",
    "set_summary",
    "PathChapter",
    "path_chapters",
    "chapter_chain",
    "current_chapter_id",
    "rolling_summary",
    # characters
    "add_character",
    "list_characters",
    "get_character",
    "update_character",
    "remove_character",
    "character_name_taken",
    "edit_character",
    # leases
    "LEASE_TTL",
    "insert_for",
    "acquire_lease",
    "heartbeat_lease",
    "release_lease",
    "get_lease",
    "reclaim_leases",
    "reclaim_expired_leases",
    # messages
    "set_variant_messages",
    "get_variant_messages",
    "scene_messages",
    # lore
    "add_lore",
    "list_lore",
    "get_lore",
    "get_lore_by_id",
    "edit_lore",
    "undo_lore",
    "remove_lore",
    "accept_lore",
    "dismiss_lore",
    "lore_names",
    "propose_lore",
]
