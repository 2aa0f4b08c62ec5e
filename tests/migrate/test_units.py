"""The pieces without a server: expression translation, literals, statement limits,
load order, checksums and the checkpoint file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flarebase.migrate.checkpoint import Checkpoint, CheckpointError, StageState
from flarebase.migrate.load import bound_inserts, literal_inserts
from flarebase.migrate.model import Plan, TablePlan
from flarebase.migrate.order import load_order
from flarebase.migrate.run import PlanError, validate
from flarebase.migrate.translate import ExprContext, Untranslatable, sql_literal, translate_expr
from flarebase.migrate.verify import Summary, row_digest

TRANSLATED = [
    ("(status = ANY (ARRAY['a'::text, 'b'::text]))", "(status IN ('a', 'b'))"),
    ("(kind <> ALL ('{x,\"y z\"}'::text[]))", "(kind NOT IN ('x', 'y z'))"),
    ("(char_length((name)::text) > 0)", "(length((name)) > 0)"),
    ("((email)::text ~~ '%@%'::text)", "((email) LIKE '%@%')"),
    ("(a IS DISTINCT FROM b)", "(a IS NOT b)"),
    ("(a IS NOT DISTINCT FROM b)", "(a IS b)"),
    ("(active = true)", "(active = 1)"),
    ("(qty)::integer > 0", "CAST((qty) AS INTEGER) > 0"),
    ("(tags <> '{}'::text[])", "(tags <> '[]')"),
    ("(meta ->> 'kind'::text) = 'x'::text", "(meta ->> 'kind') = 'x'"),
    ("lower(public.users.email)", 'lower("users".email)'),
]


@pytest.mark.parametrize(("postgres", "sqlite"), TRANSLATED)
def test_expressions_translate_and_run_in_sqlite(postgres: str, sqlite: str) -> None:
    ctx = ExprContext(tables={"public.users": "users"})
    assert translate_expr(postgres, ctx) == sqlite
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE users (status, kind, name, email, a, b, active, qty, tags, meta)")
    conn.execute(f"SELECT {sqlite} FROM users")  # compiles: the names and functions exist


@pytest.mark.parametrize(
    ("postgres", "reason"),
    [
        ("(email ~ '^[a-z]+@'::text)", "regular expressions"),
        ("(tags @> ARRAY['x'::text])", "containment"),
        ("(created_at > (now() - '1 day'::interval))", "interval"),
        ("(to_tsvector('english'::regconfig, body) @@ q)", "to_tsvector"),
        ("(date_trunc('day'::text, created_at))", "date_trunc"),
    ],
)
def test_untranslatable_expressions_say_why(postgres: str, reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        translate_expr(postgres)


def test_numeric_text_columns_compare_as_numbers() -> None:
    sql = translate_expr("(price <= (100)::numeric)", ExprContext(numeric_columns={"price"}))
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE t (price TEXT CHECK ({sql}))")
    conn.execute("INSERT INTO t VALUES ('9.50')")  # as text, '9.50' <= '100' would be false
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO t VALUES ('150.00')")


def test_literals_round_trip_through_sqlite() -> None:
    values = [
        None,
        0,
        -(2**63),
        2**63 - 1,
        0.1,
        1e300,
        -1e-300,
        float("inf"),
        float("-inf"),
        "",
        "it's",
        "a\x00b",
        "💬 ünï",
        b"",
        b"\x00\xff",
    ]
    conn = sqlite3.connect(":memory:")
    for value in values:
        (back,) = conn.execute(f"SELECT {sql_literal(value)}").fetchone()
        assert back == value and type(back) is type(value), value


def test_statements_stay_within_d1_limits() -> None:
    rows = [(i, "x" * 300, b"\x01" * 100) for i in range(2000)]
    for sql, params in bound_inserts("t", ["a", "b", "c"], rows):
        assert len(params) <= 100 and sql.count("?") == len(params)
    statements = list(literal_inserts("t", ["a", "b", "c"], rows))
    assert len(statements) > 1 and all(len(s.encode()) <= 100_000 for s in statements)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c BLOB)")
    for s in statements:
        conn.execute(s)
    assert conn.execute("SELECT count(*), sum(length(b)), sum(length(c)) FROM t").fetchone() == (
        2000,
        600_000,
        200_000,
    )
    big = [(1, "é" * 150_000, b"\x00" * 120_000)]  # one row over the statement limit
    statements = list(literal_inserts("t", ["a", "b", "c"], big, key=["a"]))
    assert len(statements) > 3 and all(len(s.encode()) <= 100_000 for s in statements)
    conn.execute("DELETE FROM t")
    for s in statements:
        conn.execute(s)
    assert conn.execute("SELECT b, c, typeof(c) FROM t").fetchone() == (*big[0][1:], "blob")


def test_load_order_puts_parents_first_and_finds_cycles() -> None:
    order, cyclic = load_order(
        {
            "messages": {"chats", "messages"},
            "chats": {"users"},
            "users": set(),
            "a": {"b"},
            "b": {"a", "users"},
        }
    )
    assert order.index("users") < order.index("chats") < order.index("messages")
    assert order.index("users") < order.index("b")
    assert cyclic == {"messages", "a", "b"}


def test_checksums_ignore_order_but_see_types_duplicates_and_changes() -> None:
    rows = [(1, "a", 1.5, None, b"x"), (2, "b", 2.0, "", b"")]
    s1, s2 = Summary(), Summary()
    s1.add(rows)
    s2.add(list(reversed(rows)))
    assert s1.checksum == s2.checksum and s1.rows == 2
    assert row_digest((1, "a")) != row_digest((1.0, "a"))  # INTEGER vs REAL
    assert row_digest((1,)) != row_digest(("1",))  # INTEGER vs TEXT
    twice = Summary()
    twice.add([rows[0], rows[0]])
    other = Summary()
    other.add([rows[0], rows[1]])
    assert twice.checksum != other.checksum
    shared = "x" * 20
    assert row_digest((shared, shared)) == row_digest((shared, "".join(["x"] * 20)))


def test_checkpoint_is_replaced_atomically_and_bound_to_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    ck = Checkpoint.open(path, "abc", {"source": "s"})
    ck.stages["copy:t"] = StageState([41], 41)
    ck.save()
    assert not (tmp_path / "ck.json.tmp").exists()
    again = Checkpoint.open(path, "abc")
    assert again.resumed and again.stages["copy:t"].position == [41]
    with pytest.raises(CheckpointError, match="another migration"):
        Checkpoint.open(path, "other")
    assert not Checkpoint.open(path, "other", restart=True).resumed
    assert json.loads(path.read_text())["stages"]["copy:t"]["rows"] == 41


def test_plan_sql_that_sqlite_refuses_is_reported_before_loading() -> None:
    plan = Plan(source="test")
    plan.tables.append(TablePlan("t", "t", ["a"], create_sql='CREATE TABLE "t" ("a" TEXT)'))
    plan.tables.append(TablePlan("users", "auth.users", ["id", "email"]))  # exists already
    good = 'CREATE VIEW IF NOT EXISTS "v" AS SELECT a, email FROM t, users'
    gone = 'CREATE VIEW IF NOT EXISTS "w" AS SELECT a FROM excluded_table'
    bad_index = 'CREATE INDEX IF NOT EXISTS "i" ON "t" (nope)'
    plan.finish_sql = [good, gone, bad_index]
    validate(plan)
    assert plan.finish_sql == [good]
    assert [i.object for i in plan.issues] == [
        'CREATE VIEW IF NOT EXISTS "w"',
        'CREATE INDEX IF NOT EXISTS "i" ON "t" (nope)',
    ]
    assert "excluded_table" in plan.issues[0].reason
    plan.tables[0].create_sql = 'CREATE TABLE "t" ("a" TEXT CHECK (regexp_like(a)))'
    with pytest.raises(PlanError, match="no such function"):
        validate(plan)
