"""Markdown and HTML files, written block by block as the scenes are read.

Neither writer keeps what it wrote: memory stays at one page of scenes whatever the
story's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from core.export.model import Block, ChapterStart, ChapterSummary, LineStart, SceneBlock, StoryInfo
from core.export.text import escape_html, escape_markdown, markdown_body, one_line, to_html


def subtitle(info: StoryInfo) -> str:
    return " · ".join(one_line(part) for part in (info.genre, info.tone) if part.strip())


def version_note(block: SceneBlock) -> str:
    """Whole-tree exports: which version of the scene the path follows."""
    return f"version {block.version} of {len(block.alternatives) + 1} ({block.kind})"


def branch_heading(line: LineStart) -> str:
    if line.number == 0:
        return "The story as it stands"
    return f"Branch {line.number}"


def branch_origin(line: LineStart) -> str:
    return f"Continues version {line.after_version} of scene {line.after_scene}."


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.whole_tree = False

    def write(self, text: str) -> None:
        self.out.write(text.encode("utf-8"))

    def block(self, block: Block) -> None:
        if isinstance(block, LineStart):
            self.line(block)
        elif isinstance(block, ChapterStart):
            self.chapter(block)
        else:
            self.scene(block)

    def line(self, line: LineStart) -> None:
        raise NotImplementedError

    def chapter(self, chapter: ChapterStart) -> None:
        raise NotImplementedError

    def scene(self, scene: SceneBlock) -> None:
        raise NotImplementedError


class MarkdownWriter(_Writer):
    """A CommonMark file: the model's Markdown kept as written, raw HTML escaped."""

    def begin(self, info: StoryInfo, *, whole_tree: bool = False) -> None:
        self.whole_tree = whole_tree
        parts = [f"# {escape_markdown(info.title)}\n"]
        if subtitle(info):
            parts.append(f"*{escape_markdown(subtitle(info))}*\n")
        if info.premise.strip():
            parts.append(f"{escape_markdown(info.premise)}\n")
        if info.authors:
            parts.append(f"Played by {escape_markdown(', '.join(info.authors))}\n")
        if whole_tree:
            parts.append("*Every version of every scene: the story as it stands first, then each branch.*\n")
        self.write("\n".join(parts) + "\n---\n\n")

    def line(self, line: LineStart) -> None:
        self.write(f"## {branch_heading(line)}\n\n")
        if line.number:
            self.write(f"*{branch_origin(line)}*\n\n")

    def chapter(self, chapter: ChapterStart) -> None:
        level = "###" if self.whole_tree else "##"
        self.write(f"{level} {escape_markdown(chapter.title)}\n\n")

    def scene(self, scene: SceneBlock) -> None:
        if self.whole_tree:
            self.write(f"#### Scene {scene.number}\n\n")
            if scene.alternatives:
                self.write(f"*{version_note(scene)}*\n\n")
        if scene.lead_in:
            self.write(f"→ *{escape_markdown(scene.lead_in)}*\n\n")
        self.write(markdown_body(scene.content) + "\n\n")
        for alt in scene.alternatives:
            lines = [f"**Version {alt.number}** ({alt.kind})", ""]
            if alt.lead_in:
                lines += [f"→ *{escape_markdown(alt.lead_in)}*", ""]
            lines += markdown_body(alt.content).split("\n")
            if alt.branch:
                lines += ["", f"*Continues in Branch {alt.branch}.*"]
            self.write("\n".join("> " + line if line else ">" for line in lines) + "\n\n")

    def end(self, summaries: Sequence[ChapterSummary]) -> None:
        if summaries:
            self.write("---\n\n## Chapter summaries\n\n")
            for summary in summaries:
                self.write(f"### {escape_markdown(summary.title)}\n\n{markdown_body(summary.text)}\n\n")


