"""`flarebase deploy --target bridge`: the bridge Worker, with the project's bindings.

`plan_bridge(config)` reads the project's wrangler.toml and the bridge's template
(bridge/wrangler.toml) and gives what wrangler deploys, in an output folder (default
`.flarebase/bridge/` beside the config):

    wrangler.toml   the template's name (prefixed with the project's), date, [vars],
                    its own Durable Object classes and [[migrations]]; plus the
                    project's D1, KV, R2, Vectorize and queue producer bindings, with
                    the same names and ids (so `open_env(..., provider="bridge")` finds
                    them); not the project's Durable Objects or queue consumers, which
                    are its own Worker's
    src/index.js    the bridge Worker, copied from bridge/src/index.js

`deploy_bridge(plan, dry_run=...)` writes them and runs wrangler 4.86.0 from
bridge/node_modules (`scripts/bootstrap --node`) in that folder:

    wrangler deploy --config wrangler.toml --secrets-file <temporary file>
    wrangler deploy ... --dry-run --outdir dist      (dry: bundles offline, uploads nothing)

The secret BRIDGE_SECRET (the HMAC key shared with the bridge provider) comes from
$FLAREBASE_BRIDGE_SECRET, else a FLAREBASE_BRIDGE_SECRET line of the project's
`.dev.vars`: the same name the provider reads, so one value serves both ends. It must
have at least 16 characters, as the Worker requires. It is uploaded with the deploy
(`--secrets-file`), so no version of the Worker runs with another secret or none, and
a rotated secret takes effect with the deploy. The file holding it for wrangler lives
in a private temporary folder and is deleted right after; it is never written to the
output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..platform.bridge.miniflare import bridge_dir
from ..platform.config import Project, load_project
from ..platform.env import parse_dotenv
from ..platform.errors import ConfigError, FlarebaseError
from .toml import raw_config, to_toml

SECRET_VAR = "FLAREBASE_BRIDGE_SECRET"
MIN_SECRET_CHARS = 16  # the Worker refuses shorter (bridge/src/index.js, authenticate)
# (section of wrangler.toml, its keys flarebase keeps out of the bridge's config)
BINDING_SECTIONS: dict[str, tuple[str, ...]] = {
    "d1_databases": ("migrations_dir", "migrations_table"),  # migrations are the project's
    "kv_namespaces": (),
    "r2_buckets": (),
    "vectorize": (),
}
TEMPLATE_KEYS = ("compatibility_date", "compatibility_flags", "vars", "durable_objects")


@dataclass
class BridgePlan:
    """What `deploy_bridge` writes (`files`, relative to `out_dir`) and runs."""

    project: Project
    out_dir: Path
    config: dict[str, Any]
    files: dict[str, str]
    secret: str = field(repr=False)
    wrangler: list[str] = field(default_factory=list)  # [node, wrangler.js]

    def command(self, *, dry_run: bool = False, secrets_file: str = "<secrets file>") -> list[str]:
        command = [*self.wrangler, "deploy", "--config", "wrangler.toml"]
        command += ["--secrets-file", secrets_file]
        return command + (["--dry-run", "--outdir", "dist"] if dry_run else [])

    def describe(self) -> str:
        lines = [f"{self.out_dir}/{name}" for name in sorted(self.files)]
        bindings = ", ".join(bridge_bindings(self.config)) or "none"
        lines.append(f"bindings: {bindings}; BRIDGE_SECRET: set ({len(self.secret)} characters)")
        return "\n".join(lines)


# -- the secret ---------------------------------------------------------------------------------


def find_secret(project: Project) -> str:
    """BRIDGE_SECRET: $FLAREBASE_BRIDGE_SECRET, else the project's .dev.vars line."""
    secret = os.environ.get(SECRET_VAR)
    dev_vars = project.root / ".dev.vars"
    if not secret and dev_vars.exists():
        secret = parse_dotenv(dev_vars).get(SECRET_VAR)
    if not secret:
        raise ConfigError(
            f"no bridge secret: set ${SECRET_VAR} or add {SECRET_VAR}=... to {dev_vars} "
            '(at least 16 characters; e.g. python -c "import secrets; '
            'print(secrets.token_urlsafe(32))")'
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{SECRET_VAR} has {len(secret)} characters; the bridge Worker needs at least "
            f"{MIN_SECRET_CHARS} (32+ random ones are better)"
        )
    return secret


# -- wrangler.toml ------------------------------------------------------------------------------


def bridge_bindings(config: dict[str, Any]) -> list[str]:
    """The binding names of the project's products in a bridge config."""
    names = [e["binding"] for section in BINDING_SECTIONS for e in config.get(section) or []]
    return names + [e["binding"] for e in (config.get("queues") or {}).get("producers") or []]


