"""`flarebase init DIR`: a new backend project, ready for `flarebase dev` and wrangler.

    from flarebase.server.scaffold import scaffold
    created = scaffold(Path("my-backend"))            # -> the files it wrote

writes, into DIR (created if missing):

    wrangler.toml   every binding the server uses (D1 `DB` with `migrations_dir =
                    "migrations"`, KV `KV`, R2 `BUCKET`, Vectorize `MEMORY`, plus the
                    Durable Object and
                    queue sections of the server's own wrangler.toml), and [vars] that
                    turn on the per-IP request limit
    migrations/     copies of the server's D1 migrations, so `flarebase dev` and
                    `wrangler d1 migrations apply DB` apply the same files and record
                    them in the same d1_migrations table
    .env.example    every setting of `Settings`, with its default and description,
                    generated from the model (and its comments) so it never drifts
    .dev.vars       AUTH_SECRET, freshly generated (mode 0600; never commit it)
    .gitignore

It refuses (ScaffoldError, nothing written) when any of these exists, unless
`force=True`, which overwrites them.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..platform.errors import ConfigError
from ..platform.migrations import migration_files
from . import settings as settings_module
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
COMPATIBILITY_DATE = "2025-09-29"
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

# Settings a scaffolded project sets in [vars] (differing from the library's defaults).
PROJECT_VARS: dict[str, Any] = {"QUOTA_IP_REQUESTS": 600, "QUOTA_IP_WINDOW": 60}

# Keep in step with the repository's wrangler.toml (tests/server/test_init.py compares
# the bindings, Durable Object classes and queues of both).
WRANGLER_TOML = """\
# {name}: a flarebase backend.
#
#   flarebase dev                         serve it locally (embedded D1/KV/R2/...)
#   wrangler d1 migrations apply DB       the same migrations/ on Cloudflare's D1
#
# Settings: every one, with its default and meaning, is in .env.example. Those that
# are not secret go in [vars] below; secrets (AUTH_SECRET) go in .dev.vars locally
# and `wrangler secret put AUTH_SECRET` on Cloudflare.
name = "{name}"
compatibility_date = "{compatibility_date}"

[vars]
{vars}
[[d1_databases]]
binding = "DB"
database_name = "{name}"
# `wrangler d1 create {name}` prints the real id; any id works locally.
database_id = "00000000-0000-0000-0000-000000000000"
migrations_dir = "migrations"

[[kv_namespaces]]
binding = "KV"
# `wrangler kv namespace create KV` prints the real id.
id = "{name}-kv"

[[r2_buckets]]
binding = "BUCKET"
bucket_name = "{name}-files"

# Vector memory (flarebase.server.memory): chunks of users' documents. `flarebase dev`
# creates this index locally (dimensions of MEMORY_EMBEDDINGS, cosine) if missing.
[[vectorize]]
binding = "MEMORY"
index_name = "{name}-memory"

# One Durable Object per chat (flarebase.server.chat.ChatStream): runs its responses,
# keeps their chunks for resume, and owns the stop flag.
[[durable_objects.bindings]]
name = "CHAT_STREAMS"
class_name = "ChatStream"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatStream"]
"""

GITIGNORE = """\
# secrets and local state
.dev.vars
.env
.flarebase/
.wrangler/
node_modules/
__pycache__/
"""


class ScaffoldError(ConfigError):
    """The project cannot be scaffolded (existing files, a bad name)."""


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One setting as .env.example shows it."""

    name: str  # the variable, e.g. UPLOAD_MAX_BYTES
    default: Any
    description: str
    section: str  # the `# -- ... --` heading it is under in settings.py ("" before any)
    required: bool
    shared: bool = False  # described together with the setting before it


def project_name(folder: Path, name: str | None = None) -> str:
    """A Worker name: `name` as given (validated), else from the folder's name."""
    if name is not None:
        if not _NAME.match(name):
            raise ScaffoldError(
                f"invalid name {name!r}: lowercase letters, digits and dashes, "
                "at most 63, not starting or ending with a dash"
            )
        return name
    slug = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")[:63].strip("-")
    return slug or "flarebase-app"


