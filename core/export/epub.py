"""An EPUB 3 book, built in memory by ebooklib (run it in a thread: it is CPU work).

ebooklib writes the container (``mimetype`` first and uncompressed, ``container.xml``),
the package document with its metadata, the EPUB 3 navigation document and an NCX for
older readers. The XHTML comes from the same escaping renderer as the HTML export.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence

from ebooklib import epub

from core.export.model import Block, ChapterStart, ChapterSummary, SceneBlock, StoryInfo
from core.export.stream import scene_html, summaries_html, title_page_html
from core.export.text import escape_html, one_line

CSS = """
body { font-family: serif; line-height: 1.5; }
header { text-align: center; margin-top: 20%; }
.subtitle, .authors, .version { font-style: italic; color: #555; }
.lead-in { font-style: italic; color: #777; margin: 1.2em 0 0.4em; }
"""


def _page(title: str, file_name: str, body: str, language: str) -> epub.EpubHtml:
    page = epub.EpubHtml(title=title, file_name=file_name, lang=language)
    page.content = f"<html><head><title>{escape_html(title)}</title></head><body>{body}</body></html>"
    page.add_link(href="style/book.css", rel="stylesheet", type="text/css")
    return page


def build_epub(info: StoryInfo, blocks: Sequence[Block], summaries: Sequence[ChapterSummary]) -> bytes:
    """Write the active path as an EPUB 3: a title page, one document per chapter, the
    chapter summaries at the end, a table of contents for all of them."""
    book = epub.EpubBook()
    # Stable per story: re-exporting updates the same book in a reader's library.
    book.set_identifier(f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'kahani:story:{info.story_id}')}")
    book.set_title(one_line(info.title))
    book.set_language(info.language)
    for author in info.authors:
        book.add_author(one_line(author))
    if info.premise.strip():
        book.add_metadata("DC", "description", one_line(info.premise))
    for subject in (info.genre, info.tone):
        if subject.strip():
            book.add_metadata("DC", "subject", one_line(subject))
    book.add_item(epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css", content=CSS))

    title_page = _page(one_line(info.title), "title.xhtml", title_page_html(info), info.language)
    documents = [title_page]
    chapters: list[tuple[str, list[str]]] = []
    for block in blocks:
        if isinstance(block, ChapterStart):
            chapters.append((one_line(block.title) or "—", []))
        elif isinstance(block, SceneBlock):
            if not chapters:
                chapters.append((one_line(info.title), []))
            chapters[-1][1].append(scene_html(block))
    for n, (title, scenes) in enumerate(chapters, start=1):
        body = f"<h2>{escape_html(title)}</h2>\n" + "".join(scenes)
        documents.append(_page(title, f"chapter-{n:04d}.xhtml", body, info.language))
    if summaries:
        documents.append(_page("Chapter summaries", "summaries.xhtml", summaries_html(summaries), info.language))
    for document in documents:
        book.add_item(document)
    book.toc = documents
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [title_page, "nav", *documents[1:]]
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()
