"""The process's settings from its environment (``DESKD_*``), typed: secrets never come from
the desk YAML, and are held as ``SecretStr`` so they are never printed or logged.

| variable | what |
|---|---|
| DESKD_API | the daemon's control API, for the operator verbs (default http://127.0.0.1:8765) |
| DESKD_API_TOKEN | bearer token of the control API's actions |
| DESKD_V20_URL, DESKD_V20_ACCOUNT | the v20 server and account |
| DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE | the v20 token, or a file holding it |
| DESKD_STORE_URL | the store, for the alembic command line |
| STATE_DIRECTORY | set by systemd (StateDirectory=): where the default store lives |
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """``Settings()`` reads the process environment; :meth:`from_env` a given mapping."""

    model_config = SettingsConfigDict(env_prefix="DESKD_", extra="ignore", populate_by_name=True)

    api: str = "http://127.0.0.1:8765"
    api_token: SecretStr | None = None
    v20_url: str | None = None
    v20_account: str | None = None
    v20_token: SecretStr | None = None
    v20_token_file: Path | None = None
    store_url: str | None = None
    state_directory: str | None = Field(default=None, validation_alias=AliasChoices("STATE_DIRECTORY",
                                                                                    "state_directory"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From ``env`` (a mapping of variable names, e.g. a test's), or the process
        environment when None. Raises pydantic.ValidationError on a malformed value."""
        if env is None:
            return cls()
        values: dict[str, str] = {k.removeprefix("DESKD_").lower(): v for k, v in env.items()
                                  if k.startswith("DESKD_") and v}
        if env.get("STATE_DIRECTORY"):
            values["state_directory"] = env["STATE_DIRECTORY"]
        return cls.model_validate(values)

    def default_store_path(self) -> Path:
        """$STATE_DIRECTORY/deskd.db under systemd (StateDirectory=), else ./deskd.db."""
        return Path((self.state_directory or ".").split(":")[0]) / "deskd.db"

    def api_token_value(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None
