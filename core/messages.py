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
