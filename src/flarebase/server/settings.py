"""Settings from wrangler.toml [vars], `.dev.vars` and the environment (secrets),
validated once at start with clear errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..platform.errors import ConfigError


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # Largest request body accepted, in bytes (uploads have their own limit).
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, alias="MAX_BODY_BYTES")

    @classmethod
    def from_env(cls, values: dict[str, Any]) -> Settings:
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
