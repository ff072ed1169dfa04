"""A PDF book, built in memory by fpdf2 (run it in a thread: it is CPU work).

Fonts come from PyPI packages, so the file is the same everywhere and nothing is fetched:
PT Serif (``fontpkg-pt-serif``: Latin and Cyrillic, four styles) for the text, Noto Sans
CJK (``noto-cjk-sans-jp-regular``: Chinese, Japanese, Korean, Greek…) for any character
PT Serif lacks. Characters neither has (emoji) are left out rather than drawn as boxes.

Scene Markdown is parsed by markdown-it (like the HTML) and written with fpdf2's own
emphasis markers through ``multi_cell(markdown=True)``: much faster than ``write_html``,
which the 1,000-scene budget needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import fontpkg
import noto_cjk_sans_jp_regular
from fpdf import FPDF, line_break
from fpdf.fonts import TTFFont
from markdown_it.token import Token

from core.export.model import Block, ChapterStart, ChapterSummary, SceneBlock, StoryInfo
from core.export.stream import subtitle
from core.export.text import clean, one_line, tokens

TEXT = "PTSerif"
FALLBACK = "NotoCJK"
STYLES = (("", 400, "normal"), ("B", 700, "normal"), ("I", 400, "italic"), ("BI", 700, "italic"))
BODY_SIZE = 11
A5 = (148, 210)  # mm; by size, as fpdf2 warns that its "A5" changed in 2.8.5
GREY = (110, 110, 110)
_FPDF_MARKERS = re.compile(r"(\*\*|__|~~|--)")
_INLINE_MARKS = {"em": "__", "strong": "**", "s": "~~"}


def _measure_lines_incrementally() -> None:
    """Make fpdf2's line breaking linear in the line's length.

    fpdf2 2.8 re-measures the whole line for every character it adds (``CurrentLine.width``
    sums every fragment again), so breaking a line costs O(length²): about half the time
    of a 1,000-scene book. Without text shaping a fragment's width is a sum over its
    characters, so each fragment's width is kept and only the characters added since are
    measured. Fragments are only appended to while a line is built (a trim makes a new,
    shorter list, which is measured again). Shaped text (HarfBuzz) keeps the original.
    Skipped if fpdf2 changes shape; exports are then slower, never wrong.
    """
    current_line = getattr(line_break, "CurrentLine", None)
    original = getattr(current_line, "width", None)
    if not isinstance(original, property) or getattr(original.fget, "incremental", False):
        return

    def width(self: Any) -> float:
        total = 0.0
        for i, fragment in enumerate(self.fragments):
            initial_cs = i > 0
            if getattr(fragment, "text_shaping_parameters", None):
                total += fragment.get_width(initial_cs=initial_cs)
                continue
            chars = fragment.characters
            known = getattr(fragment, "_kahani_width", None)
            if known is not None and known[0] is chars and known[2] == initial_cs and known[1] <= len(chars):
                measured = known[3] + (fragment.get_width(start=known[1]) if known[1] < len(chars) else 0.0)
            else:
                measured = fragment.get_width(initial_cs=initial_cs)
            fragment._kahani_width = (chars, len(chars), initial_cs, measured)
            total += measured
        return total

    width.incremental = True  # type: ignore[attr-defined]
    width.original = original  # type: ignore[attr-defined]
    current_line.width = property(width)  # type: ignore[union-attr]


_measure_lines_incrementally()


class _Book(FPDF):
    # fpdf's markdown=True turns "[text](url)" into a clickable link; nothing the model
    # wrote may become one (a book is read offline, and a link could track its reader).
    MARKDOWN_LINK_REGEX = re.compile(r"(?!)")

    def footer(self) -> None:
        if self.page_no() > 1:
            self.set_y(-12)
            self.set_font(TEXT, "", 8)
            self.set_text_color(*GREY)
            self.cell(0, 6, str(self.page_no()), align="C")
            self.set_text_color(0)


def _new_book(info: StoryInfo) -> tuple[_Book, frozenset[int]]:
    pdf = _Book(format=A5)
    pdf.set_margins(16, 16, 16)
    pdf.set_auto_page_break(True, margin=18)
    for style, weight, slant in STYLES:
        pdf.add_font(TEXT, style, fontpkg.path("PT Serif", weight=weight, style=slant))
    pdf.add_font(FALLBACK, "", str(noto_cjk_sans_jp_regular.FONT_PATH))
    pdf.set_fallback_fonts([FALLBACK], exact_match=False)
    # Both were just added from font files: TrueType fonts, not PDF core fonts.
    text_font, fallback_font = (cast(TTFFont, pdf.fonts[name.lower()]) for name in (TEXT, FALLBACK))
    covered = frozenset(text_font.cmap) | frozenset(fallback_font.cmap)
    pdf.set_title(one_line(info.title))
    pdf.set_author(", ".join(info.authors))
    pdf.set_lang(info.language)
    pdf.set_creator("Kahani")
    return pdf, covered


class _Typesetter:
    def __init__(self, pdf: _Book, covered: frozenset[int]) -> None:
        self.pdf, self.covered = pdf, covered

    def printable(self, text: str) -> str:
        return "".join(c for c in text if c == "\n" or ord(c) in self.covered)

    def marked(self, text: str) -> str:
        """Plain text for ``markdown=True``: its own ``**``/``__`` are not markers."""
        return _FPDF_MARKERS.sub(r"\\\1", self.printable(text))

    def line(self, text: str, *, size: float = BODY_SIZE, style: str = "", align: str = "L",
             color: tuple[int, int, int] | None = None, gap: float = 2) -> None:
        pdf = self.pdf
        pdf.set_font(TEXT, style, size)
        if color:
            pdf.set_text_color(*color)
        pdf.multi_cell(0, None, self.printable(one_line(text)), align=align, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0)
        pdf.ln(gap)

    def inline(self, children: Sequence[Token]) -> str:
        out = []
        for child in children:
            kind = child.type
            if kind in ("text", "code_inline"):
                out.append(self.marked(child.content))
            elif kind == "softbreak":
                out.append(" ")
            elif kind == "hardbreak":
                out.append("\n")
            elif kind.endswith(("_open", "_close")) and kind.rsplit("_", 1)[0] in _INLINE_MARKS:
                out.append(_INLINE_MARKS[kind.rsplit("_", 1)[0]])
        return "".join(out)

    def markdown(self, text: str) -> None:
        """A scene's Markdown as paragraphs, headings, lists, quotes and rules."""
        pdf = self.pdf
        lists: list[int | None] = []  # the open lists: None bullets, else the next number
        marker, heading, quote = "", False, 0
        for token in tokens(text):
            kind = token.type
            if kind == "bullet_list_open":
                lists.append(None)
            elif kind == "ordered_list_open":
                lists.append(int(token.attrGet("start") or 1))
            elif kind in ("bullet_list_close", "ordered_list_close"):
                lists.pop()
            elif kind == "list_item_open":
                number = lists[-1] if lists else None
                marker = "• " if number is None else f"{number}. "
                if number is not None:
                    lists[-1] = number + 1
            elif kind == "blockquote_open":
                quote += 1
            elif kind == "blockquote_close":
                quote -= 1
            elif kind == "heading_open":
                heading = True
            elif kind == "heading_close":
                heading = False
            elif kind == "hr":
                pdf.ln(2)
                self.line("*", align="C")
            elif kind in ("fence", "code_block"):
                self.paragraph(self.marked(token.content.rstrip("\n")), indent=4 * (len(lists) + quote))
            elif kind == "inline" and token.children is not None:
                body = self.inline(token.children)
                self.paragraph(marker + body, indent=4 * (len(lists) + quote), style="B" if heading else "",
                               italic=quote > 0)
                marker = ""

    def paragraph(self, text: str, *, indent: float = 0, style: str = "", italic: bool = False) -> None:
        pdf = self.pdf
        if not text.strip():
            return
        pdf.set_font(TEXT, style + ("I" if italic and "I" not in style else ""), BODY_SIZE)
        pdf.set_x(pdf.l_margin + indent)
        pdf.multi_cell(0, None, text, markdown=True, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)


