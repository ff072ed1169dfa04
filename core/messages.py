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
LLM_TOTAL_TIMEOUT = (
    "The storyteller took more than {seconds:g} s for this scene and was stopped. Please try again."
)
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
SUMMARY_NOTHING_TO_UNDO = "This summary has not been edited: there is nothing to undo."
SUMMARY_BEHIND = (
    "The summary of the earlier scenes is still being written, so this scene cannot be "
    "written yet without forgetting them. Try again in a minute."
)
SUMMARY_CLAIM_LOST = "Another process took over writing this summary."
SUMMARY_PENDING = "Its summary is being written."
CHAPTER_SUMMARY_PENDING = "Chapter {number}'s summary is still being written. Try again in a minute."

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
    "• Long stories stay in the model's memory: older scenes are summarised on their own, "
    "and `/chapter new` closes a chapter with a summary. `/story memory` shows what the "
    "storyteller remembers (and lets you fix a summary); `/lore add` teaches it places, "
    "people and secrets that come back when they are named; `/story note` steers every scene "
    "(\"keep it grim\").\n"
    "• In a server, a story gets its own thread and the choices become votes: everyone "
    "who joins the story votes on what happens next.\n"
    "• `/narrate join` reads the scenes aloud in the voice channel you are in.\n"
    "• `/story list` and `/story resume` bring back your stories."
)
HELP_VOTES_TITLE = "How group votes work"
HELP_VOTES = (
    "• In a server story, each choice is a vote. Your first vote joins you to the table (an "
    "invite-only table needs `/story invite` from the host).\n"
    "• Click another option to change your vote, the same one again to take it back. With own "
    "actions on, **Your action** proposes an option of your own that everyone can vote for.\n"
    "• A vote closes when its timer runs out (`/story vote-settings`, 60 s unless the host "
    "changes it), when every player at the table has voted, or when the host presses "
    "**Close vote**. The most votes win; a tie goes to the earliest option.\n"
    "• Nobody voted? The timer runs once more, then the host decides with their next click."
)
HELP_COMMANDS_TITLE = "Every command"

# --- which story, and who may act (core/access.py, bot/access.py) -------------------------------------------

NO_STORY_HERE = (
    "There is no story in this channel. Use this in a story's thread or DM, name a story "
    "with the story option, or start one with /story new."
)
# The same answer for a story that does not exist and one the user may not see: it
# names nothing of the story, so trying numbers tells a stranger nothing (core/access.py).
STORY_NOT_FOUND = (
    "There is no such story among those you can see (it may have been deleted). /story list shows yours."
)
NOT_YOUR_STORY = "This is someone else's solo story: only its owner can play it. Start your own with /story new."
NOT_A_PLAYER_KICKED = "The host has removed you from this story's table."
NOT_YOUR_STORY_TO_MANAGE = "Only the story's owner (or a moderator who can manage threads) can do that."

# --- chapters, characters, user settings (cogs/chapters.py, characters.py, settings.py) ---

# Before a form opens the database must answer within about a second (Discord's 3 s).
DISCORD_DB_BUSY = "Kahani's database is busy right now. Please try again in a moment."
TEXT_REQUIRED = "{field} cannot be empty."
TEXT_TOO_LONG = "{field} can be at most {limit} characters (yours has {length})."
# Shown for an option or form value that the Discord client should not have let through.
FIELD_NAME = "The name"
FIELD_DESCRIPTION = "The description"
FIELD_PERSONALITY = "The personality"
FIELD_VOICE = "The voice"
FIELD_TITLE = "The chapter title"
FIELD_SUMMARY = "The summary"
FIELD_AUTHOR_NOTE = "The author's note"
FIELD_SCENE_NOTE = "The note to the storyteller"
SCENE_NOTE_LABEL = "Note to the storyteller (optional)"
SCENE_NOTE_PLACEHOLDER = "Not part of the story; steers this scene only, e.g. \"Mara is lying\""
MORE_NOT_SHOWN = "{shown} of {total} shown."

