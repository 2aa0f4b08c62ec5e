"""Postgres to D1 (SQLite): column types, values, defaults, expressions and DDL.

Type mapping (`--timestamps iso|epoch-ms`, `--numeric text|real`):

| Postgres                       | D1 column            | values                              |
|--------------------------------|----------------------|-------------------------------------|
| smallint, integer, bigint      | INTEGER              | as they are                         |
| serial / identity primary key  | INTEGER PRIMARY KEY AUTOINCREMENT | sequence position kept |
| boolean                        | INTEGER CHECK IN 0,1 | 0 / 1                               |
| real, double precision         | REAL                 | NaN becomes the text 'NaN'          |
| numeric(p, 0), p <= 18         | INTEGER              | exact                               |
| numeric, decimal, money: text  | TEXT                 | Postgres's exact text ('12.50')     |
| numeric, decimal, money: real  | REAL                 | rounded values counted (report)     |
| text, varchar, char, name      | TEXT                 | as they are                         |
| citext                         | TEXT COLLATE NOCASE  | as they are                         |
| uuid                           | TEXT                 | lowercase 8-4-4-4-12                |
| timestamptz: iso               | TEXT                 | 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (UTC) |
| timestamp: iso                 | TEXT                 | 'YYYY-MM-DDTHH:MM:SS.ffffff'        |
| date: iso                      | TEXT                 | 'YYYY-MM-DD'                        |
| timestamptz, timestamp, date: epoch-ms | INTEGER | ms since 1970 UTC, cuts counted  |
| time, timetz, interval         | TEXT                 | Postgres text (interval ISO 8601)   |
| json, jsonb                    | TEXT                 | the JSON text                       |
| any array                      | TEXT                 | a JSON array (Postgres's to_json)   |
| bytea                          | BLOB                 | the bytes                           |
| enum                           | TEXT CHECK IN labels | the label                           |
| domain                         | its base type's      | (domain constraints reported)       |
| inet, xml, range, tsvector, pgvector, any other | TEXT | Postgres's text output (reported) |

Infinite timestamps and dates keep Postgres's words ('infinity', '-infinity') as text.
Fixed-width ISO text sorts in time order; SQLite's date functions read it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .model import quote

TIMESTAMPS = ("iso", "epoch-ms")
NUMERICS = ("text", "real")

INT_TYPES = {"smallint", "integer", "bigint", "int2", "int4", "int8", "oid", "xid"}
FLOAT_TYPES = {"real", "double precision", "float4", "float8"}
TEXT_TYPES = {"text", "character varying", "character", "varchar", "bpchar", "name", "char"}
TIME_TYPES = {"timestamp with time zone", "timestamp without time zone", "date"}

# SQLite expressions producing the current time in each representation.
NOW_SQL = {
    ("iso", "timestamptz"): "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')",
    ("iso", "timestamp"): "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000')",
    ("iso", "date"): "(date('now'))",
    ("epoch-ms", "timestamptz"): "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
    ("epoch-ms", "timestamp"): "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
    ("epoch-ms", "date"): "(CAST(strftime('%s', date('now')) AS INTEGER) * 1000)",
}
# A version-4 UUID from SQLite's randomness, in Postgres's lowercase text form.
UUID_SQL = (
    "(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))"
)
NOW_FUNCTIONS = {
    "now",
    "current_timestamp",
    "localtimestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
}
UUID_FUNCTIONS = {"gen_random_uuid", "uuid_generate_v4"}


class Untranslatable(Exception):
    """An expression or object D1 cannot express; the message says why."""


# -- column types and values -----------------------------------------------------------
@dataclass
class PgColumn:
    """A column as the Postgres catalog describes it."""

    name: str
    type: str  # format_type(), e.g. "numeric(10,2)", "timestamp with time zone", "text[]"
    base: str  # the type's name without modifiers (domains resolved), e.g. "numeric"
    category: str  # pg_type.typcategory of the (base) type: A array, E enum, ...
    not_null: bool = False
    default: str | None = None  # pg_get_expr of the default
    identity: bool = False
    generated: str | None = None  # the expression of a stored generated column
    enum_labels: list[str] = field(default_factory=list)
    precision: int | None = None  # numeric(p, s)
    scale: int | None = None
    domain: str | None = None


@dataclass
class Mapping:
    """How one Postgres column is stored in D1 and read from Postgres."""

    d1_type: str  # INTEGER, REAL, TEXT, BLOB
    select: str  # the SELECT expression over the column ("{c}" is the quoted column)
    convert: Callable[[Any], Any] | None = None  # Python conversion of the selected value
    check: str | None = None  # a CHECK on the D1 column ("{c}" is the quoted column)
    collate: str | None = None
    kind: str = "plain"  # timestamptz | timestamp | date | numeric-text | bool | ...
    note: str | None = None  # said in the report (e.g. text output of an unknown type)
    lossy: Callable[[Any], bool] | None = None  # True when the value was rounded


def map_column(col: PgColumn, timestamps: str = "iso", numeric: str = "text") -> Mapping:
    """The D1 type, the Postgres SELECT expression and conversions for one column."""
    base, cat = col.base, col.category
    if cat == "A":
        return Mapping("TEXT", "to_json({c})::text", kind="array")
    if cat == "E":
        labels = ", ".join(sql_literal(label) for label in col.enum_labels)
        return Mapping("TEXT", "{c}::text", check=f"{{c}} IN ({labels})", kind="enum")
    if base in INT_TYPES:
        return Mapping("INTEGER", "{c}", kind="integer")
    if base == "boolean":
        return Mapping("INTEGER", "{c}::int", check="{c} IN (0, 1)", kind="bool")
    if base in FLOAT_TYPES:
        return Mapping("REAL", "{c}", convert=_float_value, kind="float")
    if base in ("numeric", "money"):
        expr = "{c}::numeric::text" if base == "money" else "{c}::text"
        if base == "numeric" and col.scale == 0 and col.precision and col.precision <= 18:
            return Mapping("INTEGER", "{c}::bigint", kind="integer")
        if numeric == "real":
            return Mapping("REAL", expr, _numeric_real, kind="numeric-real", lossy=_numeric_lossy)
        return Mapping("TEXT", expr, kind="numeric-text")
    if base in TEXT_TYPES:
        return Mapping("TEXT", "{c}", kind="text")
    if base == "citext":
        return Mapping("TEXT", "{c}::text", collate="NOCASE", kind="text")
    if base == "uuid":
        return Mapping("TEXT", "{c}::text", kind="uuid")
    if base in ("json", "jsonb"):
        return Mapping("TEXT", "{c}::text", kind="json")
    if base == "bytea":
        return Mapping("BLOB", "{c}", kind="bytes")
    if base in TIME_TYPES:
        return _time_mapping(base, timestamps)
    if base in ("time without time zone", "time with time zone", "interval"):
        return Mapping("TEXT", "{c}::text", kind="text")
    note = f"type {col.type} has no D1 equivalent: stored as Postgres's text output"
    if base == "vector":
        note = (
            "pgvector column: stored in D1 as JSON text ('[1,2,3]'); moving it into "
            "Vectorize is the vector migration's job"
        )
    return Mapping("TEXT", "{c}::text", kind="text", note=note)


def _time_mapping(base: str, timestamps: str) -> Mapping:
    kind = {"timestamp with time zone": "timestamptz", "date": "date"}.get(base, "timestamp")
    if timestamps == "epoch-ms":
        # Microseconds as text (infinity stays a word), divided here to spot rounding.
        micros = "(extract(epoch FROM {c}) * 1000000)::bigint::text"
        expr = f"CASE WHEN isfinite({{c}}) THEN {micros} ELSE {{c}}::text END"
        lossy = None if kind == "date" else _micros_lossy
        return Mapping("INTEGER", expr, _micros_to_ms, kind=kind, lossy=lossy)
    fmt = {
        "timestamptz": """to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
        "timestamp": """to_char({c}, 'YYYY-MM-DD"T"HH24:MI:SS.US')""",
        "date": "to_char({c}, 'YYYY-MM-DD')",
    }[kind]
    # to_char has no era: years before 1 AD keep Postgres's own text ("0044-03-15 BC").
    floor = {"timestamptz": "'0001-01-01 00:00:00+00'", "timestamp": "'0001-01-01'"}.get(
        kind, "'0001-01-01'"
    )
    expr = f"CASE WHEN isfinite({{c}}) AND {{c}} >= {floor} THEN {fmt} ELSE {{c}}::text END"
    return Mapping("TEXT", expr, kind=kind)