def build_pdf(info: StoryInfo, blocks: Sequence[Block], summaries: Sequence[ChapterSummary]) -> bytes:
    """Write the active path as an A5 PDF book: title page, one section per chapter (in
    the PDF outline too), the choice taken between scenes, the summaries at the end."""
    pdf, covered = _new_book(info)
    ts = _Typesetter(pdf, covered)
    pdf.add_page()
    pdf.set_y(55)
    ts.line(info.title, size=22, style="B", align="C", gap=6)
    if subtitle(info):
        ts.line(subtitle(info), style="I", align="C", color=GREY, gap=8)
    if info.premise.strip():
        pdf.set_font(TEXT, "", BODY_SIZE)
        pdf.multi_cell(0, None, ts.printable(clean(info.premise).strip()), align="C", new_x="LMARGIN",
                       new_y="NEXT")
        pdf.ln(8)
    if info.authors:
        ts.line("Played by " + ", ".join(info.authors), align="C", color=GREY)
    started = False
    for block in blocks:
        if isinstance(block, ChapterStart):
            pdf.add_page()
            title = one_line(block.title) or "—"
            pdf.start_section(ts.printable(title) or "—")
            ts.line(title, size=16, style="B", gap=6)
            started = True
        elif isinstance(block, SceneBlock):
            if not started:
                pdf.add_page()
                started = True
            if block.lead_in:
                pdf.ln(1)
                ts.line("→ " + block.lead_in, style="I", color=GREY, gap=2)
            ts.markdown(block.content)
    if summaries:
        pdf.add_page()
        pdf.start_section("Chapter summaries")
        ts.line("Chapter summaries", size=16, style="B", gap=6)
        for summary in summaries:
            ts.line(summary.title, style="B")
            ts.markdown(summary.text)
    return bytes(pdf.output())