CHAPTER_CLOSED = (
    "Chapter {closed} is closed; the storyteller is writing its summary (`/chapter summary` "
    "shows it). **{name}** begins with the next scene."
)
CHAPTER_NOT_CLOSED = "{reason} The chapter stays open; nothing was changed."
CHAPTER_LIST_TITLE = "{story}: chapters"
CHAPTER_NAMED = "Chapter {number}: {title}"
CHAPTER_UNTITLED = "Chapter {number}"
CHAPTER_CURRENT = "{name} (current)"
CHAPTER_NO_SUMMARY = "No summary yet."
CHAPTER_UNKNOWN = "This story has no chapter {number} on its current path. /chapter list shows its chapters."
CHAPTER_SUMMARY_NONE = (
    "Chapter {number} has no summary yet. A chapter gets one when /chapter new closes it."
)
SUMMARY_EDIT_BUTTON = "Edit"
SUMMARY_UNDO_BUTTON = "Undo"
SUMMARY_RESTORED = "The summary's text before the last edit is back (Undo again to redo)."
SUMMARY_MODAL_TITLE = "Chapter {number}: summary"
SUMMARY_MODAL_LABEL = "Summary"
SUMMARY_TOO_LONG_TO_PREFILL = "The summary is longer than a form holds: write its replacement here."
SUMMARY_SAVED = "Summary saved. The storyteller uses it from the next scene on."

CHARACTERS_TITLE = "{story}: characters"
CHARACTERS_NONE = "*{story}* has no characters yet. Add one with /character add."
CHARACTER_PERSONALITY = "*Personality:* {text}"
CHARACTER_VOICE = "*Voice:* {voice}"
CHARACTER_NO_DETAILS = "No description yet."
CHARACTER_ADDED = "**{name}** joined the cast of *{story}*."
CHARACTER_UPDATED = "**{name}** was updated."
CHARACTER_NAME_TAKEN = "This story already has a character called {name}."
CHARACTER_REMOVE_CONFIRM = "Remove **{name}** from *{story}*? The storyteller will forget them."
CHARACTER_REMOVE_BUTTON = "Remove"
CHARACTER_CANCEL_BUTTON = "Cancel"
CHARACTER_REMOVED = "**{name}** was removed from the cast."
CHARACTER_KEPT = "Nothing was removed."
CHARACTER_MODAL_ADD = "New character"
CHARACTER_MODAL_EDIT = "Edit {name}"
CHARACTER_NAME_LABEL = "Name"
CHARACTER_DESCRIPTION_LABEL = "Description"
CHARACTER_DESCRIPTION_HINT = "Who they are, how they look: up to {limit} characters"
CHARACTER_PERSONALITY_LABEL = "Personality"
CHARACTER_PERSONALITY_HINT = "How they speak and act: up to {limit} characters"

SETTINGS_TITLE = "Your Kahani settings"
SETTINGS_BODY = (
    "**Scene length:** {scene_length}\n"
    "**Narration voice:** {voice}\n"
    "**Narration speed:** {speed:g}×\n"
    "**Auto-narrate:** {auto_narrate}"
)
SETTINGS_DEFAULT_VOICE = "the default voice"
SETTINGS_ON = "on"
SETTINGS_OFF = "off"
SETTINGS_SAVED = "Saved. These are your defaults from now on."
SETTINGS_NOTHING_GIVEN = "Name at least one setting to change, e.g. `/settings set speed:1.2`."
SETTINGS_BAD_SPEED = "Narration speed must be between 0.5 and 2.0 (you gave {speed:g})."
SETTINGS_BAD_SCENE_LENGTH = "Scene length must be short, medium or long."

# --- playing in Discord (cogs/stories.py) ----------------------------------------------------

