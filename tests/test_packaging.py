"""What the Docker image runs, checked without Docker: the start command, the files it
copies, and a non-editable install that still finds the migrations."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import bot
import cogs
import core
import migrations

# These tests start programs and read the checkout; CI runs them again from a fresh clone
# in a private (0700) directory (.ci/run), so none depends on where the checkout lives.
pytestmark = pytest.mark.filesystem

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_cmd() -> list[str]:
    [cmd] = re.findall(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE, flags=re.M)
    return json.loads(cmd)


def test_the_tests_import_this_checkout() -> None:
    # The venv's editable install points at the checkout it was made from; the tests
    # (and, through PYTHONPATH, the programs they start) must use this one.
    for package in (bot, cogs, core, migrations):
        assert package.__file__ and Path(package.__file__).resolve().parent == ROOT / package.__name__, package.__file__


def test_the_image_copies_every_package_the_project_ships() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY\s+(\w+)\s+\./\1\s*$", DOCKERFILE, flags=re.M))
    assert packages <= copied, packages - copied
    assert re.search(r"^USER\s+(?!root)\w+", DOCKERFILE, flags=re.M), "the image must not run as root"
    assert 'VOLUME ["/app/data"]' in DOCKERFILE


def test_the_image_start_command_migrates_then_starts_the_bot(tmp_path: Path, closed_port: int) -> None:
    command = dockerfile_cmd()
    assert command[0] == "kahani"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_", "LLM_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),  # this checkout's code, whichever checkout the venv was installed from
        DISCORD_TOKEN="token",
        DISCORD_API_BASE=f"http://127.0.0.1:{closed_port}/api/v10",  # closed: the bot gets as far as logging in
    )
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert (tmp_path / "data" / "kahani.db").is_file(), result.stderr
    assert "logging in using static token" in result.stderr
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"kahani: cannot reach Discord at http://127.0.0.1:{closed_port}/")


def test_a_built_wheel_carries_the_migrations(tmp_path: Path) -> None:
    # Built from a copy: the checkout may be read-only, and a build/ left in it by an
    # earlier build would put files into the wheel that the checkout no longer has.
    def not_sources(directory: str, names: list[str]) -> set[str]:
        top = {".git", ".venv", "venv", "build", "dist", "data", ".pytest_cache"} if Path(directory) == ROOT else set()
        return {name for name in names if name in top or name == "__pycache__" or name.endswith(".egg-info")}

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=not_sources)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = (tmp_path / "wheels").glob("kahani-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert expected <= names
    assert {"migrations/env.py", "migrations/script.py.mako", "bot/cli.py", "core/models.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