STYLE = """
body { font-family: Georgia, 'Noto Serif', serif; max-width: 40em; margin: 2em auto; padding: 0 1em;
       line-height: 1.6; color: #222; }
header { text-align: center; margin-bottom: 3em; }
.subtitle { font-style: italic; color: #555; }
.authors { color: #555; }
.lead-in { color: #777; font-style: italic; margin: 1.5em 0 0.5em; }
.version { color: #777; font-size: 0.9em; }
.alternative { border-left: 3px solid #ddd; margin: 1em 0 1.5em; padding: 0 0 0 1em; color: #444; }
h2 { margin-top: 3em; }
"""
# Defence in depth: even if markup slipped through, the page may run no script and load nothing.
CSP = "default-src 'none'; style-src 'unsafe-inline'"


class HtmlWriter(_Writer):
    """One self-contained HTML page; scene Markdown rendered, never raw HTML."""

    def begin(self, info: StoryInfo, *, whole_tree: bool = False) -> None:
        self.whole_tree = whole_tree
        lang = escape_html(info.language)
        self.write(
            f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape_html(info.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        )
        self.write(title_page_html(info, whole_tree=whole_tree))

    def line(self, line: LineStart) -> None:
        self.write(f'<h2 id="branch-{line.number}">{branch_heading(line)}</h2>\n')
        if line.number:
            self.write(f'<p class="version">{branch_origin(line)}</p>\n')

    def chapter(self, chapter: ChapterStart) -> None:
        tag = "h3" if self.whole_tree else "h2"
        self.write(f"<{tag}>{escape_html(chapter.title)}</{tag}>\n")

    def scene(self, scene: SceneBlock) -> None:
        self.write(scene_html(scene, whole_tree=self.whole_tree))

    def end(self, summaries: Sequence[ChapterSummary]) -> None:
        self.write(summaries_html(summaries))
        self.write("</body>\n</html>\n")


def title_page_html(info: StoryInfo, *, whole_tree: bool = False) -> str:
    parts = [f"<header>\n<h1>{escape_html(info.title)}</h1>\n"]
    if subtitle(info):
        parts.append(f'<p class="subtitle">{escape_html(subtitle(info))}</p>\n')
    if info.premise.strip():
        parts.append(f"<p>{escape_html(info.premise)}</p>\n")
    if info.authors:
        parts.append(f'<p class="authors">Played by {escape_html(", ".join(info.authors))}</p>\n')
    if whole_tree:
        parts.append('<p class="version">Every version of every scene: the story as it stands first, '
                     "then each branch.</p>\n")
    return "".join(parts) + "</header>\n"


def scene_html(scene: SceneBlock, *, whole_tree: bool = False) -> str:
    parts = [f'<section class="scene" id="scene-{scene.scene_id}">\n']
    if whole_tree:
        parts.append(f"<h4>Scene {scene.number}</h4>\n")
        if scene.alternatives:
            parts.append(f'<p class="version">{version_note(scene)}</p>\n')
    if scene.lead_in:
        parts.append(f'<p class="lead-in">→ {escape_html(scene.lead_in)}</p>\n')
    parts.append(to_html(scene.content))
    for alt in scene.alternatives:
        parts.append(f'<div class="alternative">\n<p class="version">Version {alt.number} ({alt.kind})</p>\n')
        if alt.lead_in:
            parts.append(f'<p class="lead-in">→ {escape_html(alt.lead_in)}</p>\n')
        parts.append(to_html(alt.content))
        if alt.branch:
            parts.append(f'<p class="version"><a href="#branch-{alt.branch}">Continues in Branch {alt.branch}</a>'
                         "</p>\n")
        parts.append("</div>\n")
    parts.append("</section>\n")
    return "".join(parts)


def summaries_html(summaries: Sequence[ChapterSummary]) -> str:
    if not summaries:
        return ""
    parts = ['<section class="summaries">\n<h2>Chapter summaries</h2>\n']
    for summary in summaries:
        parts.append(f"<h3>{escape_html(summary.title)}</h3>\n{to_html(summary.text)}")
    return "".join(parts) + "</section>\n"