def _float_value(v: float) -> Any:
    if v != v:
        return "NaN"  # SQLite stores NaN as NULL; the text keeps it
    return 0.0 if v == 0 else v  # SQLite stores -0.0 as 0.0


def _numeric_real(v: str) -> Any:
    try:
        f = float(v)
    except ValueError:
        return v
    return "NaN" if f != f else f


def _numeric_lossy(v: str) -> bool:
    try:
        f = float(v)
        if math.isinf(f) or f != f:
            return False
        return repr(f) != v and Decimal(repr(f)) != Decimal(v)
    except (ValueError, InvalidOperation):
        return False


def _micros_to_ms(v: str) -> Any:
    if v[-1].isdigit():
        return int(v) // 1000
    return v  # 'infinity' / '-infinity'


def _micros_lossy(v: str) -> bool:
    return v[-1].isdigit() and int(v) % 1000 != 0


# -- values as SQL text -------------------------------------------------------------------
def sql_literal(value: Any) -> str:
    """A D1 value as an SQLite literal (for `--sql-out` files and DDL)."""
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            return f"CAST(X'{value.encode('utf-8').hex()}' AS TEXT)"
        return "'" + value.replace("'", "''") + "'"
    if kind is int:
        return str(value)
    if kind is float:
        if math.isinf(value):
            return "9e999" if value > 0 else "-9e999"
        return repr(value)
    if kind is bytes:
        return f"X'{value.hex()}'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (bytearray, memoryview)):
        return f"X'{bytes(value).hex()}'"
    raise TypeError(f"not a D1 value: {value!r}")


