"""Story export (core/export) on SQLite and PostgreSQL: Markdown, HTML, EPUB and PDF of a
3-chapter story with branches; the whole tree; safety; limits; ``kahani export``."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from ebooklib import epub
from pypdf import PdfReader
from sqlalchemy import event

import core.export as export
from core import repository as repo
from core.db import Database
from core.export import ExportError, ExportFormat, export_story
from core.export import read as export_read
from core.models import InstructionKind, MemberStatus, VariantKind

ROOT = Path(__file__).resolve().parents[1]

# One word per scene, so order can be checked in any format (no hyphens: PDF lines may break there).
PATH_MARKERS = ["Aardvark", "Bumblebee", "Chrysanthemum", "Dragonfly", "Elderberry", "Flamingo"]
INACTIVE_MARKERS = ["Gooseberry", "Hummingbird", "Iguana"]
CJK = "灯台の光が消えた"
ACCENTS = "Le café est fermé; naïve façade, Ωmega, Привет"
SCRIPT = "<script>alert('pwned')</script>"


@dataclass
class Built:
    story_id: int
    chapter_titles: list[str]


async def build_story(db: Database, owner_discord_id: int = 1001) -> Built:
    """Three chapters, six scenes on the active path, plus an inactive regenerated
    version, an inactive branch version and a scene that continues that branch."""
    async with db.transaction() as s:
        asha = await repo.get_or_create_user(s, owner_discord_id, "Asha")
        bjorn = await repo.get_or_create_user(s, 1002, "Bjørn")
        kim = await repo.get_or_create_user(s, 1003, "Kim")
        story = await repo.create_story(
            s, asha, "The Lighthouse 灯台", genre="mystery", tone="eerie",
            premise="The keeper has vanished. Où est-il?", mode="group",
        )
        await repo.set_member(s, story.id, bjorn.id, MemberStatus.JOINED)
        await repo.set_member(s, story.id, kim.id, MemberStatus.INVITED)
        sid = story.id

        async def scene(parent: int | None, text: str, choice: str = "") -> int:
            kind = InstructionKind.CHOICE if choice else InstructionKind.OPENING
            _, variant = await repo.add_scene(s, sid, parent, text, [repo.ChoiceSpec("Go on")],
                                              instruction_kind=kind, instruction=choice)
            return variant.id

        v1 = await scene(None, f"{PATH_MARKERS[0]} opens the door. *Salt wind* fills the **stair**.")
        v2 = await scene(v1, f"{PATH_MARKERS[1]} climbs. {ACCENTS}.", "Climb the stair")
        scene2 = (await repo.get_variant(s, v2)).scene_id
        await repo.add_variant(s, scene2, VariantKind.REGENERATE, f"{INACTIVE_MARKERS[0]} finds it flooded.",
                               activate=False)
        await repo.open_chapter(s, sid, v2, summary="They climbed to the lamp room.", title="The Storm")
        v3 = await scene(v2, f"{PATH_MARKERS[2]}. {CJK}。雨が降っている。", "Light the lantern")
        v4 = await scene(v3, f"{PATH_MARKERS[3]} runs. {SCRIPT} <img src=x onerror=alert(1)>\n\n"
                             "- a *list*\n- of things", "Run")
        scene4 = (await repo.get_variant(s, v4)).scene_id
        branch = await repo.add_variant(s, scene4, VariantKind.BRANCH, f"{INACTIVE_MARKERS[1]} hides instead.",
                                        instruction="Hide in the cellar")
        await scene(branch.id, f"{INACTIVE_MARKERS[2]} waits in the dark.", "Wait")
        await repo.set_active_variant(s, v4)  # back to the path; the branch keeps its scene
        await repo.open_chapter(s, sid, v4, summary="The storm broke the lantern.", title="Dawn")
        v5 = await scene(v4, f"{PATH_MARKERS[4]} watches the sun rise.", "Wait for dawn")
        await scene(v5, f"{PATH_MARKERS[5]}: the end.", "Go home")
    return Built(sid, ["Chapter 1", "The Storm", "Dawn"])


async def exported(db: Database, story_id: int, fmt: str, **options: bool) -> tuple[bytes, export.ExportResult]:
    out = io.BytesIO()
    result = await export_story(db, story_id, fmt, out, **options)
    assert result.size == len(out.getvalue())
    return out.getvalue(), result


def in_order(text: str, words: list[str]) -> bool:
    positions = [text.find(w) for w in words]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


class Tags(HTMLParser):
    """Every start tag and attribute name of an (X)HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)


