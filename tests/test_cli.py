"""The ``kahani`` command as users and the Docker image run it: settings and start-up errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest

# These tests start the bot as a process; CI runs them again from a fresh clone in a
# private (0700) directory (.ci/run), so none depends on where the checkout lives.
pytestmark = pytest.mark.filesystem

ROOT = Path(__file__).resolve().parents[1]
KAHANI = [sys.executable, "-m", "bot"]
SETTING_NAMES = (
    "DISCORD_TOKEN", "DATABASE_URL", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL",
    "LLM_CONTEXT_LENGTH", "KOKORO_URL", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL",
    "SHARD_COUNT", "SHARD_IDS", "LOG_LEVEL",
)


def kahani(*args: str, cwd: Path, env: dict[str, str] | None = None, prefix: Sequence[str] = (),
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run([*prefix, *KAHANI, *args], cwd=cwd, env=clean, capture_output=True, text=True,
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


def test_an_unreachable_postgresql_stops_start_up_with_one_line(tmp_path: Path, closed_port: int) -> None:
    env = {"DISCORD_TOKEN": "t", "DATABASE_URL": f"postgresql+asyncpg://kahani:hunter2@127.0.0.1:{closed_port}/kahani"}
    line = one_clear_line(kahani("run", cwd=tmp_path, env=env))
    assert f"cannot use the database postgresql+asyncpg://kahani:***@127.0.0.1:{closed_port}/kahani" in line
    assert "hunter2" not in line


# Root may write anywhere (CAP_DAC_OVERRIDE), so a 0555 directory alone proves nothing
# when the suite runs as root. Each way below makes the data directory unwritable for the
# bot while the bot still runs this checkout with this interpreter, wherever they live (a
# private home directory, a `mktemp -d` folder): the bot never runs as another user.
_PROBE = "import sys\ntry:\n    open(sys.argv[1], 'x').close()\nexcept OSError:\n    sys.exit(3)\n"
Way = Callable[[Path], AbstractContextManager[Sequence[str]]]  # yields the command prefix


@contextmanager
def _mode_0555(directory: Path, prefix: Sequence[str] = ()) -> Iterator[Sequence[str]]:
    directory.chmod(0o555)
    try:
        yield prefix
    finally:
        directory.chmod(0o755)


def _mode_0555_as_root_without_capabilities(directory: Path) -> AbstractContextManager[Sequence[str]]:
    # Root keeps only CAP_DAC_READ_SEARCH (it can still read the checkout and the
    # interpreter, wherever they are): the mode bits bind it like anyone else.
    return _mode_0555(directory, ("setpriv", "--inh-caps=-all", "--ambient-caps=-all",
                                  "--bounding-set=-all,+dac_read_search", "--"))


@contextmanager
def _immutable(directory: Path) -> Iterator[Sequence[str]]:
    # Not even root with every capability may add a file to an immutable directory.
    subprocess.run(["chattr", "+i", str(directory)], check=True, capture_output=True, timeout=30)
    try:
        yield ()
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True, capture_output=True, timeout=30)


def _ways() -> list[tuple[str, Way]]:
    if os.geteuid() != 0:
        return [("mode 0555", _mode_0555)]
    ways: list[tuple[str, Way]] = []
    if shutil.which("setpriv"):
        ways.append(("mode 0555 and setpriv without capabilities", _mode_0555_as_root_without_capabilities))
    if shutil.which("chattr"):
        ways.append(("chattr +i", _immutable))
    return ways


@contextmanager
def unwritable_for_the_bot(directory: Path) -> Iterator[Sequence[str]]:
    """Make ``directory`` unwritable for a process started with the yielded command
    prefix, checked by a probe that tries to create a file there. When no way works:
    skip, saying what was tried (in CI, fail: the test must prove something there)."""
    tried = []
    for name, way in _ways():
        with ExitStack() as stack:  # leaving it makes the directory writable again
            try:
                prefix = stack.enter_context(way(directory))
                probe = subprocess.run([*prefix, sys.executable, "-c", _PROBE, str(directory / ".probe")],
                                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.SubprocessError) as exc:
                tried.append(f"{name}: {exc}")
                continue
            if probe.returncode == 3:
                yield prefix
                return
        if probe.returncode == 0:
            (directory / ".probe").unlink()
            tried.append(f"{name}: the directory stayed writable")
        else:
            tried.append(f"{name}: the probe could not run ({probe.returncode}): {probe.stderr.strip()[-300:]}")
    reason = "cannot make a directory unwritable for the bot here; tried: " + ("; ".join(tried) or "nothing")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def test_a_read_only_data_directory_stops_start_up_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with unwritable_for_the_bot(data) as prefix:
        line = one_clear_line(kahani("run", cwd=tmp_path, env={"DISCORD_TOKEN": "t"}, prefix=prefix))
    assert f"the data directory {data.resolve()} is not writable" in line
    assert list(data.iterdir()) == []  # neither the probe nor kahani.db


def test_run_migrates_then_reports_an_unreachable_discord_in_one_line(tmp_path: Path, closed_port: int) -> None:
    env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": f"http://127.0.0.1:{closed_port}/api/v10"}
    line = one_clear_line(kahani("run", cwd=tmp_path, env=env))
    assert f"cannot reach Discord at http://127.0.0.1:{closed_port}/api/v10" in line
    assert (tmp_path / "data" / "kahani.db").is_file()  # migrations ran first


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kahani"
    assert script.is_file(), "pip install -e . should install the kahani command"
    # PYTHONPATH: this checkout's code, whichever checkout the venv was installed from.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([str(script), "--help"], env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0
    assert "run" in result.stdout and "migrate" in result.stdout
