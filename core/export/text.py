"""Story text made safe for each format.

Scenes are Markdown the model wrote. For HTML and EPUB it is rendered by markdown-it
with raw HTML turned off (``<script>`` comes out as text), no links or images (nothing
to click or fetch in a book), and headings moved below the book's own. The PDF takes
no links either (core/export/pdf.py); a Markdown file keeps links but shows images as text. Everything else
(titles, choices, names) is escaped where it is written.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Characters XML 1.0 forbids (EPUB is XHTML) and that no reader shows anyway.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~!])")
FIRST_SCENE_HEADING = 4  # a scene's "# Heading" becomes <h4>: below book, chapter, scene


def clean(text: str) -> str:
    """The text without characters XML cannot hold, with Unix line ends."""
    return _INVALID_XML.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(text: str) -> str:
    return " ".join(clean(text).split())


@lru_cache(maxsize=1)
def markdown() -> MarkdownIt:
    """The shared parser: CommonMark with strikethrough, without raw HTML, links or images."""
    parser = MarkdownIt("commonmark", {"html": False, "xhtmlOut": True})
    parser.enable("strikethrough")
    parser.disable(["html_block", "html_inline", "link", "autolink", "image", "linkify"], ignoreInvalid=True)
    return parser


def tokens(text: str) -> list[Token]:
    """The parsed scene, headings moved down to h4–h6."""
    parsed = markdown().parse(clean(text))
    for token in parsed:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + FIRST_SCENE_HEADING - 1)}"
    return parsed


def to_html(text: str) -> str:
    """A scene's Markdown as (X)HTML, with no markup the model wrote itself."""
    parser = markdown()
    env: dict[str, Any] = {}
    return parser.renderer.render(tokens(text), parser.options, env)


def escape_html(text: str) -> str:
    return html.escape(one_line(text), quote=True)


def escape_markdown(text: str) -> str:
    """One line of plain text (a title, a choice) that Markdown shows as it is."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def markdown_body(text: str) -> str:
    """A scene's Markdown for a Markdown file: kept as written (it is Markdown), except
    that raw HTML is escaped so no viewer runs it and an image is not an image (a viewer
    would fetch it: a tracking pixel in a story)."""
    return clean(text).replace("<", "\\<").replace("![", "!\\[").strip()