def tags_of(document: str) -> Tags:
    parser = Tags()
    parser.feed(document)
    return parser


def assert_no_injected_markup(document: str) -> None:
    found = tags_of(document)
    assert "script" not in found.tags and "img" not in found.tags and "iframe" not in found.tags
    assert not [a for a in found.attributes if a.startswith("on")]


# --- Markdown -------------------------------------------------------------------------


async def test_markdown_is_the_active_path_with_title_page_chapters_and_choices(db: Database) -> None:
    built = await build_story(db)
    data, result = await exported(db, built.story_id, "markdown")
    text = data.decode()
    assert result.filename == "the-lighthouse-灯台.md" and result.scenes == 6
    assert text.startswith("# The Lighthouse 灯台\n")
    assert "*mystery · eerie*" in text and "The keeper has vanished. Où est-il?" in text
    assert "Played by Asha, Bjørn" in text and "Kim" not in text  # invited, never joined
    assert in_order(text, [f"## {t}" for t in built.chapter_titles])
    assert in_order(text, PATH_MARKERS)
    assert not any(m in text for m in INACTIVE_MARKERS)
    assert "→ *Climb the stair*" in text and "→ *Light the lantern*" in text
    assert in_order(text, [PATH_MARKERS[0], "→ *Climb the stair*", PATH_MARKERS[1]])
    assert "*Salt wind* fills the **stair**" in text  # the model's Markdown is kept as Markdown
    assert ACCENTS in text and CJK in text
    assert not re.search(r"(?<!\\)<script", text) and "\\<script>" in text  # a viewer shows it, never runs it
    assert "Chapter summaries" not in text


async def test_summaries_appendix_is_optional(db: Database) -> None:
    built = await build_story(db)
    text = (await exported(db, built.story_id, "markdown", summaries=True))[0].decode()
    assert in_order(text, [PATH_MARKERS[5], "## Chapter summaries", "### Chapter 1",
                           "They climbed to the lamp room.", "### The Storm", "The storm broke the lantern."])


# --- HTML -----------------------------------------------------------------------------


async def test_html_renders_markdown_and_never_the_models_markup(db: Database) -> None:
    built = await build_story(db)
    page = (await exported(db, built.story_id, "html", summaries=True))[0].decode()
    assert_no_injected_markup(page)
    assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in page  # shown as text
    assert "<em>Salt wind</em>" in page and "<strong>stair</strong>" in page
    assert "<li>a <em>list</em></li>" in page and "*" not in re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    assert '<html lang="en">' in page and "Content-Security-Policy" in page
    assert in_order(page, PATH_MARKERS) and not any(m in page for m in INACTIVE_MARKERS)
    assert in_order(page, ["<h2>Chapter 1</h2>", "<h2>The Storm</h2>", "<h2>Dawn</h2>", "Chapter summaries"])
    assert '<p class="lead-in">→ Run</p>' in page
    assert ACCENTS in page and CJK in page


async def test_whole_tree_has_every_version_and_branch(db: Database) -> None:
    built = await build_story(db)
    text = (await exported(db, built.story_id, "markdown", whole_tree=True))[0].decode()
    assert in_order(text, ["## The story as it stands", *PATH_MARKERS, "## Branch 1", INACTIVE_MARKERS[2]])
    assert INACTIVE_MARKERS[0] in text and INACTIVE_MARKERS[1] in text
    assert "> **Version 2** (regenerate)" in text and "> *Continues in Branch 1.*" in text
    assert "*Continues version 2 of scene 4.*" in text
    assert "\\<script>" in text and not re.search(r"(?<!\\)<script", text)

    page, result = await exported(db, built.story_id, "html", whole_tree=True)
    html_text = page.decode()
    assert result.filename.endswith("-tree.html")
    assert_no_injected_markup(html_text)
    assert all(m in html_text for m in PATH_MARKERS + INACTIVE_MARKERS)
    assert '<a href="#branch-1">' in html_text and '<h2 id="branch-1">' in html_text


# --- EPUB -----------------------------------------------------------------------------