def _project_bindings(project: Project) -> dict[str, Any]:
    """The project's product bindings, as written in its config (ids and all)."""
    raw = raw_config(project.path)
    config: dict[str, Any] = {}
    for section, dropped in BINDING_SECTIONS.items():
        entries = [{k: v for k, v in e.items() if k not in dropped} for e in raw.get(section) or []]
        if entries:
            config[section] = entries
    producers = (raw.get("queues") or {}).get("producers") or []
    if producers:
        config["queues"] = {"producers": producers}
    if "account_id" in raw:  # which account wrangler deploys to, as for the project
        config["account_id"] = raw["account_id"]
    return config


def _reserved_names(template: dict[str, Any]) -> set[str]:
    durable = (template.get("durable_objects") or {}).get("bindings") or []
    return {"BRIDGE_SECRET", *(template.get("vars") or {}), *(b["name"] for b in durable)}


def bridge_config(project: Project, template: dict[str, Any]) -> dict[str, Any]:
    """The bridge's wrangler.toml (as data): the template's Worker with the project's bindings."""
    bindings = _project_bindings(project)
    names = bridge_bindings(bindings)
    if not names:
        raise ConfigError(
            f"{project.path}: no D1, KV, R2, Vectorize or queue producer bindings for the "
            "bridge to expose (it does not reach the project's Durable Objects)"
        )
    clashes = sorted(set(names) & _reserved_names(template))
    if clashes:
        raise ConfigError(
            f"{project.path}: {', '.join(clashes)}: the bridge's own binding names; rename them"
        )
    base = template.get("name") or "flarebase-bridge"
    config: dict[str, Any] = {
        "name": f"{project.name}-bridge" if project.name else base,
        "main": "src/index.js",
    }
    config |= {key: template[key] for key in TEMPLATE_KEYS if key in template}
    config |= bindings
    config["migrations"] = template.get("migrations") or []
    return config


# -- the plan -----------------------------------------------------------------------------------


def wrangler_command(folder: Path) -> list[str]:
    """wrangler from bridge/node_modules, run by node (the version package-lock pins)."""
    script = folder / "node_modules" / "wrangler" / "bin" / "wrangler.js"
    node = shutil.which("node")
    if node is None or not script.exists():
        raise ConfigError(
            f"wrangler is not installed: needs node and `npm ci` in {folder} "
            "(scripts/bootstrap --node)"
        )
    return [node, str(script)]


def plan_bridge(
    config: str | Path | Project = "wrangler.toml",
    out_dir: str | Path | None = None,
    *,
    secret: str | None = None,
) -> BridgePlan:
    """The bridge Worker's files for `config` (nothing is written yet). ConfigError when
    the secret is missing or short, the project has no bindings, or wrangler is missing."""
    project = config if isinstance(config, Project) else load_project(config)
    folder = bridge_dir()
    template = tomllib.loads((folder / "wrangler.toml").read_text(encoding="utf-8"))
    worker = bridge_config(project, template)
    secret = secret or find_secret(project)
    out = Path(out_dir) if out_dir else project.root / ".flarebase" / "bridge"
    files = {
        "wrangler.toml": f"# Generated by `flarebase deploy --target bridge` from "
        f"{project.path.name} and the bridge's template.\n" + to_toml(worker),
        "src/index.js": (folder / "src" / "index.js").read_text(encoding="utf-8"),
    }
    return BridgePlan(project, out.resolve(), worker, files, secret, wrangler_command(folder))


def write_bridge(plan: BridgePlan) -> None:
    for name, text in plan.files.items():
        path = plan.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@contextmanager
def secrets_file(secret: str) -> Iterator[str]:
    """A JSON file {"BRIDGE_SECRET": ...} readable only by us, deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="flarebase-bridge-") as folder:  # mode 0700
        path = Path(folder) / "secrets.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"BRIDGE_SECRET": secret}, f)
        yield str(path)


def deploy_bridge(plan: BridgePlan, *, dry_run: bool = False) -> None:
    """Write the files and run `wrangler deploy` there (dry: `--dry-run --outdir dist`,
    offline). FlarebaseError if wrangler fails; its own output says why."""
    write_bridge(plan)
    with secrets_file(plan.secret) as path:
        command = plan.command(dry_run=dry_run, secrets_file=path)
        code = subprocess.run(command, cwd=plan.out_dir, check=False).returncode
    if code != 0:
        raise FlarebaseError(
            f"wrangler deploy{' --dry-run' if dry_run else ''} failed (exit status {code}); "
            "its output above says why",
            code="WRANGLER_FAILED",
        )