# -- expressions ----------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<str>[eE]?'(?:[^']|'')*')
    |(?P<qid>"(?:[^"]|"")*")
    |(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<param>\$\d+)
    |(?P<op>::|->>|->|\#>>|\#>|!~~\*|!~~|~~\*|~~|!~\*|!~|~\*|<>|<=|>=|!=|\|\||@>|<@|\?\||\?&|&&
        |[-+*/%<>=~!@\#^&|?])
    |(?P<punct>[()\[\],.;])""",
    re.VERBOSE,
)
# Multi-word type names as Postgres prints them after `::`.
_TYPE_WORDS = {"varying", "precision", "with", "without", "time", "zone"}
_INTEGER_CASTS = INT_TYPES | {"int"}
_REAL_CASTS = FLOAT_TYPES | {"float"}
_BOOL_TRUE = {"t", "true", "y", "yes", "on", "1"}
_LIKE = {"~~": "LIKE", "!~~": "NOT LIKE", "~~*": "LIKE", "!~~*": "NOT LIKE"}
_NO_OPERATOR = {
    "~": "regular expressions (~)",
    "~*": "regular expressions (~*)",
    "!~": "regular expressions (!~)",
    "!~*": "regular expressions (!~*)",
    "@>": "containment (@>)",
    "<@": "containment (<@)",
    "?": "JSON key existence (?)",
    "?|": "JSON key existence (?|)",
    "?&": "JSON key existence (?&)",
    "#>": "JSON path (#>)",
    "#>>": "JSON path (#>>)",
    "&&": "array overlap (&&)",
    "^": "the power operator (^)",
}
# Postgres functions and their SQLite names.
FUNCTIONS = {
    "char_length": "length",
    "character_length": "length",
    "btrim": "trim",
    "greatest": "max",
    "least": "min",
    "ceiling": "ceil",
    "substring": "substr",
    "strpos": "instr",
    "json_typeof": "json_type",
    "jsonb_typeof": "json_type",
    "json_array_length": "json_array_length",
    "jsonb_array_length": "json_array_length",
    "power": "pow",
}
SAME_FUNCTIONS = set(
    """lower upper length abs coalesce nullif trim ltrim rtrim replace round substr max min
    count sum avg ceil floor sign sqrt exp ln log log10 pow mod trunc instr row_number rank
    dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    json_type""".split()
)
# Reserved words that may be followed by "(" without being function calls.
_KEYWORDS = set(
    """and or not in is null as on using where from join select exists case when then else
    end any all distinct filter over partition by order group having values like between
    asc desc nulls first last limit offset union intersect except with inner left right
    full outer cross lateral array true false""".split()
)


@dataclass
class ExprContext:
    """What an expression translation needs to know about its surroundings."""

    timestamps: str = "iso"
    # Turns a Postgres literal ("'2024-01-01'", "date") into the D1 literal of its value.
    literal: Callable[[str, str], str] | None = None
    # Columns whose values are numeric text: compared as numbers via CAST.
    numeric_columns: set[str] = field(default_factory=set)
    # Postgres table names ("public.orders", "orders") to D1 names.
    tables: dict[str, str] = field(default_factory=dict)
    # The time representation of a column compared with now(), if known.
    now_kind: str = "timestamptz"


class _Array:
    """ARRAY[...] or '{...}'::type[] while translating: becomes IN (...) or JSON text."""

    def __init__(self, elements: list[str]) -> None:
        self.elements = elements

    def __str__(self) -> str:
        import json

        values: list[Any] = []
        for element in self.elements:
            if element == "NULL":
                values.append(None)
            elif element.startswith("'") and element.endswith("'"):
                values.append(element[1:-1].replace("''", "'"))
            else:
                try:
                    values.append(json.loads(element))
                except ValueError:
                    raise Untranslatable(f"array of expressions ({element})") from None
        return sql_literal(json.dumps(values, ensure_ascii=False, separators=(",", ":")))


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Untranslatable(f"cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group(0)))
    return tokens


def translate_expr(text: str, ctx: ExprContext | None = None) -> str:
    """A Postgres expression (as pg_get_expr prints it) in SQLite's dialect.

    Raises Untranslatable naming the construct that D1 cannot express.
    """
    translator = _Translator(tokenize(text.strip().rstrip(";")), ctx or ExprContext())
    items = translator.sequence(closing=None)
    return _join(items)


def _join(items: list[Any]) -> str:
    out = ""
    for item in items:
        piece = str(item)
        if out and piece not in (",", ")", "]", ";") and not out.endswith(("(", "[")):
            out += " "
        out += piece
    return out


class _Translator:
    def __init__(self, tokens: list[tuple[str, str]], ctx: ExprContext) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ctx = ctx

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def sequence(self, closing: str | None) -> list[Any]:
        items: list[Any] = []
        while True:
            kind, text = self.peek()
            if kind == "eof":
                if closing:
                    raise Untranslatable(f"unbalanced expression (missing {closing})")
                return items
            if kind == "punct" and text in ")]":
                if text != closing:
                    raise Untranslatable(f"unbalanced expression ({text})")
                self.take()
                return items
            self.take()
            if kind == "punct" and text == "(":
                items.append(_Group("(", self.sequence(")"), ")"))
            elif kind == "punct" and text == "[":
                raise Untranslatable("array subscripts")
            elif kind == "op" and text == "::":
                self.cast(items)
            elif kind == "op":
                items.append(self.operator(text, items))
            elif kind == "id":
                self.identifier(text, items)
            elif kind == "qid":
                items.append(self.name_path(text, items))
            elif kind == "str":
                if text[0] in "eE":
                    raise Untranslatable("escape string literals (E'...')")
                items.append(text)
            elif kind == "param":
                raise Untranslatable("parameters")
            else:
                items.append(text)

    def operator(self, op: str, items: list[Any]) -> str:
        if op in _LIKE:
            return _LIKE[op]
        if op in _NO_OPERATOR:
            raise Untranslatable(f"{_NO_OPERATOR[op]} has no SQLite equivalent")
        return op

    def name_path(self, first: str, items: list[Any]) -> str:
        """`a`, `a.b` or `a.b.c`; schema-qualified table names become D1 names."""
        parts = [first]
        while self.peek() == ("punct", ".") and self.peek(1)[0] in ("id", "qid"):
            self.take()
            parts.append(self.take()[1])
        bare = [p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts]
        for n in (2, 1):
            if len(bare) >= n:
                dotted = ".".join(bare[:n])
                if dotted in self.ctx.tables and (n == 2 or len(bare) == 1):
                    rest = parts[n:]
                    return ".".join([quote(self.ctx.tables[dotted]), *rest])
        if len(bare) == 1 and bare[0] in self.ctx.numeric_columns:
            return f"CAST({parts[0]} AS NUMERIC)"
        return ".".join(parts)

    def identifier(self, word: str, items: list[Any]) -> None:
        low = word.lower()
        nxt = self.peek()
        if nxt == ("punct", "(") and low not in _KEYWORDS:
            self.take()
            items.append(self.call(low, self.sequence(")")))
            return
        if low == "array" and nxt == ("punct", "["):
            self.take()
            items.append(_Array(_split_commas(self.sequence("]"))))
            return
        if low in ("any", "all") and nxt == ("punct", "("):
            self.take()
            inner = self.sequence(")")
            op = items.pop() if items else None
            arrays = [i for i in inner if isinstance(i, _Array)]
            if len(inner) != 1 or not arrays:
                raise Untranslatable(f"{word}(...) over something other than a list")
            elements = ", ".join(arrays[0].elements)
            if low == "any" and op == "=":
                items.append(f"IN ({elements})")
            elif low == "all" and op in ("<>", "!="):
                items.append(f"NOT IN ({elements})")
            else:
                raise Untranslatable(f"{op} {word}(...)")
            return
        if low in ("true", "false"):
            items.append("1" if low == "true" else "0")
        elif low in ("current_timestamp", "localtimestamp"):
            items.append(self.now())
        elif low == "current_date":
            items.append(NOW_SQL[(self.ctx.timestamps, "date")])
        elif low in ("current_time", "localtime", "current_user", "session_user", "user"):
            raise Untranslatable(f"{word} has no SQLite equivalent")
        elif low == "similar":
            raise Untranslatable("SIMILAR TO has no SQLite equivalent")
        elif low == "distinct" and len(items) >= 1 and str(items[-1]).upper() in ("IS", "NOT"):
            # IS [NOT] DISTINCT FROM -> IS NOT / IS
            if self.peek()[1].lower() != "from":
                items.append(word)
                return
            self.take()
            if str(items[-1]).upper() == "NOT":
                items.pop()  # IS NOT DISTINCT FROM: equal, NULLs included
            else:
                items.append("NOT")
        elif low in _KEYWORDS:
            items.append(word.upper())
        else:
            items.append(self.name_path(word, items))

    def now(self) -> str:
        return NOW_SQL[(self.ctx.timestamps, self.ctx.now_kind)]

    def call(self, name: str, args: list[Any]) -> str:
        name = name.removeprefix("pg_catalog.")
        if name in NOW_FUNCTIONS:
            return self.now()
        if name in UUID_FUNCTIONS:
            return UUID_SQL
        if name == "random" and not args:
            return "((random() / 18446744073709551616.0) + 0.5)"
        if name == "substring":
            args = [("," if str(a).lower() in ("from", "for") else a) for a in args]
        if name == "octet_length":
            return f"length(CAST({_join(args)} AS BLOB))"
        target = FUNCTIONS.get(name) or (name if name in SAME_FUNCTIONS else None)
        if target is None:
            raise Untranslatable(f"function {name}() has no D1 equivalent")
        return f"{target}({_join(args)})"

    def cast(self, items: list[Any]) -> None:
        if not items:
            raise Untranslatable("a cast without an operand")
        operand = items.pop()
        type_name, is_array = self.type_name()
        base = type_name.lower()
        if is_array:
            if isinstance(operand, _Array):
                items.append(operand)
            elif isinstance(operand, str) and operand.startswith("'"):
                items.append(_Array(_array_literal(operand[1:-1].replace("''", "'"), base)))
            else:
                raise Untranslatable(f"cast of an expression to {type_name}[]")
            return
        literal = isinstance(operand, str) and operand.startswith("'")
        if base in _INTEGER_CASTS:
            items.append(f"CAST({operand} AS INTEGER)")
        elif base in _REAL_CASTS:
            items.append(f"CAST({operand} AS REAL)")
        elif base == "boolean" and literal:
            items.append("1" if operand[1:-1].lower() in _BOOL_TRUE else "0")
        elif literal and self.ctx.literal is not None and base not in TEXT_TYPES:
            items.append(self.ctx.literal(str(operand), type_name))
        elif base in ("numeric", "decimal") and not literal:
            items.append(f"CAST({operand} AS NUMERIC)")
        elif base == "interval":
            raise Untranslatable("intervals have no SQLite equivalent")
        else:
            items.append(operand)  # text-like, uuid, json, enums, regclass: same value

    def type_name(self) -> tuple[str, bool]:
        kind, text = self.take()
        if kind not in ("id", "qid"):
            raise Untranslatable(f"unexpected {text!r} after ::")
        words = [text.strip('"')]
        while self.peek() == ("punct", "."):
            self.take()
            words[-1] = self.take()[1].strip('"')  # schema-qualified: keep the type's name
        while self.peek()[0] == "id" and self.peek()[1].lower() in _TYPE_WORDS:
            words.append(self.take()[1])
        if self.peek() == ("punct", "("):
            self.take()
            self.sequence(")")  # modifiers: varchar(20), numeric(10,2)
        is_array = False
        while self.peek() == ("punct", "[") and self.peek(1) == ("punct", "]"):
            self.pos += 2
            is_array = True
        return " ".join(words), is_array


class _Group:
    def __init__(self, open: str, items: list[Any], close: str) -> None:
        self.items = items
        self.open, self.close = open, close
        # A parenthesized list holding one array keeps it visible to ANY(...)
        if len(items) == 1 and isinstance(items[0], _Array):
            self.array: _Array | None = items[0]
        else:
            self.array = None

    def __str__(self) -> str:
        return self.open + _join(self.items) + self.close


def _split_commas(items: list[Any]) -> list[str]:
    elements: list[str] = []
    current: list[Any] = []
    for item in [*items, ","]:
        if item == ",":
            if current:
                elements.append(_join(current))
            current = []
        else:
            current.append(item)
    return elements


def _array_literal(text: str, base: str) -> list[str]:
    """'{a,"b c",NULL}' -> SQL literals; nested arrays are refused."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise Untranslatable(f"array literal {text!r}")
    body = text[1:-1]
    if "{" in body:
        raise Untranslatable("multidimensional array literals")
    elements: list[str] = []
    for raw, quoted in _array_items(body) if body.strip() else []:
        if quoted:
            elements.append(sql_literal(raw))
        elif raw.upper() == "NULL":
            elements.append("NULL")
        elif base in _INTEGER_CASTS | _REAL_CASTS | {"numeric"} and _is_number(raw):
            elements.append(raw)
        else:
            elements.append(sql_literal(raw))
    return elements


def _array_items(body: str) -> list[tuple[str, bool]]:
    """The items of an array literal's body: (text, was it double-quoted)."""
    items: list[tuple[str, bool]] = []
    current: list[str] = []
    in_quotes = quoted = False
    i = 0
    while i < len(body):
        ch = body[i]
        if in_quotes:
            if ch == "\\" and i + 1 < len(body):
                current.append(body[i + 1])
                i += 1
            elif ch == '"':
                in_quotes = False
            else:
                current.append(ch)
        elif ch == '"':
            in_quotes = quoted = True
            current = []  # only blanks came before the quote
        elif ch == ",":
            items.append(("".join(current) if quoted else "".join(current).strip(), quoted))
            current, quoted = [], False
        elif not (quoted and ch.isspace()):
            current.append(ch)
        i += 1
    items.append(("".join(current) if quoted else "".join(current).strip(), quoted))
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# -- DDL ------------------------------------------------------------------------------------------
@dataclass
class ColumnDDL:
    name: str
    type: str
    not_null: bool = False
    default: str | None = None  # SQLite expression or literal
    checks: list[str] = field(default_factory=list)
    collate: str | None = None
    primary_key: str | None = None  # "PRIMARY KEY" / "PRIMARY KEY AUTOINCREMENT" inline

    def sql(self) -> str:
        parts = [quote(self.name), self.type]
        if self.primary_key:
            parts.append(self.primary_key)
        if self.not_null:
            parts.append("NOT NULL")
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if self.collate:
            parts.append(f"COLLATE {self.collate}")
        parts += [f"CHECK ({check})" for check in self.checks]
        return " ".join(parts)


def create_table_sql(name: str, columns: list[ColumnDDL], constraints: list[str]) -> str:
    body = ",\n  ".join([c.sql() for c in columns] + constraints)
    return f"CREATE TABLE {quote(name)} (\n  {body}\n)"


def default_sql(expr: str) -> str:
    """A DEFAULT clause body: literals as they are, anything else in parentheses."""
    if re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?|'(?:[^']|'')*'|NULL|X'[0-9a-fA-F]*'", expr, re.I):
        return expr
    return expr if expr.startswith("(") and expr.endswith(")") else f"({expr})"