async def test_epub_is_a_valid_book_with_every_chapter(db: Database, tmp_path: Path) -> None:
    built = await build_story(db)
    data, result = await exported(db, built.story_id, "epub", summaries=True)
    assert result.filename.endswith(".epub")
    archive = zipfile.ZipFile(io.BytesIO(data))
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
    assert archive.read("mimetype") == b"application/epub+zip"
    container = archive.read("META-INF/container.xml").decode()
    opf_path = re.search(r'full-path="([^"]+)"', container).group(1)
    opf = archive.read(opf_path).decode()
    assert 'properties="nav"' in opf and "<dc:language>en</dc:language>" in opf
    assert "The Lighthouse 灯台" in opf and "Bjørn" in opf and 'version="3.0"' in opf

    path = tmp_path / result.filename
    path.write_bytes(data)
    book = epub.read_epub(str(path))
    assert book.get_metadata("DC", "title")[0][0] == "The Lighthouse 灯台"
    assert [c[0] for c in book.get_metadata("DC", "creator")] == ["Asha", "Bjørn"]
    documents = [item for item in book.get_items_of_type(9)]  # ebooklib.ITEM_DOCUMENT
    assert any(isinstance(item, epub.EpubNav) for item in documents)
    text = "".join(item.get_content().decode() for item in documents
                   if not isinstance(item, epub.EpubNav))
    assert in_order(text, [f"<h2>{t}</h2>" for t in built.chapter_titles])
    assert in_order(text, PATH_MARKERS) and not any(m in text for m in INACTIVE_MARKERS)
    assert CJK in text and ACCENTS in text and "<em>Salt wind</em>" in text
    assert_no_injected_markup(text)
    toc = [link.title for link in book.toc]
    assert toc[1:] == [*built.chapter_titles, "Chapter summaries"]


# --- PDF ------------------------------------------------------------------------------


async def test_pdf_holds_the_active_path_in_order_and_non_latin_text(db: Database) -> None:
    built = await build_story(db)
    data, result = await exported(db, built.story_id, "pdf")
    assert data.startswith(b"%PDF-") and result.filename.endswith(".pdf")
    reader = PdfReader(io.BytesIO(data))
    assert 4 <= len(reader.pages) <= 8  # title page + 3 chapters, each on its own page
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert in_order(text, PATH_MARKERS)
    assert not any(m in text for m in INACTIVE_MARKERS)
    assert in_order(text, [PATH_MARKERS[0], "→ Climb the stair", PATH_MARKERS[1]])
    # pypdf puts a NUL before each glyph of the CID-keyed CJK font (pdftotext does not).
    squeezed = re.sub(r"[\s\x00]+", "", text)
    assert CJK in squeezed and re.sub(r"\s+", "", ACCENTS) in squeezed
    assert "Salt wind fills the stair" in text and "**" not in text  # rendered, not raw
    assert "<script>alert('pwned')</script>" in text  # the model's text, shown as text
    assert [o.title for o in reader.outline] == built.chapter_titles
    assert reader.metadata.title == "The Lighthouse 灯台"


def test_pdf_line_breaking_shortcut_changes_nothing_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from fpdf import line_break

    from core.export.model import ChapterStart, SceneBlock, StoryInfo
    from core.export.pdf import build_pdf

    info = StoryInfo(1, "Book", "", "", "", "", ("Asha",), "en", 40)
    paragraph = f"The keeper *hesitated*, **listening**. {ACCENTS} {CJK}。 " * 6
    blocks = [ChapterStart(1, "One"), *(SceneBlock(n, n + 1, "Go on", f"{n}. {paragraph}\n\n- a\n- b")
                                        for n in range(40))]

    def pages(data: bytes) -> list[str]:
        return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]

    fast = pages(build_pdf(info, blocks, []))
    monkeypatch.setattr(line_break.CurrentLine, "width", line_break.CurrentLine.width.fget.original)
    assert pages(build_pdf(info, blocks, [])) == fast


# --- limits and refusals --------------------------------------------------------------


