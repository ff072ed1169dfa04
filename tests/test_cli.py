"""The ``kahani`` command as users and the Docker image run it: settings and start-up errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KAHANI = [sys.executable, "-m", "bot"]
SETTING_NAMES = (
    "DISCORD_TOKEN", "DATABASE_URL", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL",
    "LLM_CONTEXT_LENGTH", "KOKORO_URL", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL",
    "SHARD_COUNT", "SHARD_IDS", "LOG_LEVEL",
)


def kahani(*args: str, cwd: Path, env: dict[str, str] | None = None, user: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    command = [*KAHANI, *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, env=clean, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("kahani: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_missing_token_stops_start_up_with_one_line(tmp_path: Path) -> None:
    line = one_clear_line(kahani(cwd=tmp_path))
    assert "DISCORD_TOKEN is not set" in line
    assert not (tmp_path / "data").exists()  # nothing was started


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LLM_BASE_URL", "localhost:1234", "LLM_BASE_URL: must be a http/https URL"),
        ("KOKORO_URL", "ftp://kokoro", "KOKORO_URL: must be a http/https URL"),
        ("LLM_CONTEXT_LENGTH", "lots", "LLM_CONTEXT_LENGTH"),
        ("LLM_CONTEXT_LENGTH", "10", "LLM_CONTEXT_LENGTH"),
        ("SHARD_COUNT", "0", "SHARD_COUNT"),
        ("SHARD_IDS", "0,x", "SHARD_IDS: must be shard numbers"),
        ("DATABASE_URL", "mysql://db/kahani", "DATABASE_URL: must start with"),
        ("DISCORD_GATEWAY_URL", "http://127.0.0.1:1/", "DISCORD_GATEWAY_URL: must be a ws/wss URL"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_an_invalid_setting_is_named_in_one_line(tmp_path: Path, name: str, value: str, expected: str) -> None:
    line = one_clear_line(kahani(cwd=tmp_path, env={"DISCORD_TOKEN": "t", name: value}))
    assert line.startswith("kahani: invalid setting ")
    assert expected in line


def test_shard_ids_need_a_shard_count_that_holds_them(tmp_path: Path) -> None:
    line = one_clear_line(kahani(cwd=tmp_path, env={"DISCORD_TOKEN": "t", "SHARD_IDS": "2,3", "SHARD_COUNT": "3"}))
    assert "SHARD_IDS [3] are outside 0..2" in line


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite+aiosqlite:///store/story.db\nLOG_LEVEL=warning\n")
    result = kahani("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "store" / "story.db").is_file()


def test_migrate_creates_the_default_data_directory(tmp_path: Path) -> None:
    result = kahani("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "kahani.db").is_file()
    again = kahani("migrate", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_an_unreachable_postgresql_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = {"DISCORD_TOKEN": "t", "DATABASE_URL": "postgresql+asyncpg://kahani:hunter2@127.0.0.1:9/kahani"}
    line = one_clear_line(kahani("run", cwd=tmp_path, env=env))
    assert "cannot use the database postgresql+asyncpg://kahani:***@127.0.0.1:9/kahani" in line
    assert "hunter2" not in line


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the bot as an unprivileged user")
def test_a_read_only_data_directory_stops_start_up_with_one_line(tmp_path: Path) -> None:
    # Root may write anywhere: run the bot as "nobody" in a directory it cannot write
    # (pytest's tmp_path is private to root, so use a world-readable one).
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        work = Path(directory)
        (work / "data").mkdir()
        for path in (work, work / "data"):
            path.chmod(0o755)
        line = one_clear_line(kahani("run", cwd=work, env={"DISCORD_TOKEN": "t"}, user="65534"))
        assert f"the data directory {work / 'data'} is not writable" in line
        assert not (work / "data" / "kahani.db").exists()


def test_run_migrates_then_reports_an_unreachable_discord_in_one_line(tmp_path: Path) -> None:
    env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10"}
    line = one_clear_line(kahani("run", cwd=tmp_path, env=env))
    assert "cannot reach Discord at http://127.0.0.1:9/api/v10" in line
    assert (tmp_path / "data" / "kahani.db").is_file()  # migrations ran first


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kahani"
    assert script.is_file(), "pip install -e . should install the kahani command"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "run" in result.stdout and "migrate" in result.stdout
