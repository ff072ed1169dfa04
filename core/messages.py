"""User-facing strings of the story engine, in one place.

Front ends (Discord cogs, the console) show these to players as they are, so each is
a short sentence that says what happened and, where it helps, what to do. Details for
operators go to the log, never here. Placeholders use ``str.format`` names.
"""

from __future__ import annotations

# --- the language model server (core/llm.py) -------------------------------------------

LLM_UNREACHABLE = "The storyteller ({server} at {url}) is not reachable. Is it running?"
LLM_CONNECT_TIMEOUT = (
    "The storyteller ({server} at {url}) did not answer within {seconds:g} s. Please try again."
)
LLM_FIRST_TOKEN_TIMEOUT = (
    "The storyteller did not start writing within {seconds:g} s. Please try again."
)
LLM_IDLE_TIMEOUT = (
    "The storyteller stopped writing for more than {seconds:g} s. Please try again."
)
LLM_REQUEST_TIMEOUT = "The storyteller did not answer within {seconds:g} s. Please try again."
LLM_STREAM_CUT = "The connection to the storyteller was lost mid-scene. Please try again."
LLM_EMPTY_REPLY = "The storyteller sent back an empty reply. Please try again."
LLM_ONLY_REASONING = (
    "The storyteller spent its whole reply thinking and wrote no scene. "
    "Please try again, or choose a longer scene length."
)
LLM_BAD_STREAM = "The storyteller sent a reply Kahani could not read. Please try again."
LLM_CONTEXT_OVERFLOW = (
    "The story no longer fits in the model's context window. "
    "Start a new chapter, or load the model with a larger context length."
)
LLM_AUTH = "The storyteller ({server} at {url}) refused Kahani's API key."
LLM_MODEL_NOT_FOUND = "The model “{model}” is not available on the storyteller ({server})."
LLM_NO_MODEL = (
    "No language model is loaded on the storyteller ({server} at {url}). "
    "Load a model, or set LLM_MODEL."
)
LLM_RATE_LIMITED = "The storyteller is busy right now. Please try again in a moment."
LLM_SERVER_ERROR = "The storyteller ({server}) had an internal error. Please try again."
LLM_BAD_REQUEST = "The storyteller ({server}) rejected the request. Please try again."

# The name shown for a server whose kind cannot be told from its address.
LLM_GENERIC_SERVER = "language model server"

# --- the story engine (core/engine.py) ---------------------------------------------------

STILL_WRITING = "The storyteller is still writing this story. Wait for the scene to finish, then try again."
NOT_LAST_SCENE = (
    "That scene is no longer the last one of the story. Act on the latest scene, "
    "or pick this scene's version in the menu to branch from here."
)
LEASE_LOST = "This scene took too long and another request took over the story. Please try again."
STORY_ENDED = "This story has ended. Start a new one with /story new."
LLM_GARBAGE = "The storyteller's reply was not a scene Kahani could use. Please try again."
EDIT_EMPTY = "The scene text is empty: write something, or keep the scene as it is."
CHAPTER_NEEDS_A_SCENE = "A new chapter needs at least one scene in the current one."
CHAPTER_ALREADY_NEW = "A new chapter already starts with the next scene."
CHAPTER_NOT_ON_PATH = "That chapter is not part of the story's current path."
SUMMARY_NOTHING_TO_EDIT = "This chapter has no summary yet to edit."

# --- Discord layer (bot/, cogs/) -----------------------------------------------------
# Appended by the bot shell; shown by the error funnel (bot/errors.py) and the cogs.

# An unexpected failure: the reference is also in the log, next to the traceback.
DISCORD_UNEXPECTED_ERROR = (
    "Something went wrong (ref {ref}). Please try again; if it keeps happening, "
    "give this reference to whoever runs Kahani."
)
# A `kahani:` button or menu that nothing in this version of the bot handles any more.
DISCORD_STALE_COMPONENT = (
    "This button is from an older version of Kahani and no longer works. "
    "Use /story resume to bring the story back with fresh buttons."
)
DISCORD_COOLDOWN = "Slow down a little: try again in {seconds:.0f} s."
DISCORD_GUILD_ONLY = "This command works only in a server."
DISCORD_USER_MISSING_PERMISSIONS = "You need the {permissions} permission for this."
DISCORD_BOT_MISSING_PERMISSIONS = (
    "Kahani needs the {permissions} permission here. Ask a server admin to grant it."
)
DISCORD_BOT_FORBIDDEN = (
    "Discord did not let Kahani do that here (missing permissions). "
    "Ask a server admin to check Kahani's permissions in this channel."
)
DISCORD_NOT_ALLOWED = "You can't use this here."

HELP_TEXT = (
    "**How to play Kahani**\n"
    "• `/story new` starts a story: give it a title, genre, tone and premise, and the "
    "storyteller writes the first scene.\n"
    "• After each scene, press one of the choices, or **Your action** to write what happens "
    "next yourself.\n"
    "• **Regenerate** rewrites the scene, **Branch** takes it in a direction you describe, "
    "**Continue** makes it longer. Every version is kept: pick one in the variants menu "
    "under the scene.\n"
    "• `/chapter new` closes the chapter with a summary, so long stories keep fitting "
    "the model's memory.\n"
    "• In a server, a story gets its own thread and the choices become votes: everyone "
    "who joins the story votes on what happens next.\n"
    "• `/narrate join` reads the scenes aloud in the voice channel you are in.\n"
    "• `/story list` and `/story resume` bring back your stories."
)

# --- which story, and who may act (cogs/common.py) -------------------------------------------

NO_STORY_HERE = (
    "There is no story in this channel. Use this in a story's thread or DM, name a story "
    "with the story option, or start one with /story new."
)
STORY_IN_ANOTHER_SERVER = "That story belongs to another server."
NOT_YOUR_STORY = "This is someone else's solo story: only its owner can play it. Start your own with /story new."
NOT_A_PLAYER_KICKED = "The host has removed you from this story's table."
NOT_YOUR_STORY_TO_MANAGE = "Only the story's owner (or a moderator who can manage threads) can do that."