async def test_books_over_the_limit_are_refused_with_a_pointer_to_markdown(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = await build_story(db)
    monkeypatch.setattr(export, "MAX_BOOK_SCENES", 5)
    for fmt in ("epub", "pdf"):
        with pytest.raises(ExportError, match="6 scenes; .* stop at 5. Export it as Markdown"):
            await exported(db, built.story_id, fmt)
    assert (await exported(db, built.story_id, "markdown"))[1].scenes == 6
    with pytest.raises(ExportError, match="Markdown or HTML only"):
        await exported(db, built.story_id, "pdf", whole_tree=True)


async def test_a_story_without_scenes_has_nothing_to_export(db: Database) -> None:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story_id = (await repo.create_story(s, owner, "Empty")).id
    with pytest.raises(ExportError, match="no scene yet"):
        await exported(db, story_id, "markdown")


async def test_markdown_and_html_read_the_path_in_pages(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    built = await build_story(db)
    whole = (await exported(db, built.story_id, "html"))[0]
    monkeypatch.setattr(export_read, "PAGE", 4)
    text_reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "scene_variants.content" in statement:
            text_reads.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        paged = (await exported(db, built.story_id, "html"))[0]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert paged == whole
    assert len(text_reads) == 2  # 6 scenes, 4 per page


def test_a_file_too_big_for_the_channel_names_a_smaller_option() -> None:
    result = export.ExportResult("x.pdf", ExportFormat.PDF, 10, 12 * 1024 * 1024, "X")
    with pytest.raises(ExportError) as caught:
        export.check_fits(result, 10 * 1024 * 1024, whole_tree=False, story_id=7)
    assert caught.value.message == ("The PDF file is 12.0 MB, but files here can be at most 10.0 MB. "
                                    "Try `format:markdown`: it is the smallest.")
    export.check_fits(result, 25 * 1024 * 1024, whole_tree=False, story_id=7)
    assert "without `whole_tree`" in export.smaller_option(ExportFormat.HTML, whole_tree=True, story_id=7)
    assert "kahani export 7" in export.smaller_option(ExportFormat.MARKDOWN, whole_tree=False, story_id=7)


def test_file_names_are_safe() -> None:
    assert export.filename_for("The Lighthouse", ExportFormat.EPUB) == "the-lighthouse.epub"
    assert export.filename_for("../../etc/passwd", ExportFormat.PDF) == "etc-passwd.pdf"
    assert export.filename_for("???", ExportFormat.MARKDOWN) == "story.md"
    assert export.filename_for("Café 灯台", ExportFormat.HTML, whole_tree=True) == "café-灯台-tree.html"


# --- kahani export ----------------------------------------------------------------------


async def run_cli(db_path: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "LLM_", "DATABASE_"))}
    env.update(DATABASE_URL=f"sqlite+aiosqlite:///{db_path}", PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "export", *args, cwd=db_path.parent, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.filesystem  # starts ``python -m bot export`` from the checkout
async def test_kahani_export_writes_the_file(sqlite_template: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "kahani.db"
    db_path.write_bytes(sqlite_template.read_bytes())
    db = Database.from_url(f"sqlite+aiosqlite:///{db_path}")
    try:
        built = await build_story(db)
    finally:
        await db.dispose()
    target = tmp_path / "book.epub"
    code, out, err = await run_cli(db_path, str(built.story_id), "--format", "epub", "-o", str(target))
    assert code == 0, err
    assert epub.read_epub(str(target)).get_metadata("DC", "title")[0][0] == "The Lighthouse 灯台"
    assert f"{target}" in err and "6 scenes" in err

    code, out, err = await run_cli(db_path, str(built.story_id), "--whole-tree")  # Markdown to stdout
    assert code == 0, err
    assert in_order(out, PATH_MARKERS) and INACTIVE_MARKERS[2] in out

    code, out, err = await run_cli(db_path, "999", "--format", "pdf", "-o", str(tmp_path / "x.pdf"))
    assert code == 2 and "Traceback" not in err
    assert err.strip() == "kahani: Story #999 does not exist (it may have been deleted)."
    assert not (tmp_path / "x.pdf").exists()


async def test_links_and_images_the_model_wrote_never_become_live_in_a_pdf_or_markdown(db: Database) -> None:
    """A book is read offline: no clickable link in the PDF, and a Markdown viewer must
    not fetch an image (a tracking pixel) from a scene."""
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, "Links", mode="solo")
        await repo.add_scene(s, story.id, None, "See [the map](https://tracker.example/map) and "
                                                "![pixel](https://tracker.example/p.png) by the door.")
    pdf, _ = await exported(db, story.id, "pdf")
    assert b"/URI" not in pdf and b"tracker.example" not in pdf.split(b"stream")[0]
    text = " ".join("\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "[the map](https://tracker.example/map)" in text  # shown as written, not a link
    markdown, _ = await exported(db, story.id, "markdown")
    assert "![pixel]" not in markdown.decode() and "!\\[pixel](https://tracker.example/p.png)" in markdown.decode()
