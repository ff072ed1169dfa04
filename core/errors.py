"""One exception hierarchy: every KahaniError carries a message a user may read."""

from __future__ import annotations


class KahaniError(Exception):
    """An expected failure whose message is shown to the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(KahaniError):
    """The story, scene, variant or chapter asked for does not exist (any more)."""


class Conflict(KahaniError):
    """The request clashes with the story's current state (e.g. a generation is running)."""


class LeaseHeld(Conflict):
    """Another generation of this story is running, in this process or another."""