WRITING = "-# ✍️ *The storyteller is writing…*"
SUMMARISING = "-# 📜 *The storyteller is catching up on the story so far…*"
SCENE_FAILED_REF = "Something went wrong while this scene was written (ref {ref}); the story is as it was. Retry?"
SCENE_SHOW_FAILED_REF = (
    "This scene is saved, but something went wrong while it was shown (ref {ref}). "
    "`/story resume` shows it again with its choices."
)
STORY_NEEDS_TITLE = "A story needs a title."
STORY_YOU_CANNOT_CREATE_THREADS = (
    "You can't create threads in {channel}, so a story can't start here for you. "
    "Try another channel, or start one in my DMs."
)
STORY_LIMIT = (
    "You have started {count} stories in the last hour, the most one player may. "
    "You can start the next one in {minutes} minute(s)."
)
FIELD_STORY_TITLE = "The title"
FIELD_GENRE = "The genre"
FIELD_TONE = "The tone"
FIELD_WORLD = "The world"
FIELD_PREMISE = "The premise"
STORY_NEEDS_TEXT_CHANNEL = (
    "Start stories in a text channel (the story gets its own thread there), in a forum post (the story "
    "gets its own post) or in my DMs."
)
STORY_NO_THREAD_PERMISSION = (
    "I can't create a thread in {channel}. Ask a moderator to let me create threads there, "
    "or start the story in my DMs."
)
STORY_STARTED = "**{title}** begins in {where}."
HERE_IN_DMS = "this conversation"
STORY_INTRO = (
    "📖 **{title}**\n-# {genre} · {tone}\n"
    "-# Kahani can't read what is typed here: to write what happens next, press **Your action** under a scene."
)
CHOICE_GONE = "That choice does not exist any more."
VARIANT_GONE = "That version of the scene does not exist any more."
ALREADY_STARTED = "This story has already begun: act on its latest scene."
RATING_INVALID = "Pick a rating from 1 to 5 stars."
RATED = "You rated this version {stars}."
FAVOURITE_ON = "Marked as a favourite. ⭐"
FAVOURITE_OFF = "No longer a favourite."
NO_STORIES = "You have no stories yet. Start one with /story new."
THREAD_CANNOT_REOPEN = "I can't reopen this story's thread. Ask a moderator to unarchive it, then try again."
RESUME_NO_SCENE = "The story has no scene yet: the first one is being written."
RESUMED = "The story continues in {where}."
STORY_CHANNEL_GONE = (
    "This story's thread or channel is gone. The story is safe: use /story resume in a "
    "channel to continue it there."
)
STORY_ENDED_NOW = "**{title}** has ended. Thank you for playing! (/story export keeps it as a book.)"
STORY_DELETE_CONFIRM = "Delete **{title}** and every scene of it? This cannot be undone."
STORY_DELETED = "**{title}** was deleted."
STORY_KEPT = "Nothing was deleted."
STORY_SETTINGS = "**{title}**: scenes are {length}, told in the {pov} person."
INTERRUPTED = "⚠️ *This scene was interrupted (the bot restarted). Nothing was saved: press Retry.*"
INTERRUPTED_VERSION = "⚠️ A new version of this scene was interrupted by a restart. Nothing was saved: press Retry."

# --- group votes (core/votes.py, cogs/votes.py) ----------------------------------------------

