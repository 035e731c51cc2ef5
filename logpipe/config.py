"""One Settings object for every command: defaults < .env < LOGPIPE_* environment < CLI flags."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from logpipe.errors import ConfigError

DEFAULT_INFLUX_URL = "http://127.0.0.1:8086"
DEFAULT_DATABASE = "logpipe"
MEASUREMENT = "requests"
DAILY_MEASUREMENT = "requests_daily"
"""Exact statistics of closed days per customer, kept by `logpipe rollup` (see rollup.py)."""


def default_state_dir() -> Path:
    """Where offsets, dead letters and child logs live (e.g. ~/.local/state/logpipe)."""
    return Path(platformdirs.user_state_dir("logpipe"))


def default_data_dir() -> Path:
    """Where `run-all` keeps its private InfluxDB between runs."""
    return Path(platformdirs.user_data_dir("logpipe"))


MASK = "***"
"""What a secret is shown as."""
_SECRET_PARAMETERS = frozenset(
    {"p", "password", "pass", "pwd", "token", "access_token", "api_key", "apikey", "secret"}
)
"""Query parameters whose value is a secret (InfluxDB 1.x reads `u` and `p`)."""


def redact_url(url: str) -> str:
    """`url` as it may be shown or logged: the password of its user info and the values of
    secret query parameters (`p=`, `token=`, `password=`, …) become ***; scheme, user, host,
    port, path and the other parameters stay as written.

    Parsed by hand after RFC 3986 (the user info ends at the last `@` before the first `/`,
    `?` or `#`), so it never raises. A password with an unescaped `/`, `?` or `#` would be
    read as the host's port or path and shown: the `influx_url` setting refuses those."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    ends = [index for index in map(rest.find, "/?#") if index >= 0]
    authority, tail = rest[: min(ends, default=len(rest))], rest[min(ends, default=len(rest)) :]
    user_info, at, host = authority.rpartition("@")
    if ":" in user_info:
        user_info = f"{user_info.split(':', 1)[0]}:{MASK}"
    tail, hash_sign, fragment = tail.partition("#")
    path, question_mark, query = tail.partition("?")
    if question_mark:
        query = "&".join(map(_redact_parameter, query.split("&")))
    return (
        f"{scheme}{separator}{user_info}{at}{host}{path}{question_mark}{query}"
        f"{hash_sign}{fragment}"
    )


def _redact_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    return f"{name}={MASK}" if equals and name.lower() in _SECRET_PARAMETERS else parameter


ENV_PREFIX = "LOGPIPE_"
ENV_FILE = ".env"


def env_variable(name: str) -> str:
    """The environment variable of the setting `name`."""
    return f"{ENV_PREFIX}{name.upper()}"


class Settings(BaseSettings):
    """Every setting logpipe reads. Environment names are LOGPIPE_ + the field name in capitals."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore", validate_default=True
    )

    influx_url: str = DEFAULT_INFLUX_URL
    influx_database: str = DEFAULT_DATABASE
    influx_token: SecretStr | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_timeout: float = Field(10.0, gt=0, description="seconds per InfluxDB request")

    state_dir: Path = Field(default_factory=default_state_dir)
    batch_size: int = Field(5000, ge=1, le=100_000, description="points per write")
    flush_interval: float = Field(0.2, gt=0, description="seconds a point may wait in a batch")
    snapshot_interval: float = Field(1.0, gt=0, description="seconds between recovery snapshots")
    workers: int = Field(1, ge=1, le=64)
    format: str = Field("text", description="input format: text, json or logfmt")
    keys: str = Field("", description='JSON/logfmt keys that differ, e.g. "timestamp=ts"')
    timezone: str = Field("UTC", description="zone of naive timestamps in the log")
    rotate_wait: float = Field(
        5.0, ge=0, description="seconds a renamed-away file is still read after its last write"
    )
    read_from: Literal["beginning", "end"] = Field(
        "beginning", description="where to start files there at the first run: beginning or end"
    )
    rollup_interval: float = Field(
        15.0, ge=0, description="seconds between rollup builds while following; 0 = none"
    )

    failure_status: int = Field(500, ge=100, le=600, description="status >= this counts as failed")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    api_keys: SecretStr | None = Field(
        None, description='"key=*" (admin) or "key=customer_id", comma-separated; off if unset'
    )
    cache_ttl: float = Field(5.0, ge=0, description="seconds a stats answer is reused; 0 = off")
    history_cache_ttl: float = Field(
        300.0, ge=0, description="seconds statistics of days before today (UTC) are reused"
    )
    query_timeout: float = Field(5.0, gt=0, description="seconds the API waits for InfluxDB")

    @field_validator("influx_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # A query would be lost by httpx's base URL, and a password with an unescaped
        # / ? # or @ would be read as host or path and shown by redact_url. The message never
        # quotes the value: it may hold a password.
        try:
            parts = urlsplit(value)
            valid = parts.hostname is not None and parts.port != 0
        except ValueError:  # a port that is no number, a bracket without its pair
            valid = False
        if not valid or "?" in value or "#" in value or "@" in parts.path:
            raise ValueError(
                "must be http(s)://[user[:password]@]host[:port][/path], no ?query or #fragment"
                " (in a password write / ? # @ as %2F %3F %23 %40)"
            )
        return value.rstrip("/")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """What repr() and str() show: secrets are SecretStr already; the URL's password
        is masked too."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "influx_url" else value

    @property
    def dead_letter_path(self) -> Path:
        return self.state_dir / "dead-letter.jsonl"

    @property
    def recovery_dir(self) -> Path:
        return self.state_dir / "recovery"

    @property
    def recovery_lock_path(self) -> Path:
        """Held while a process of a cluster makes the recovery store."""
        return self.state_dir / "recovery.lock"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings with CLI flags (non-None overrides) on top; a bad value is a ConfigError."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        env_name = env_variable(field)
        raise ConfigError(f"{field} ({env_name}): {first['msg']}") from exc


def describe(
    settings: Settings, *, flags: frozenset[str] = frozenset()
) -> list[tuple[str, str, str]]:
    """(environment variable, value as shown, where it came from) for every setting; secrets
    masked. `flags` names the settings a command-line flag set."""
    from dotenv import dotenv_values

    env_file = {key.upper(): value for key, value in dotenv_values(ENV_FILE).items()}
    rows = []
    for name in Settings.model_fields:
        variable = env_variable(name)
        if name in flags:
            source = "flag"
        elif variable in os.environ:
            source = "environment"
        elif variable in env_file:
            source = ".env"
        else:
            source = "default"
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = "**********"
        elif name == "influx_url":
            shown = redact_url(value)
        else:
            shown = "" if value is None else str(value)
        rows.append((variable, shown, source))
    return rows
