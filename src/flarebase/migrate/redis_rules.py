"""Where each Redis key goes: a rules file (TOML), first matching rule wins.

    [defaults]
    kv = "CACHE"                 # KV binding of rules that name none
    d1 = "DB"                    # D1 binding of rules that name none
    ttl_under_minimum = "extend" # extend | skip | drop-ttl  (KV's TTL minimum is 60 s)
    resumable_stream_prefixes = ["resumable-stream"]   # npm resumable-stream keyPrefix(es)

    [[rules]]
    match = "session:*"          # Redis glob (as SCAN MATCH: * ? [a-z] [^x] \\*)
    type = "string"              # optional: string json hash list set zset stream (or a list)
    to = "kv"                    # kv | d1 | skip
    strip = "session:"           # removed from the front of the key
    prefix = "sess/"             # KV only: put in front of the KV key

    [[rules]]
    match = "user:*"
    type = "hash"
    to = "d1"
    table = "users"
    strip = "user:"
    key_column = "id"            # default "key"
    columns = ["name", "email", "age"]   # hash fields -> columns (else one JSON column)
    types = { age = "integer" }  # integer | real | text: converted when exact, else kept
    extra_column = "extra"       # fields not in `columns`, as a JSON object (default "extra")

What each type becomes:

| type | KV value | D1 table (key columns first; every table also has expires_at) |
|---|---|---|
| string, json | the bytes as they are | key, value |
| hash | JSON object, fields sorted | key, fields (JSON) -- or key, <columns>, extra |
| list | JSON array | key, idx, value (idx from 0, in list order) |
| set | JSON array, sorted | key, member |
| zset | JSON array of [member, score] | key, member, score |
| stream | (not supported) | key, id, fields (JSON object) |

Values and members go to D1 as TEXT when they are UTF-8, else as BLOB. In JSON (KV
JSON values, `fields`, `extra`) they must be UTF-8: a key holding other bytes there
is reported and not copied. `expires_at` holds the key's expiry in epoch
milliseconds (NULL: none): D1 has no TTL, the application filters or deletes.

TTLs in KV: KV cannot expire a key sooner than 60 s after a write. A key with less
left follows `ttl_under_minimum`: "extend" (default) writes it with a 60 s TTL,
"skip" leaves it out, "drop-ttl" writes it without expiry. Each case is counted in
the report.

Keys of npm `resumable-stream` (`<prefix>:rs:sentinel:<id>`, with the default prefix
`resumable-stream`) are recognised and skipped: they are live-stream state that
expires within a day, and flarebase's own streams replace them. Keys no rule
matches are counted and named (a few) in the report, not copied.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..platform.errors import FlarebaseError
from .model import quote
from .sources.redis import TYPES, RedisValue

POLICIES = ("extend", "skip", "drop-ttl")
DESTINATIONS = ("kv", "d1", "skip")
KV_TYPES = ("string", "json", "hash", "list", "set", "zset")
RESUMABLE_STREAM_PREFIX = "resumable-stream"
CONVERSIONS = ("integer", "real", "text")


class RulesError(FlarebaseError):
    code = "MIGRATE_RULES"


class Unmovable(Exception):
    """This key's value cannot take the rule's shape (the reason is the message)."""


@dataclass
class TableSpec:
    binding: str
    name: str
    columns: list[str]  # in row order; the last is the expiry column
    key: list[str]  # primary key
    types: dict[str, str] = field(default_factory=dict)  # declared types (affinity)

    @property
    def create_sql(self) -> str:
        cols = [f"{quote(c)} {self.types.get(c, '')}".rstrip() for c in self.columns]
        pk = ", ".join(quote(k) for k in self.key)
        return (
            f"CREATE TABLE IF NOT EXISTS {quote(self.name)} ({', '.join(cols)}, PRIMARY KEY ({pk}))"
        )

    @property
    def content_columns(self) -> list[str]:
        return self.columns[:-1]  # all but expires_at


@dataclass
class Rule:
    index: int
    match: str
    types: tuple[str, ...]
    to: str
    binding: str | None = None
    table: str | None = None
    strip: str = ""
    prefix: str = ""
    key_column: str = "key"
    columns: list[str] = field(default_factory=list)
    conversions: dict[str, str] = field(default_factory=dict)
    extra_column: str = "extra"
    ttl_under_minimum: str = "extend"
    names: dict[str, str] = field(default_factory=dict)  # column names by role
    _regex: re.Pattern[bytes] | None = None

    @property
    def name(self) -> str:
        kinds = "|".join(self.types) if self.types else "any type"
        return f"rule {self.index + 1} ({self.match}, {kinds})"

    @property
    def destination(self) -> str:
        if self.to == "kv":
            return f"KV {self.binding}" + (f" {self.prefix}*" if self.prefix else "")
        if self.to == "d1":
            return f"D1 {self.binding}.{self.table}"
        return "skipped"

    def matches(self, key: bytes, kind: str) -> bool:
        if self.types and kind not in self.types:
            return False
        assert self._regex is not None
        return self._regex.fullmatch(key) is not None

    def short_key(self, key: bytes) -> bytes:
        strip = self.strip.encode()
        return key[len(strip) :] if strip and key.startswith(strip) else key

    # -- KV --------------------------------------------------------------------------------
    def kv_key(self, key: bytes) -> str:
        try:
            text = self.short_key(key).decode("utf-8")
        except UnicodeDecodeError:
            raise Unmovable("a KV key must be UTF-8 text") from None
        name = self.prefix + text
        if not name or name in (".", "..") or len(name.encode()) > 512:
            raise Unmovable("not a valid KV key name (1 to 512 bytes; not '.' or '..')")
        return name

    def kv_value(self, value: RedisValue) -> bytes:
        v = value.value
        if value.type in ("string", "json"):
            return bytes(v)
        if value.type == "hash":
            return _json({_text(k): _text(x) for k, x in v.items()}).encode()
        if value.type == "list":
            return _json([_text(x) for x in v]).encode()
        if value.type == "set":
            return _json(sorted(_text(x) for x in v)).encode()
        if value.type == "zset":
            return _json(sorted([_text(m), _number(s)] for m, s in v.items())).encode()
        raise Unmovable(f"a {value.type} cannot go to KV")

    # -- D1 --------------------------------------------------------------------------------
    def table_spec(self) -> TableSpec:
        assert self.binding and self.table and len(self.types) == 1
        n, kind = self.names, self.types[0]
        key = n["key"]
        exp = n["expires"]
        if kind in ("string", "json"):
            return TableSpec(self.binding, self.table, [key, n["value"], exp], [key], _t(key, exp))
        if kind == "hash":
            if self.columns:
                cols = [key, *self.columns, self.extra_column, exp]
            else:
                cols = [key, n["fields"], exp]
            return TableSpec(self.binding, self.table, cols, [key], _t(key, exp))
        if kind == "list":
            cols = [key, n["index"], n["value"], exp]
            types = _t(key, exp) | {n["index"]: "INTEGER"}
            return TableSpec(self.binding, self.table, cols, [key, n["index"]], types)
        if kind == "set":
            return TableSpec(
                self.binding, self.table, [key, n["member"], exp], [key, n["member"]], _t(key, exp)
            )
        if kind == "zset":
            cols = [key, n["member"], n["score"], exp]
            types = _t(key, exp) | {n["score"]: "REAL"}
            return TableSpec(self.binding, self.table, cols, [key, n["member"]], types)
        cols = [key, n["id"], n["fields"], exp]
        return TableSpec(self.binding, self.table, cols, [key, n["id"]], _t(key, exp))

    def rows(self, value: RedisValue) -> list[tuple[Any, ...]]:
        """D1 rows of one key (expires_at last)."""
        k = _d1(self.short_key(value.key))
        exp = value.expires_at_ms
        v = value.value
        kind = value.type
        if kind in ("string", "json"):
            return [(k, _d1(v), exp)]
        if kind == "hash":
            if not self.columns:
                return [(k, _json({_text(f): _text(x) for f, x in v.items()}), exp)]
            fields = {_text(f): x for f, x in v.items()}
            cells = [self._convert(c, fields.pop(c, None)) for c in self.columns]
            extra = _json({f: _text(x) for f, x in fields.items()}) if fields else None
            return [(k, *cells, extra, exp)]
        if kind == "list":
            return [(k, i, _d1(x), exp) for i, x in enumerate(v)]
        if kind == "set":
            return [(k, _d1(m), exp) for m in v]
        if kind == "zset":
            return [(k, _d1(m), float(s), exp) for m, s in v.items()]
        if kind == "stream":
            return [
                (k, _text(entry_id), _json({_text(f): _text(x) for f, x in fields}), exp)
                for entry_id, fields in v
            ]
        raise Unmovable(f"type {kind} is not supported")

    def _convert(self, column: str, raw: bytes | None) -> Any:
        if raw is None:
            return None
        value = _d1(raw)
        want = self.conversions.get(column)
        if want is None or want == "text" or not isinstance(value, str):
            return value
        try:
            if want == "integer":
                number: Any = int(value)
                return number if str(number) == value else value
            number = float(value)
            return number if math.isfinite(number) and repr(number) == value else value
        except ValueError:
            return value  # kept as it was, never changed silently


@dataclass
class Rules:
    rules: list[Rule]
    ttl_under_minimum: str = "extend"
    resumable_prefixes: list[str] = field(default_factory=lambda: [RESUMABLE_STREAM_PREFIX])
    source: str = ""  # the file's text, for the checkpoint's fingerprint

    def find(self, key: bytes, kind: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(key, kind):
                return rule
        return None

    def resumable_stream(self, key: bytes) -> bool:
        return any(key.startswith(f"{p}:rs:".encode()) for p in self.resumable_prefixes)

    def tables(self) -> list[TableSpec]:
        """One spec per D1 table; rules sharing a table must agree on its shape."""
        found: dict[tuple[str, str], TableSpec] = {}
        for rule in self.rules:
            if rule.to != "d1":
                continue
            spec = rule.table_spec()
            other = found.setdefault((spec.binding, spec.name), spec)
            if other.columns != spec.columns:
                raise RulesError(
                    f"{rule.name}: table {spec.name} is also written by another rule with "
                    f"columns {other.columns}; this one has {spec.columns}"
                )
        return list(found.values())

    def kv_bindings(self) -> list[str]:
        return sorted({r.binding for r in self.rules if r.to == "kv" and r.binding})

    def d1_bindings(self) -> list[str]:
        return sorted({r.binding for r in self.rules if r.to == "d1" and r.binding})


def load_rules(path: str | Path | None, *, kv: str | None = None, d1: str | None = None) -> Rules:
    """Read a rules file. Without one, every key goes to KV binding `kv` (strings and
    JSON as they are, collections as JSON)."""
    if path is None:
        if kv is None:
            raise RulesError("give --rules FILE, or --kv BINDING to copy every key into KV")
        return parse_rules({"rules": [{"match": "*", "to": "kv"}]}, kv=kv, d1=d1)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RulesError(f"cannot read rules {path}: {e}") from None
    rules = parse_rules(data, kv=kv, d1=d1)
    rules.source = text
    return rules


_RULE_KEYS = {
    "match",
    "type",
    "to",
    "kv",
    "d1",
    "table",
    "strip",
    "prefix",
    "key_column",
    "columns",
    "types",
    "extra_column",
    "ttl_under_minimum",
    "value_column",
    "index_column",
    "member_column",
    "score_column",
    "id_column",
    "fields_column",
    "expires_column",
}
_DEFAULT_KEYS = {"kv", "d1", "ttl_under_minimum", "resumable_stream_prefixes"}


def parse_rules(data: dict[str, Any], *, kv: str | None = None, d1: str | None = None) -> Rules:
    defaults = data.get("defaults", {})
    unknown = set(data) - {"defaults", "rules"}
    if unknown:
        raise RulesError(
            f"unknown section(s) {', '.join(sorted(unknown))}: use [defaults], [[rules]]"
        )
    if not isinstance(defaults, dict) or set(defaults) - _DEFAULT_KEYS:
        raise RulesError(f"[defaults] takes {', '.join(sorted(_DEFAULT_KEYS))}")
    kv = kv or defaults.get("kv")
    d1 = d1 or defaults.get("d1")
    policy = _policy(defaults.get("ttl_under_minimum", "extend"), "[defaults]")
    prefixes = defaults.get("resumable_stream_prefixes", [RESUMABLE_STREAM_PREFIX])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise RulesError("resumable_stream_prefixes must be a list of strings")
    items = data.get("rules", [])
    if not isinstance(items, list) or not items:
        raise RulesError("the rules file has no [[rules]]")
    rules = [_rule(i, item, kv, d1, policy) for i, item in enumerate(items)]
    out = Rules(rules, policy, prefixes)
    out.tables()  # shapes agree
    return out


def _rule(i: int, item: Any, kv: str | None, d1: str | None, policy: str) -> Rule:
    where = f"rule {i + 1}"
    if not isinstance(item, dict):
        raise RulesError(f"{where}: expected a table of settings")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    match = item.get("match")
    if not isinstance(match, str) or not match:
        raise RulesError(f"{where}: `match` (a key pattern) is required")
    kinds = item.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    bad = [k for k in kinds if k not in TYPES]
    if bad or not isinstance(kinds, list):
        raise RulesError(f"{where}: type must be among {', '.join(TYPES)}; got {bad or kinds}")
    to = item.get("to", "kv")
    if to not in DESTINATIONS:
        raise RulesError(f"{where}: `to` must be one of {', '.join(DESTINATIONS)}, not {to!r}")
    rule = Rule(
        i,
        match,
        tuple(kinds),
        to,
        strip=str(item.get("strip", "")),
        prefix=str(item.get("prefix", "")),
        key_column=str(item.get("key_column", "key")),
        columns=list(item.get("columns", [])),
        conversions=dict(item.get("types", {})),
        extra_column=str(item.get("extra_column", "extra")),
        ttl_under_minimum=_policy(item.get("ttl_under_minimum", policy), where),
    )
    rule._regex = glob_regex(match)
    rule.names = {
        "key": rule.key_column,
        "value": str(item.get("value_column", "value")),
        "index": str(item.get("index_column", "idx")),
        "member": str(item.get("member_column", "member")),
        "score": str(item.get("score_column", "score")),
        "id": str(item.get("id_column", "id")),
        "fields": str(item.get("fields_column", "fields")),
        "expires": str(item.get("expires_column", "expires_at")),
    }
    if to == "kv":
        rule.binding = item.get("kv") or kv
        if not rule.binding:
            raise RulesError(f"{where}: no KV binding (set `kv` here, in [defaults] or --kv)")
        wrong = [k for k in rule.types if k not in KV_TYPES]
        if wrong:
            raise RulesError(f"{where}: {', '.join(wrong)} cannot go to KV; send it to d1")
        if not rule.types:
            rule.types = KV_TYPES
    elif to == "d1":
        rule.binding = item.get("d1") or d1
        rule.table = item.get("table")
        if not rule.binding:
            raise RulesError(f"{where}: no D1 binding (set `d1` here, in [defaults] or --d1)")
        if not rule.table or len(rule.types) != 1:
            raise RulesError(f"{where}: a d1 rule needs `table` and exactly one `type`")
        if rule.columns and rule.types != ("hash",):
            raise RulesError(f"{where}: `columns` are for hashes")
        for column, conversion in rule.conversions.items():
            if column not in rule.columns or conversion not in CONVERSIONS:
                raise RulesError(
                    f"{where}: types.{column}: a listed column and one of {', '.join(CONVERSIONS)}"
                )
        names = rule.table_spec().columns
        if len(set(names)) != len(names):
            raise RulesError(f"{where}: column names repeat: {names}")
    return rule


def _policy(value: Any, where: str) -> str:
    if value not in POLICIES:
        raise RulesError(f"{where}: ttl_under_minimum must be one of {', '.join(POLICIES)}")
    return str(value)


def glob_regex(pattern: str) -> re.Pattern[bytes]:
    """A Redis glob (stringmatchlen's syntax) as a regex over the key's bytes."""
    data = pattern.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < len(data):
            i += 1
            out += re.escape(data[i : i + 1])
        elif c == b"[":
            j = i + 1
            negate = j < len(data) and data[j : j + 1] == b"^"
            if negate:
                j += 1
            members = bytearray()
            while j < len(data) and data[j : j + 1] != b"]":
                if data[j : j + 1] == b"\\" and j + 1 < len(data):
                    j += 1
                    members += re.escape(data[j : j + 1])
                elif (
                    data[j + 1 : j + 2] == b"-"
                    and j + 2 < len(data)
                    and data[j + 2 : j + 3] != b"]"
                ):
                    lo, hi = sorted((data[j], data[j + 2]))
                    members += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
                    j += 2
                else:
                    members += re.escape(data[j : j + 1])
                j += 1
            out += b"[" + (b"^" if negate else b"") + bytes(members) + b"]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(bytes(out), re.DOTALL)


def _t(key: str, expires: str) -> dict[str, str]:
    return {key: "TEXT", expires: "INTEGER"}


def _d1(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unmovable("holds bytes that are not UTF-8, which JSON cannot carry") from None


def _number(score: float) -> Any:
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    return int(score) if score.is_integer() and abs(score) < 2**53 else score


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