VOTE_BAD_DURATION = "A vote lasts between 10 seconds and 24 hours (86400 s); you gave {seconds} s."
VOTE_SOLO = "This is a solo story: there is nothing to vote on."
VOTE_INVITE_ONLY = "This story's table is invite-only: ask the host to /story invite you."
VOTE_ALREADY_DECIDED = "This vote is over: option {winner} won, and the story goes on with it."
VOTE_NO_OWN_ACTIONS = "The host has turned off own actions for this story: vote for one of the choices."
VOTE_NO_ACTION_YET = "Nobody has proposed an action in this vote yet."
VOTE_ACTION_TAKEN = (
    "Someone already proposed an action for this vote: “{action}”. Vote for it with **Your action**, "
    "or wait for the next scene."
)
VOTE_GONE = "That vote does not exist any more."
VOTE_VOIDED = "The vote was called off: the scene changed."
VOTE_WHY_DEADLINE = "when time ran out"
VOTE_WHY_EVERYONE = "once everyone had voted"
VOTE_WHY_HOST = "when the host closed the vote"
VOTE_NO_VOTES = "Nobody voted."
VOTE_WON = "Option {winner} won with {votes} of {total} vote(s), {why}."
VOTE_TIE = (
    "Options {options} tied with {votes} vote(s) each, {why}; ties go to the earliest option, so {winner} wins."
)
VOTE_CAST = "You voted for {n}: {text}"
VOTE_WITHDRAWN = "You took back your vote for {n}."
VOTE_JOINED_NOTE = " You joined the story: you'll vote on every scene from now on."
VOTE_TALLY_TITLE = "🗳️ Vote"
VOTE_TALLY_OPEN = "Closes {when} · {voters} of {eligible} player(s) voted. Ties go to the earliest option."
VOTE_TALLY_EXTENDED = "Nobody voted yet, so the vote got more time: it closes {when}."
VOTE_TALLY_LINE = "**{n}.** {text} — {votes}"
VOTE_TALLY_ACTION_HINT = "-# Option 5 is a player's own action: press **Your action** to vote for it."
VOTE_CLOSED_TITLE = "🗳️ Vote closed"
VOTE_VOID_TITLE = "🗳️ Vote called off"
VOTE_VOID_REWRITE = "The host is changing this scene; a new vote opens when it is ready."
VOTE_ASK_HOST = (
    "<@{host}> nobody voted on the last scene, even with extra time. The choice is yours: press one "
    "(any other player's vote starts a new round)."
)
VOTE_HOST_ONLY_CLOSE = "Only the host (or a moderator who can manage threads) can close this vote early."
VOTE_MEMBERS_ONLY_CLOSE = "Only players of this story can close its vote."
VOTE_NOTHING_OPEN = "There is no open vote on this scene."
VOTE_CLOSED_BY_YOU = "You closed the vote."
VOTE_JOINED = "You joined **{title}**: you'll vote on what happens next."
VOTE_ALREADY_JOINED = "You are already playing **{title}**."
GROUP_HOST_ONLY = (
    "In a group story only the host can regenerate, branch, continue or switch versions. "
    "Vote with the choice buttons instead."
)
GROUP_ONLY = "This works only in group stories (start one in a server with /story new mode:group)."
MEMBER_INVITED_NOT_ADDED = (
    "{user} is invited, but I couldn't add them to this private thread: ask a moderator to add them, "
    "or give me the Manage Threads permission."
)
MEMBER_INVITED = "{user} is invited to **{title}**: they can vote on its scenes."
MEMBER_KICKED = "{user} was removed from **{title}**'s table; their vote no longer counts."
MEMBER_KICK_OWNER = "The host cannot be removed from their own story."
VOTE_SETTINGS = (
    "**{title}** votes: {duration} s to vote · own actions {actions} · early close by {closer} · "
    "table {table} · when everyone at a table of two or more has voted, the vote closes, but no "
    "sooner than {min_open} s after the scene appeared."
)
VOTE_BAD_MIN_OPEN = "{seconds} s is not a wait for readers Kahani can use: 0 to {most} seconds."
VOTE_SETTINGS_ON = "on"
VOTE_SETTINGS_OFF = "off"
VOTE_SETTINGS_HOST = "the host only"
VOTE_SETTINGS_ANYONE = "any player"
VOTE_SETTINGS_OPEN = "open to everyone in the thread"
VOTE_SETTINGS_INVITE = "invite-only"

# --- narration (core/tts.py, cogs/narration.py) ----------------------------------------------

TTS_UNREACHABLE = "Narration unavailable: Kokoro at {url} is not reachable. Is it running? The story goes on."
TTS_TIMEOUT = "Narration unavailable: Kokoro at {url} did not answer within {seconds:g} s. The story goes on."
TTS_SERVER_ERROR = "Narration unavailable: Kokoro at {url} had an internal error. The story goes on."
TTS_REJECTED = "Kokoro refused to read this: {detail}"
TTS_BAD_REPLY = "Narration unavailable: Kokoro at {url} sent back something that is not audio."
TTS_TOO_LARGE = "This scene's narration is larger than {megabytes:g} MB, too large to send as a file."
TTS_BAD_VOICE = (
    "“{voice}” is not a voice name or mix. Use a voice such as af_bella, or a mix such as "
    "af_bella(2)+af_sky(1)."
)
TTS_UNKNOWN_VOICE = "Kokoro has no voice “{voice}”. Pick one from the list /narrate voice suggests."
NARRATE_VOICE_UNAVAILABLE = (
    "Voice narration is not available on this bot: {problem}. "
    "Ask whoever runs Kahani to set it up (see the README)."
)
NARRATE_NOT_IN_VOICE = "Join a voice channel first, then use /narrate join."
NARRATE_JOINED = "🔊 Narrating in {channel}. Press **Narrate** on a scene to hear it."
NARRATE_ALREADY_HERE = "I'm already narrating in {channel}."
NARRATE_OTHER_CHANNEL = (
    "I'm already narrating in {channel}: one narration per server. "
    "Use /narrate leave there first, or join that channel."
)
NARRATE_CONNECT_FAILED = "I couldn't join {channel}. Check that I may connect and speak there, then try again."
NARRATE_LEFT = "I left {channel}."
NARRATE_NOT_CONNECTED = "I'm not in a voice channel in this server. Use /narrate join from a voice channel first."
NARRATE_NOTHING_PLAYING = "Nothing is being narrated right now."
NARRATE_STOPPED = "Narration stopped."
NARRATE_SKIPPED = "Skipped ahead."
NARRATE_STARTED = "🔊 Reading the scene in {channel}."
NARRATE_FILE = "🔊 The scene, read aloud."
NARRATE_EMPTY = "This scene has nothing to read aloud."
NARRATE_VOICE_SAVED = "Your narration voice is now **{voice}**."
NARRATE_VOICE_SAVED_UNCHECKED = (
    "Your narration voice is now **{voice}** (Kokoro could not be asked whether it has that voice)."
)
VOICE_UNCHECKED = "(Kokoro could not be asked whether it has the voice **{voice}**; it is kept.)"
NARRATE_VOICE_DEFAULT = "Your narration voice is back to the default ({voice})."
NARRATE_SPEED_SAVED = "Your narration speed is now {speed:g}×."
NARRATE_FAILED_MIDWAY = "⚠️ {reason}"
INTERRUPTED_SHUTDOWN = "The bot is restarting; this scene was not finished and nothing was saved. Press Retry."

