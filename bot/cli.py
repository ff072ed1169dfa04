"""The ``kahani`` command (also ``python -m bot``): run the bot, migrate the database.

Start-up errors (a missing token, an invalid setting, an unusable database) end the
process with one clear line on stderr and exit code 2 — no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.settings import Settings, SettingsError, load_settings
from core.errors import KahaniError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kahani", description="Kahani: an AI storytelling bot for Discord."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="migrate the database and run the Discord bot (the default)")
    sub.add_parser("migrate", help="bring the database schema up to date, then exit")
    return parser


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "DEBUG":
        # Alembic announces each of its plugins at INFO on every start.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


async def _migrate(settings: Settings) -> None:
    from core import db as dbmod

    await dbmod.upgrade(settings.database_url)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings()
        configure_logging(settings)
        if command == "migrate":
            asyncio.run(_migrate(settings))
            print("kahani: database is up to date", file=sys.stderr)
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