def setting_docs() -> list[SettingDoc]:
    """Every field of Settings with its variable name, default and description: the
    field's `description`, else the comment lines just above it in settings.py (a
    field right under another, with no comment of its own, shares that one's)."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == Settings.__name__)
    comments: dict[str, tuple[str, str, bool]] = {}
    section, previous = "", ""
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        block: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            text = lines[i].strip().lstrip("#").strip()
            if text.startswith("--"):  # a `# -- heading ---` starts a new group
                section = text.strip("- ")
                break
            block.insert(0, text)
            i -= 1
        shared = not block and bool(previous)
        description = " ".join(block) or (comments[previous][0] if previous else "")
        comments[node.target.id] = (description, section, shared)
        previous = node.target.id
    docs = []
    for field_name, info in Settings.model_fields.items():
        described, section, shared = comments.get(field_name, ("", "", False))
        docs.append(
            SettingDoc(
                name=info.alias or field_name.upper(),
                default=None if info.is_required() else info.default,
                description=info.description or described,
                section=section,
                required=info.is_required() or field_name == "auth_secret",
                shared=shared and not info.description,
            )
        )
    return docs


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_example() -> str:
    """The text of .env.example: every setting, its default and description."""
    out = [
        "# Every flarebase setting, with its default. Set the ones you change in",
        "# wrangler.toml [vars] (not secret), or in .dev.vars / `wrangler secret put`",
        "# (secrets); the process environment overrides either for names they declare.",
        "# A line left commented out has no default (the setting is unset).",
    ]
    section = None
    for doc in setting_docs():
        if doc.section != section:
            section = doc.section
            out += ["", f"# ---- {section or 'general'} " + "-" * max(4, 70 - len(section))]
        if not doc.shared:
            out.append("")
            out += [f"# {line}" for line in _wrap(doc.description)]
        if doc.required:
            out.append("# Required. A secret: set it in .dev.vars, never in wrangler.toml.")
        if doc.default is None:
            out.append(f"# {doc.name}=")
        else:
            out.append(f"{doc.name}={_value(doc.default)}")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int = 78) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines


def wrangler_toml(name: str) -> str:
    variables = "".join(f"{key} = {json.dumps(value)}\n" for key, value in PROJECT_VARS.items())
    return WRANGLER_TOML.format(name=name, compatibility_date=COMPATIBILITY_DATE, vars=variables)


def dev_vars() -> str:
    return (
        "# Local secrets for `flarebase dev` (wrangler dev reads this file too).\n"
        "# Never commit it. On Cloudflare: `wrangler secret put AUTH_SECRET`.\n"
        f"AUTH_SECRET={secrets.token_urlsafe(33)}\n"
    )


def scaffold(folder: Path, *, name: str | None = None, force: bool = False) -> list[Path]:
    """Write a new backend project into `folder`; the files written, in order."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ScaffoldError(f"{folder} exists and is not a folder")
    project = project_name(folder, name)
    migrations = migration_files(MIGRATIONS)
    if not migrations:
        raise ScaffoldError(f"no migrations found in {MIGRATIONS}")
    files: dict[Path, str | Path] = {
        folder / "wrangler.toml": wrangler_toml(project),
        folder / ".env.example": env_example(),
        folder / ".dev.vars": dev_vars(),
        folder / ".gitignore": GITIGNORE,
    }
    files |= {folder / "migrations" / m.name: m for m in migrations}
    existing = sorted(str(p) for p in files if p.exists())
    if existing and not force:
        raise ScaffoldError(f"would overwrite {', '.join(existing)}; move them away or use --force")
    Settings.from_env(PROJECT_VARS)  # the [vars] written must be valid settings
    (folder / "migrations").mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, path)
        elif path.name == ".dev.vars":  # a secret: private from the first byte
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.chmod(path, 0o600)  # when it existed before (--force)
        else:
            path.write_text(content, encoding="utf-8")
    return list(files)