# --- story export (core/export, /story export, kahani export) ---------------------------------

EXPORT_PRIVATE_NOT_PUBLIC = (
    "Only its members can see this story, so I can post its export publicly only in its own thread. "
    "Leave out `public` to get the file privately."
)
EXPORT_NO_SCENES = "This story has no scene yet: there is nothing to export."
EXPORT_BOOK_TOO_LONG = (
    "This story has {scenes:,} scenes; {format} exports stop at {limit:,}. "
    "Export it as Markdown or HTML instead: they take any length."
)
EXPORT_TREE_FORMATS = "The whole tree (every version and branch) is exported as Markdown or HTML only."
EXPORT_UNKNOWN_FORMAT = "Export formats are markdown, html, epub and pdf."
EXPORT_TOO_BIG_HERE = "The {format} file is {size}, but files here can be at most {limit}. {smaller}"
EXPORT_TRY_PATH_ONLY = "Try again without `whole_tree`: the story as it stands is much smaller."
EXPORT_TRY_MARKDOWN = "Try `format:markdown`: it is the smallest."
EXPORT_TRY_CLI = "Whoever runs the bot can export it with `kahani export {story_id}`."
EXPORT_READY = "📖 **{title}** — {scenes} scenes as {format}."

# --- the LLM queue and generation limits (core/llmqueue.py) --------------------------------

QUEUE_WAITING = "-# ⏳ *Waiting for the storyteller — {place} in line…*"
QUEUE_PLACE_LOST = "This scene lost its place in line for the storyteller. Please try again."
RATE_LIMITED_USER = (
    "You're going fast! You can start {count} scenes a minute; "
    "the storyteller is ready for your next one in about {seconds} s."
)
RATE_LIMITED_GUILD = (
    "This server's stories have asked for {count} scenes in the last minute, as many as it may; "
    "try again in about {seconds} s."
)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 13th … 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- a group story's narration voice (/narrate voice|speed scope:story; issue 8) -------------

NARRATE_STORY_VOICE_SAVED = "**{title}** is now narrated with **{voice}**, whoever starts the narration."
NARRATE_STORY_VOICE_SAVED_UNCHECKED = (
    "**{title}** is now narrated with **{voice}** (Kokoro could not be asked whether it has that voice)."
)
NARRATE_STORY_VOICE_DEFAULT = "**{title}** is narrated with each narrator's own voice and speed again."
NARRATE_STORY_SPEED_SAVED = "**{title}** is now narrated at {speed:g}×, whoever starts the narration."
NARRATE_STORY_SOLO = (
    "Only group stories have a narration voice of their own: a solo story is read with its "
    "player's voice (/narrate voice without scope)."
)
STORY_NO_PRIVATE_THREAD_PERMISSION = (
    "I can't create private threads in {channel}. Start the story without `private` (a public "
    "thread), ask a moderator to let me create private threads there, or play in my DMs."
)


# --- lore, a story's world info (core/lore.py, core/repository/lore.py; issue 16) ---------

