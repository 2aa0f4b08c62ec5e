"""The project's `wrangler.toml` / `wrangler.jsonc`, read into binding specs.

Only the sections flarebase serves are read; anything else (routes, triggers,
build, ...) is ignored, as wrangler's own local mode ignores what it cannot run.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class D1Spec(Spec):
    binding: str
    database_name: str | None = None
    database_id: str | None = None
    migrations_dir: str = "migrations"
    migrations_table: str = "d1_migrations"

    @property
    def name(self) -> str:
        return self.database_name or self.binding


class KVSpec(Spec):
    binding: str
    id: str | None = None

    @property
    def name(self) -> str:
        return self.id or self.binding


class R2Spec(Spec):
    binding: str
    bucket_name: str | None = None

    @property
    def name(self) -> str:
        return self.bucket_name or self.binding


class VectorizeSpec(Spec):
    binding: str
    index_name: str


class DurableObjectSpec(Spec):
    name: str
    class_name: str
    script_name: str | None = None


class DOMigrationSpec(Spec):
    tag: str
    new_classes: list[str] = Field(default_factory=list)
    new_sqlite_classes: list[str] = Field(default_factory=list)
    deleted_classes: list[str] = Field(default_factory=list)


class QueueProducerSpec(Spec):
    binding: str
    queue: str
    delivery_delay: int = 0


class QueueConsumerSpec(Spec):
    queue: str
    type: str = "worker"  # "worker" (push) or "http_pull"
    max_batch_size: int = Field(default=10, ge=1, le=100)
    max_batch_timeout: float = Field(default=5, ge=0, le=60)
    max_retries: int = Field(default=3, ge=0, le=100)
    dead_letter_queue: str | None = None
    retry_delay: int = Field(default=0, ge=0, le=86_400)
    visibility_timeout_ms: int | None = None


class Project(BaseModel):
    """Everything flarebase reads from one wrangler config file."""

    model_config = ConfigDict(extra="ignore")

    path: Path
    name: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    d1_databases: list[D1Spec] = Field(default_factory=list)
    kv_namespaces: list[KVSpec] = Field(default_factory=list)
    r2_buckets: list[R2Spec] = Field(default_factory=list)
    vectorize: list[VectorizeSpec] = Field(default_factory=list)
    durable_objects: list[DurableObjectSpec] = Field(default_factory=list)
    do_migrations: list[DOMigrationSpec] = Field(default_factory=list)
    queue_producers: list[QueueProducerSpec] = Field(default_factory=list)
    queue_consumers: list[QueueConsumerSpec] = Field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    def binding_names(self) -> list[str]:
        names = [s.binding for s in self.d1_databases]
        names += [s.binding for s in self.kv_namespaces]
        names += [s.binding for s in self.r2_buckets]
        names += [s.binding for s in self.vectorize]
        names += [s.name for s in self.durable_objects]
        names += [s.binding for s in self.queue_producers]
        return names

    def d1(self, binding: str) -> D1Spec:
        for spec in self.d1_databases:
            if binding in (spec.binding, spec.database_name):
                return spec
        raise ConfigError(f"{self.path}: no D1 database with binding or name {binding!r}")


S = TypeVar("S", bound=Spec)


def load_project(path: str | Path = "wrangler.toml", environment: str | None = None) -> Project:
    """Read a wrangler.toml or wrangler.json(c). `environment` picks `[env.NAME]`."""
    path = Path(path)
    if path.is_dir():
        path = _find_config(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    raw = _parse(path, text)
    if environment:
        envs = raw.get("env") or {}
        if environment not in envs:
            raise ConfigError(f"{path}: no [env.{environment}] section")
        raw = envs[environment]  # wrangler does not inherit bindings into environments
    return _project(path, raw)


def _find_config(folder: Path) -> Path:
    for name in ("wrangler.toml", "wrangler.jsonc", "wrangler.json"):
        if (folder / name).exists():
            return folder / name
    raise ConfigError(f"no wrangler.toml, wrangler.jsonc or wrangler.json in {folder}")


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {e}") from e


_JSONC_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|,(?=\s*[}\]])', re.S)


def strip_jsonc(text: str) -> str:
    """Drop comments and trailing commas, leaving string literals untouched."""
    return _JSONC_TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] == '"' else "", text)


def _project(path: Path, raw: dict[str, Any]) -> Project:
    durable = raw.get("durable_objects") or {}
    queues = raw.get("queues") or {}
    vars_ = raw.get("vars") or {}
    if not isinstance(vars_, dict):
        raise ConfigError(f"{path}: [vars] must be a table")
    return Project(
        path=path,
        name=raw.get("name"),
        vars=vars_,
        d1_databases=_specs(path, raw, "d1_databases", D1Spec),
        kv_namespaces=_specs(path, raw, "kv_namespaces", KVSpec),
        r2_buckets=_specs(path, raw, "r2_buckets", R2Spec),
        vectorize=_specs(path, raw, "vectorize", VectorizeSpec),
        durable_objects=_specs(path, durable, "bindings", DurableObjectSpec, "durable_objects."),
        do_migrations=_specs(path, raw, "migrations", DOMigrationSpec),
        queue_producers=_specs(path, queues, "producers", QueueProducerSpec, "queues."),
        queue_consumers=_specs(path, queues, "consumers", QueueConsumerSpec, "queues."),
    )


def _specs(path: Path, raw: dict[str, Any], key: str, model: type[S], prefix: str = "") -> list[S]:
    entries = raw.get(key) or []
    section = f"[[{prefix}{key}]]"
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: {section} must be a list of tables")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {section} entry {i} must be a table")
        try:
            specs.append(model.model_validate(entry))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"{path}: {section} entry {i}: {problems}") from None
    return specs
