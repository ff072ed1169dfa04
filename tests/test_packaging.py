"""What the Docker image runs, checked without Docker: the start command, the files it
copies, and a non-editable install that still finds the migrations."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_cmd() -> list[str]:
    [cmd] = re.findall(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE, flags=re.M)
    return json.loads(cmd)


def test_the_image_copies_every_package_the_project_ships() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY\s+(\w+)\s+\./\1\s*$", DOCKERFILE, flags=re.M))
    assert packages <= copied, packages - copied
    assert re.search(r"^USER\s+(?!root)\w+", DOCKERFILE, flags=re.M), "the image must not run as root"
    assert 'VOLUME ["/app/data"]' in DOCKERFILE


def test_the_image_start_command_migrates_then_starts_the_bot(tmp_path: Path) -> None:
    command = dockerfile_cmd()
    assert command[0] == "kahani"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_", "LLM_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DISCORD_TOKEN="token",
        DISCORD_API_BASE="http://127.0.0.1:9/api/v10",  # closed: the bot gets as far as logging in
    )
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert (tmp_path / "data" / "kahani.db").is_file(), result.stderr
    assert "logging in using static token" in result.stderr
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("kahani: cannot reach Discord at http://127.0.0.1:9")


def test_a_built_wheel_carries_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = tmp_path.glob("kahani-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert expected <= names
    assert {"migrations/env.py", "migrations/script.py.mako", "bot/cli.py", "core/models.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