LORE_NAME_TAKEN = "This story already has a lore entry called {name}."
LORE_NOT_FOUND = "This story has no lore entry called {name}."
LORE_GONE = "That lore entry is not in this story any more."
LORE_NOTHING_TO_UNDO = "{name} has no earlier version to go back to."
LORE_ALREADY_ACTIVE = "{name} is already part of the story's lore."
LORE_NOT_PROPOSED = "{name} is part of the story's lore, not a proposal: remove it instead."
FIELD_LORE_NAME = "A lore entry's name"
FIELD_LORE_TEXT = "A lore entry's text"
LORE_TOO_MANY_KEYWORDS = "A lore entry can have at most {limit} keywords (yours has {count})."
LORE_KEYWORD_TOO_LONG = "A keyword can be at most {limit} characters ('{keyword}…' has {length})."
# Why an entry is in (or was left out of) a scene's prompt: the story's memory view.
LORE_WHY_PINNED = "pinned"
LORE_WHY_ACTION = "keyword '{keyword}' in the action"
LORE_WHY_LAST_SCENE = "keyword '{keyword}' in the last scene"
LORE_WHY_EARLIER_SCENE = "keyword '{keyword}' in the {nth}-last scene"
LORE_WHY_LORE = "keyword '{keyword}' in lore '{name}'"


# --- /lore add|edit|remove|list|show (cogs/lore.py; issue 16) --------------------------------

LORE_ADDED = "Added lore entry **{name}** to *{story}* (keywords: {keywords})."
LORE_UPDATED = "Saved lore entry **{name}** (keywords: {keywords})."
LORE_ADDED_PINNED = " It is pinned: the storyteller always has it in mind."
LORE_NO_KEYWORDS = "none"
LORE_PINNED_NOW = "**{name}** is pinned: the storyteller always has it in mind."
LORE_UNPINNED_NOW = "**{name}** is no longer pinned: it comes up when one of its keywords does."
LORE_REMOVED = "Removed lore entry **{name}** from *{story}*. Here is what it said, should you want it back."
LORE_UNDONE = "**{name}** is back to its earlier version. Undo again to bring your edit back."
LORE_LIST_TITLE = "{story}: lore"
LORE_LIST_PINNED = "{name} 📌"
LORE_LIST_KEYWORDS = "*Keywords:* {keywords}"
LORE_NONE = "*{story}* has no lore yet. Add an entry with /lore add."
LORE_NO_TEXT = "No text yet."
LORE_FIELD_KEYWORDS = "Keywords"
LORE_FIELD_PINNED = "Pinned"
LORE_FIELD_STATUS = "Status"
LORE_PINNED_YES = "Yes: the storyteller always has it in mind"
LORE_PINNED_NO = "No: it comes up when one of its keywords does"
LORE_STATUS_PROPOSED = "Proposed by the storyteller, not used yet"
LORE_UNDO_BUTTON = "Undo last edit"
LORE_MODAL_ADD = "New lore entry"
LORE_MODAL_EDIT = "Edit {name}"
LORE_NAME_LABEL = "Name"
LORE_NAME_HINT = "A place, faction, item, rule or secret: up to {limit} characters"
LORE_KEYWORDS_LABEL = "Keywords"
LORE_KEYWORDS_HINT = "Comma-separated; the entry comes up when one of them does (at most {limit})"
LORE_KEYWORDS_PLACEHOLDER = "Iron Gate, the gate, gatekeepers"
LORE_TEXT_LABEL = "Text"
LORE_TEXT_HINT = "What the storyteller should know: up to {limit} characters"

