"""Reading a project's wrangler config as plain data, and writing wrangler.toml.

Both deploy targets start from the project's own config file (not the validated
`Project`, which keeps only what flarebase serves), so keys flarebase does not know
(`preview_id`, `jurisdiction`, `routes`, ...) reach wrangler unchanged.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..platform.config import strip_jsonc
from ..platform.errors import ConfigError


def raw_config(path: Path) -> dict[str, Any]:
    """The config file as data: TOML, or JSON with comments (wrangler.jsonc)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    data: dict[str, Any] = json.loads(strip_jsonc(text))
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} to wrangler.toml")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars and inline arrays first, then tables and arrays of tables."""
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict) or _is_table_list(value):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines)
    for key, value in nested:
        name = f"{prefix}{_toml_key(key)}"
        if isinstance(value, dict):
            body = to_toml(value, f"{name}.")
            out += f"\n\n[{name}]\n{body}" if body.strip() else f"\n\n[{name}]"
        else:
            for item in value:
                out += f"\n\n[[{name}]]\n{to_toml(item, f'{name}.')}"
    return out.strip("\n") + "\n" if not prefix else out.strip("\n")
