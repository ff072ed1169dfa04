"""The ``kahani`` command (also ``python -m bot``): run the bot, migrate the database, export a story.

Start-up errors (a missing token, an invalid setting, an unusable database) end the
process with one clear line on stderr and exit code 2 — no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from bot.settings import Settings, SettingsError, load_settings
from core import logctx
from core.errors import KahaniError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kahani", description="Kahani: an AI storytelling bot for Discord."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="migrate the database and run the Discord bot (the default)")
    sub.add_parser("migrate", help="bring the database schema up to date, then exit")
    play = sub.add_parser("play", help="play a story in the terminal (no Discord needed)")
    play.add_argument("--story", type=int, metavar="ID", help="resume this story")
    export = sub.add_parser("export", help="export a story as Markdown, HTML, EPUB or PDF")
    export.add_argument("story_id", type=int, metavar="STORY_ID")
    export.add_argument("--format", "-f", default="markdown", choices=["markdown", "html", "epub", "pdf"])
    export.add_argument("--output", "-o", type=Path, metavar="FILE",
                        help="where to write (a file or a directory; default: standard output)")
    export.add_argument("--whole-tree", action="store_true",
                        help="every version and branch, not only the story as it stands (Markdown/HTML)")
    export.add_argument("--summaries", action="store_true", help="add the chapter summaries at the end")
    return parser


def configure_logging(settings: Settings, *, quiet: bool = False) -> None:
    """Log to stderr; ``quiet`` (the console game) shows warnings only unless LOG_LEVEL is set."""
    level = "WARNING" if quiet and "log_level" not in settings.model_fields_set else settings.log_level
    logging.basicConfig(level=level, handlers=[logctx.handler(sys.stderr, json_lines=settings.log_format == "json")])
    if settings.log_level != "DEBUG":
        # Alembic announces each of its plugins at INFO on every start.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


async def _migrate(settings: Settings) -> None:
    from core import db as dbmod

    await dbmod.upgrade(settings.database_url)


async def _play(settings: Settings, story_id: int | None) -> int:
    from bot.app import make_llm_client
    from core import db as dbmod
    from core.console import Console
    from core.db import Database
    from core.engine import StoryEngine

    await dbmod.upgrade(settings.database_url)
    database = Database.from_url(settings.database_url)
    llm = make_llm_client(settings)
    try:
        return await Console(StoryEngine(database, llm)).run(story_id)
    finally:
        await llm.aclose()
        await database.dispose()


async def _export(settings: Settings, args: argparse.Namespace) -> None:
    from core import db as dbmod
    from core.db import Database
    from core.export import export_story, human_size

    await dbmod.upgrade(settings.database_url)
    database = Database.from_url(settings.database_url)
    try:
        if args.output is None:
            result = await export_story(database, args.story_id, args.format, sys.stdout.buffer,
                                        whole_tree=args.whole_tree, summaries=args.summaries)
            sys.stdout.flush()
            where = "standard output"
        else:
            # Written beside the target and renamed at the end: a failed export leaves no half file.
            directory = args.output if args.output.is_dir() else args.output.parent
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".kahani-export-", delete=False) as tmp:
                try:
                    result = await export_story(database, args.story_id, args.format, tmp,
                                                whole_tree=args.whole_tree, summaries=args.summaries)
                except BaseException:
                    Path(tmp.name).unlink(missing_ok=True)
                    raise
            target = directory / result.filename if args.output.is_dir() else args.output
            os.replace(tmp.name, target)
            where = str(target)
        print(f"kahani: wrote {result.scenes} scenes of “{result.title}” as {result.format.label} "
              f"({human_size(result.size)}) to {where}", file=sys.stderr)
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings()
        configure_logging(settings, quiet=command in ("play", "export"))
        if command == "migrate":
            asyncio.run(_migrate(settings))
            print("kahani: database is up to date", file=sys.stderr)
        elif command == "play":
            return asyncio.run(_play(settings, args.story))
        elif command == "export":
            asyncio.run(_export(settings, args))
        else:
            from bot.app import run_bot

            asyncio.run(run_bot(settings))
    except (SettingsError, KahaniError) as exc:
        print(f"kahani: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