# /story memory and /story note (issue 16).
MEMORY_TITLE = "{title}: what the storyteller remembers"
MEMORY_TOTAL = (
    "The next scene's prompt: **{used}** of {budget} tokens ({percent}%), plus up to {reply} for the "
    "reply, on a {context}-token context."
)
MEMORY_SUMMARIES_DUE = "📜 {count} summary job(s) waiting or being written."
MEMORY_FRAME = "Premise, world and rules — {tokens} tokens"
MEMORY_FRAME_TEXT = "Title, genre, tone, world, premise, point of view and the storyteller's rules."
MEMORY_CHARACTERS = "Characters — {tokens} tokens"
MEMORY_NO_CHARACTERS = "None yet (`/character add`)."
MEMORY_LORE = "Lore — {tokens} of {budget} tokens"
MEMORY_NO_LORE = "Nothing pinned or called up by the recent scenes (`/lore add`)."
MEMORY_LORE_LEFT_OUT = "Left out (over the lore budget):\n{entries}"
MEMORY_CHAPTERS = "Chapter summaries — {tokens} tokens"
MEMORY_CHAPTER = "• {title}: {tokens} tokens"
MEMORY_CHAPTER_PENDING = "• {title}: summary being written (its recent scenes stay in until then)"
MEMORY_NO_CHAPTERS = "No closed chapters."
MEMORY_ROLLING = "This chapter so far — {tokens} tokens"
MEMORY_NO_ROLLING = "No summary yet: every scene of this chapter is still in the prompt."
MEMORY_RECENT = "Recent scenes — {tokens} tokens"
MEMORY_SCENES = "{kept} of the {uncovered} scenes no summary covers yet."
MEMORY_SCENES_SUMMARISED_FIRST = "The older {count} are summarised before the next scene is written."
MEMORY_NOTE = "Author's note — {tokens} tokens"
MEMORY_NO_NOTE = "None (`/story note`)."
MEMORY_EDIT_HINT = "You can edit this chapter's summary below; the text before is kept for Undo."
NOTE_SET = "Author's note for **{title}** saved. The storyteller reads it before every scene:\n> {note}"
NOTE_CLEARED = "The author's note for **{title}** is cleared."
NOTE_SHOWN = (
    "Author's note for **{title}**:\n> {note}\n"
    "-# Change it with `/story note text:…`, clear it with `/story note clear:True`."
)
NOTE_NONE = "**{title}** has no author's note. Set one with `/story note text:…` (e.g. \"keep it grim\")."

# Lore proposals (cogs/lore.py): the storyteller suggests, a person decides.
LORE_PROPOSED_NOTICE = (
    "📜 The storyteller suggests {count} lore entr(ies) from the chapter just closed: {names}. "
    "The story's owner can accept, edit or dismiss them with `/lore proposals`."
)
LORE_PROPOSALS_TITLE = "{story}: lore the storyteller proposes"
LORE_PROPOSAL_FIELD = "Keywords: {keywords}\n{text}"
LORE_NO_PROPOSALS = "The storyteller has no lore proposals waiting for **{story}**."
LORE_ACCEPT_BUTTON = "Accept"
LORE_EDIT_BUTTON = "Edit"
LORE_DISMISS_BUTTON = "Dismiss"
LORE_ACCEPTED = "**{name}** is now part of the story's lore."
LORE_DISMISSED = "Dismissed **{name}**."

# Cooldowns and caps (core/cooldowns.py, /story export).
COOLDOWN = "You just did that: you can again in {seconds} s."
EXPORT_BUSY = "Kahani is building other exports right now. Please try again in a minute."
EXPORT_TOO_BIG_WHILE_WRITING = (
    "The {format} file grew past {limit}, the most Discord takes here, so it was stopped. {smaller}"
)
NARRATE_NOT_YOURS = (
    "Only whoever started the narration, those listening in its voice channel, or a moderator "
    "(Move Members) can stop it, skip or make me leave."
)
NARRATE_FILE_BUSY = "Your last scene's audio is still being made: one at a time. It comes in a moment."
CHARACTER_LIMIT = "A story can have at most {limit} characters. Remove one first (/character remove)."
LORE_LIMIT = "A story can have at most {limit} lore entries. Remove one first (/lore remove)."
DB_UNREACHABLE = (
    "The story database is not reachable right now (ref {ref}). Nothing was lost; try again in a minute."
)
DB_BUSY_REF = "The story database is busy right now (ref {ref}). Nothing was lost; try again in a moment."

