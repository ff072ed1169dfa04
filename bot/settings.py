"""Kahani's settings: environment variables and an optional ``.env`` file.

Only ``DISCORD_TOKEN`` is required to run the bot; everything else has a working default
(docs/architecture.md, "Running"). Names are flat, without a prefix, as the README lists them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.db import DatabaseError, parse_database_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/kahani.db"


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest or rest.startswith("/"):
        raise ValueError(f"must be a {'/'.join(schemes)} URL like {schemes[0]}://host:port (got {value!r})")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    discord_token: SecretStr | None = Field(None, description="the bot's token (required to run the bot)")
    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLite file or PostgreSQL server")
    llm_base_url: str = Field("http://localhost:1234/v1", description="an OpenAI-compatible server")
    llm_api_key: SecretStr | None = None
    llm_model: str | None = Field(None, description="default: the first model the server lists")
    llm_context_length: int | None = Field(None, ge=512, le=10_000_000)
    llm_connect_timeout: float = Field(10.0, gt=0, le=600)
    llm_first_token_timeout: float = Field(180.0, gt=0, le=3600)
    llm_idle_timeout: float = Field(60.0, gt=0, le=3600)
    # A whole scene, however slowly the model writes it; then the scene fails with Retry.
    llm_scene_timeout: float = Field(600.0, gt=0, le=7200)
    # Generations streaming at once across all processes (core/llmqueue.py); unset: 1 for
    # a server on this machine (LM Studio, Ollama, llama.cpp), 8 for a hosted one; 0: no limit.
    llm_max_concurrency: int | None = Field(None, ge=0, le=10_000)
    # Scenes one user, or one server, may start per minute; 0: no limit.
    generations_per_user_per_minute: int = Field(10, ge=0, le=10_000)
    generations_per_guild_per_minute: int = Field(0, ge=0, le=100_000)
    # Stories (and threads) one user may start per hour; 0: no limit.
    stories_per_user_per_hour: int = Field(10, ge=0, le=10_000)
    # Seconds between two exports of one user, and exports built at once per process.
    export_cooldown_seconds: int = Field(30, ge=0, le=86_400)
    exports_at_once: int = Field(2, ge=1, le=100)
    # Seconds between two narration files (Narrate in DMs) of one player, in every process.
    audio_file_cooldown_seconds: int = Field(10, ge=0, le=86_400)
    # How long a summary job stays with a process that stopped answering (it crashed)
    # before another process takes it over (core/summaries.py).
    summary_claim_seconds: float = Field(120.0, ge=1, le=3600)
    kokoro_url: str = Field("http://localhost:8880", description="Kokoro-FastAPI server")
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    shard_count: int | None = Field(None, ge=1, le=10_000)
    shard_ids: Annotated[list[int] | None, NoDecode] = None
    # Requests a second this process may send to Discord (scene edits, tallies), of the
    # bot's 50; unset: 47, or this process's shards' share of it (see discord_global_rate).
    discord_global_rate: int | None = Field(None, ge=2, le=50)
    # Prometheus /metrics and /healthz over HTTP (bot/metrics.py); off unless a port is set.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # "text": one readable line per event; "json": one JSON object per line (for a log
    # collector). Either way a generation's lines carry its story and interaction ids.
    log_format: Literal["text", "json"] = "text"
    # Tests only: skip discord.py's pauses meant for the real Discord (2 s wait for guilds
    # before on_ready, 5 s before each re-IDENTIFY), which the local stand-in does not need.
    kahani_test_fast_start: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("llm_base_url", "kokoro_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        checked = _check_url(value, ("http", "https"))
        if checked is None:
            raise ValueError("must not be empty")
        return checked.rstrip("/")

    @field_validator("discord_api_base")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        checked = _check_url(value, ("http", "https"))
        return checked.rstrip("/") if checked else None

    @field_validator("discord_gateway_url")
    @classmethod
    def _gateway(cls, value: str | None) -> str | None:
        return _check_url(value, ("ws", "wss"))

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        try:
            parse_database_url(value)
        except DatabaseError as exc:
            raise ValueError(exc.message.removeprefix("DATABASE_URL ")) from None
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return [int(part) for part in value.replace(" ", "").split(",") if part]
            except ValueError:
                raise ValueError(f"must be shard numbers separated by commas, like 0,1 (got {value!r})") from None
        return value

    @field_validator("discord_token", "llm_api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("SHARD_IDS needs SHARD_COUNT")
            bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if bad:
                raise ValueError(
                    f"SHARD_IDS {bad} are outside 0..{self.shard_count - 1} (SHARD_COUNT={self.shard_count})")
        return self


DISCORD_GLOBAL_RATE = 47  # of Discord's 50 requests/s per bot: a few left for the rest


def discord_global_rate(settings: Settings) -> int:
    """DISCORD_GLOBAL_RATE, or this process's share of it: Discord's global limit is per
    bot, across every process, so a process running 2 of 4 shards takes half."""
    if settings.discord_global_rate is not None:
        return settings.discord_global_rate
    if settings.shard_ids is not None and settings.shard_count:
        return max(2, DISCORD_GLOBAL_RATE * len(settings.shard_ids) // settings.shard_count)
    return DISCORD_GLOBAL_RATE


LOCAL_HOSTS = ("localhost", "127.", "[::1]", "0.0.0.0", "host.docker.internal")
HOSTED_CONCURRENCY = 8


def llm_concurrency(settings: Settings) -> int:
    """LLM_MAX_CONCURRENCY, or its default: 1 for a server on this machine (a local
    server writes one reply at a time), more for a hosted API."""
    if settings.llm_max_concurrency is not None:
        return settings.llm_max_concurrency
    host = settings.llm_base_url.partition("://")[2].split("/", 1)[0].rsplit("@", 1)[-1].lower()
    return 1 if host.startswith(LOCAL_HOSTS) else HOSTED_CONCURRENCY


class SettingsError(Exception):
    """Settings that cannot be used; ``str()`` is one line naming the setting."""


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad setting and what is wrong with it."""
    parts = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper() if item["loc"] else ""
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment and .env; SettingsError when invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def require_token(settings: Settings) -> str:
    if settings.discord_token is None:
        raise SettingsError(
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications "
            "and put its token in the environment or in .env (see README.md)"
        )
    return settings.discord_token.get_secret_value()