# /privacy (cogs/privacy.py).
PRIVACY_TITLE = "What Kahani keeps about you"
PRIVACY_WHAT = (
    "Your Discord id and display name (**{name}**), your settings, the stories you own with every "
    "scene and version, and your memberships and votes in group stories. Nothing else."
)
PRIVACY_STORIES = "Your solo stories ({count})"
PRIVACY_TABLES = "Group stories"
PRIVACY_TABLES_TEXT = "You host {hosted}; you play at {tables} other table(s); {votes} vote(s) cast."
PRIVACY_SETTINGS = "Your settings"
PRIVACY_YES = "Stored (`/settings show`)."
PRIVACY_NONE = "None."
PRIVACY_NOTHING = "Kahani keeps nothing about you."
PRIVACY_HOW_TO_DELETE = "`/privacy delete-me` deletes all of it."
PRIVACY_CONFIRM = (
    "This deletes, for good: your settings, your {count} solo stor(ies) with every scene and their "
    "threads, and your votes. Group stories are other people's play too: there you stay as "
    "\"a former player\", without your name, and the ones you host go on without you."
)
PRIVACY_FORGOTTEN = (
    "Done: your settings, your {count} solo stor(ies) and your votes are deleted; in group stories "
    "you are now \"a former player\"."
)
PRIVACY_KEPT = "Nothing was deleted."
PRIVACY_NOT_YOURS = "Only the person this is about can confirm it."
TTS_BAD_VOICE_MIX = (
    "\"{voice}\" is not a voice mix Kokoro can use: at most {most} voices, each weight more than 0 "
    "and at most {weight:g} (e.g. af_bella(2)+am_adam(1))."
)

# --- reading back (/story read, /story tree) ---------------------------------------------
READER_FOOTER = "Page {page} of {pages} · scene {scenes} · {chapter}"
READER_EMPTY = "This story has no scenes yet."
READER_NO_CHAPTER = "This story has no chapter {number}; it has {count}."
TREE_SUMMARY = "**{path}** scenes on the current path · {scenes} scenes and {versions} versions in the whole story."
TREE_REWOUND = (
    "The story was taken back here: {count} later scene(s) are kept; choose this scene's version again "
    "in its versions menu to bring them back."
)
TREE_NO_FORKS = "No scene of the current path has another version yet."
TREE_FORK = "• Scene **{scene}**: {versions} versions, version {active} shown; also {others}"
TREE_OTHER = "v{number} ({kind}, {after} more scene(s))"
TREE_OTHER_ENDS = "v{number} ({kind}, ends there)"

# --- /story edit ------------------------------------------------------------------------------
STORY_EDITED = "Saved: **{title}**. The next scene follows the new details; scenes already written stay as they are."
STORY_EDIT_NOT_RENAMED = "(The thread keeps its old name: Kahani may not rename it here.)"

# --- /server (core/servers.py, cogs/server.py) --------------------------------------------------
FIELD_CONTENT_NOTES = "Content notes"
SERVER_BAD_MODE = "A story is either solo or group."
SERVER_NOTES_SET = "Every story in this server now follows these content notes:\n> {notes}"
SERVER_NOTES_CLEARED = "This server's content notes are cleared."
SERVER_NOTES_NONE = "This server has no content notes. Moderators set them with `/server content-notes`."
SERVER_NOTES_SHOWN = "This server's content notes (every story here follows them):\n> {notes}"
SERVER_MODE_SET = "`/story new` in this server now starts a **{mode}** story unless the player chooses."
SERVER_MODERATORS_ONLY = "Only the server's moderators (Manage Server or Manage Threads) can change this."
SERVER_ONLY = "This is a server setting: use it in a server."
INFO_CONTENT_NOTES = "**Content notes (this server):** {notes}"

# --- /story notify and recaps (#19, async tables) ----------------------------------------------
NOTIFY_JOIN_FIRST = "Join the story's table first (press **Join**, or vote): notices are for its players."
NOTIFY_ON = "You'll get a DM when **{title}** has a new scene and its vote opens. `/story notify on:False` stops them."
NOTIFY_OFF = "No more DMs about **{title}**."
NOTIFY_STATE_ON = "You get a DM when **{title}** has a new scene. `/story notify on:False` stops them."
NOTIFY_STATE_OFF = "You get no DMs about **{title}**. `/story notify on:True` asks for one when a new scene is up."
NOTIFY_DM = "📜 **{title}** has a new scene and its vote is open: {link}\n-# You asked for this with /story notify."
RECAP = "📜 **Previously on {title}…**\n{recap}"
RECAP_SETTING = "Recap after a break: {hours}"
RECAP_OFF = "off"
RECAP_BAD_HOURS = "{hours} h is not a break Kahani can use: 0 (off) to {most} hours."
STORY_FORUM_NOT_PRIVATE = "Posts in a forum such as {channel} are public: start a private story in a text channel."
