"""D1 conformance: the binding API, result shapes, semantics and every documented limit."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from flarebase.platform import D1Error, Env
from flarebase.platform.errors import TooManyOperations
from flarebase.platform.invocation import invocation

pytestmark = pytest.mark.asyncio


async def make_table(env: Env) -> None:
    await env.DB.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")


# -- API and result shapes ---------------------------------------------------------------
async def test_all_returns_rows_and_meta(env: Env) -> None:
    res = await env.DB.prepare("SELECT ?1 AS x, ?2 AS y").bind(1, "a").all()
    assert res.success is True
    assert res.results == [{"x": 1, "y": "a"}]
    assert res.meta.changes == 0
    assert res.meta.changed_db is False
    assert res.meta.rows_read == 1
    assert res.meta.duration >= 0
    assert res.meta.size_after > 0


async def test_run_reports_changes_and_last_row_id(env: Env) -> None:
    await make_table(env)
    ins = env.DB.prepare("INSERT INTO t (name) VALUES (?)")
    first = await ins.bind("a").run()
    second = await ins.bind("b").run()
    assert (first.meta.changes, first.meta.last_row_id) == (1, 1)
    assert (second.meta.changes, second.meta.last_row_id) == (1, 2)
    assert second.meta.changed_db is True and second.meta.rows_written == 1
    upd = await env.DB.prepare("UPDATE t SET score = 1").run()
    assert upd.meta.changes == 2


async def test_bind_returns_a_new_statement(env: Env) -> None:
    stmt = env.DB.prepare("SELECT ? AS v")
    a, b = stmt.bind(1), stmt.bind(2)
    assert await a.first("v") == 1
    assert await b.first("v") == 2


async def test_numbered_parameters_can_repeat_and_reorder(env: Env) -> None:
    row = await env.DB.prepare("SELECT ?2 AS a, ?1 AS b, ?2 AS c").bind("one", "two").first()
    assert row == {"a": "two", "b": "one", "c": "two"}


async def test_first_with_and_without_column(env: Env) -> None:
    await make_table(env)
    assert await env.DB.prepare("SELECT * FROM t").first() is None
    assert await env.DB.prepare("SELECT * FROM t").first("name") is None
    await env.DB.prepare("INSERT INTO t (name, score) VALUES ('x', 2.5)").run()
    assert await env.DB.prepare("SELECT name, score FROM t").first() == {"name": "x", "score": 2.5}
    assert await env.DB.prepare("SELECT name FROM t").first("name") == "x"
    with pytest.raises(D1Error, match=r"D1_COLUMN_NOTFOUND: Column not found \(nope\)") as e:
        await env.DB.prepare("SELECT name FROM t").first("nope")
    assert e.value.code == "D1_COLUMN_NOTFOUND"


async def test_raw_with_and_without_column_names(env: Env) -> None:
    stmt = env.DB.prepare("SELECT 1 AS a, 'b' AS b UNION ALL SELECT 2, 'c'")
    assert await stmt.raw() == [[1, "b"], [2, "c"]]
    assert await stmt.raw(column_names=True) == [["a", "b"], [1, "b"], [2, "c"]]


async def test_value_types_round_trip(env: Env) -> None:
    await make_table(env)
    blob = bytes(range(256))
    text = "héllo ✓ 😀 \x00 nul"
    await env.DB.prepare("INSERT INTO t VALUES (?, ?, ?, ?)").bind(2**62, text, -1.5, blob).run()
    await env.DB.prepare("INSERT INTO t VALUES (?, ?, ?, ?)").bind(1, None, True, None).run()
    rows = (await env.DB.prepare("SELECT * FROM t ORDER BY id").all()).results
    assert rows[0] == {"id": 1, "name": None, "score": 1.0, "data": None}
    assert rows[1] == {"id": 2**62, "name": text, "score": -1.5, "data": blob}


@pytest.mark.parametrize("bad", [{"a": 1}, [1, 2], object(), {1, 2}])
async def test_unsupported_bind_types_are_d1_type_errors(env: Env, bad: object) -> None:
    with pytest.raises(D1Error, match="D1_TYPE_ERROR") as e:
        env.DB.prepare("SELECT ?").bind(bad)
    assert e.value.code == "D1_TYPE_ERROR"


async def test_integer_beyond_64_bits_is_rejected(env: Env) -> None:
    with pytest.raises(D1Error, match="D1_TYPE_ERROR"):
        await env.DB.prepare("SELECT ?").bind(2**64).all()


async def test_wrong_number_of_bindings(env: Env) -> None:
    with pytest.raises(D1Error, match="Wrong number of parameter bindings"):
        await env.DB.prepare("SELECT ?, ?").bind(1).all()


async def test_syntax_error_has_d1_wording(env: Env) -> None:
    with pytest.raises(D1Error, match=r'^D1_ERROR: near "SELEC": syntax error.*SQLITE_ERROR'):
        await env.DB.prepare("SELEC 1").all()


async def test_prepare_takes_only_strings(env: Env) -> None:
    with pytest.raises(D1Error, match="D1_TYPE_ERROR"):
        env.DB.prepare(42)


# -- batch and exec -----------------------------------------------------------------------
async def test_batch_returns_one_result_per_statement(env: Env) -> None:
    await make_table(env)
    ins = env.DB.prepare("INSERT INTO t (name) VALUES (?)")
    results = await env.DB.batch(
        [ins.bind("a"), ins.bind("b"), env.DB.prepare("SELECT name FROM t")]
    )
    assert [r.meta.changes for r in results] == [1, 1, 0]
    assert results[2].results == [{"name": "a"}, {"name": "b"}]


async def test_batch_failure_rolls_back_everything_and_names_the_statement(env: Env) -> None:
    await make_table(env)
    ins = env.DB.prepare("INSERT INTO t (name) VALUES (?)")
    with pytest.raises(D1Error, match=r"no such table: missing.*statement 2 of batch"):
        await env.DB.batch([ins.bind("a"), env.DB.prepare("INSERT INTO missing VALUES (1)")])
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 0
    # The database is usable afterwards (no transaction left open).
    await ins.bind("b").run()
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 1


async def test_batch_rejects_foreign_objects(env: Env) -> None:
    with pytest.raises(D1Error, match="D1_TYPE_ERROR"):
        await env.DB.batch(["SELECT 1"])


async def test_exec_runs_many_statements(env: Env) -> None:
    res = await env.DB.exec(
        "CREATE TABLE a (x TEXT);\n"
        "INSERT INTO a VALUES ('semi;colon');\n"
        "INSERT INTO a VALUES ('b');"
    )
    assert res.count == 3 and res.duration >= 0
    rows = await env.DB.prepare("SELECT x FROM a ORDER BY rowid").raw()
    assert rows == [["semi;colon"], ["b"]]


async def test_exec_error_is_d1_exec_error(env: Env) -> None:
    with pytest.raises(D1Error, match="D1_EXEC_ERROR") as e:
        await env.DB.exec("CREATE TABLE a (x);\nINSERT INTO nope VALUES (1);")
    assert e.value.code == "D1_EXEC_ERROR"


async def test_exec_runs_line_by_line(env: Env) -> None:
    # D1 runs each line as a query: two statements on one line are one query, blank
    # lines are not queries, and a statement cannot continue on the next line.
    res = await env.DB.exec(
        "CREATE TABLE a (x);\n\nINSERT INTO a VALUES (1); INSERT INTO a VALUES (2);\n"
    )
    assert res.count == 2
    assert await env.DB.prepare("SELECT x FROM a ORDER BY x").raw() == [[1], [2]]
    with pytest.raises(D1Error, match=r"Error in line 1: CREATE TABLE b \(: incomplete input"):
        await env.DB.exec("CREATE TABLE b (\n  x\n);")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "Error in line 1: : No SQL statements detected."),
        ("-- only a comment", "SQL code did not contain a statement."),
        ("INSERT INTO a VALUES (1);;", "SQL code did not contain a statement."),
        ("INSERT INTO a VALUES (1); -- why", "SQL code did not contain a statement."),
    ],
)
async def test_exec_refuses_empty_queries(env: Env, query: str, message: str) -> None:
    await env.DB.exec("CREATE TABLE a (x);")
    with pytest.raises(D1Error, match=re.escape(message)) as e:
        await env.DB.exec(query)
    assert e.value.code == "D1_EXEC_ERROR"
    assert await env.DB.prepare("SELECT x FROM a").raw() == []


async def test_exec_failure_runs_nothing(env: Env) -> None:
    await env.DB.exec("CREATE TABLE a (x);")
    with pytest.raises(D1Error, match="no such table: nope"):
        await env.DB.exec("INSERT INTO a VALUES (1);\nINSERT INTO nope VALUES (2);")
    assert await env.DB.prepare("SELECT x FROM a").raw() == []


async def test_exec_error_names_the_failing_line(env: Env) -> None:
    await env.DB.exec("CREATE TABLE a (x);")
    with pytest.raises(D1Error, match=r"Error in line 2: INSERT INTO nope VALUES \(2\);"):
        await env.DB.exec("INSERT INTO a VALUES (1);\nINSERT INTO nope VALUES (2);")


async def test_dump_is_an_sqlite_image(env: Env) -> None:
    await make_table(env)
    image = await env.DB.dump()
    assert image[:16] == b"SQLite format 3\x00"


# -- semantics ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql", ["BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s"]
)
async def test_transactions_are_refused_with_cloudflares_message(env: Env, sql: str) -> None:
    with pytest.raises(D1Error, match=r"To execute a transaction, please use the state\.storage"):
        await env.DB.prepare(sql).run()


async def test_unlisted_pragmas_are_not_authorized(env: Env) -> None:
    with pytest.raises(D1Error, match="not authorized: SQLITE_AUTH"):
        await env.DB.prepare("PRAGMA journal_mode = DELETE").run()
    assert await env.DB.prepare("PRAGMA foreign_keys").first("foreign_keys") == 1


async def test_foreign_keys_are_enforced(env: Env) -> None:
    await env.DB.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));"
    )
    with pytest.raises(D1Error, match="FOREIGN KEY constraint failed"):
        await env.DB.prepare("INSERT INTO c VALUES (1, 99)").run()


async def test_defer_foreign_keys_lasts_for_the_batch(env: Env) -> None:
    await env.DB.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));"
    )
    await env.DB.batch(
        [
            env.DB.prepare("PRAGMA defer_foreign_keys = on"),
            env.DB.prepare("INSERT INTO c VALUES (1, 7)"),
            env.DB.prepare("INSERT INTO p VALUES (7)"),
        ]
    )
    assert await env.DB.prepare("SELECT p FROM c").first("p") == 7


async def test_deferred_foreign_key_failure_at_commit_is_a_d1_error(env: Env) -> None:
    await env.DB.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));"
    )
    with pytest.raises(D1Error, match="FOREIGN KEY constraint failed"):
        await env.DB.batch(
            [
                env.DB.prepare("PRAGMA defer_foreign_keys = on"),
                env.DB.prepare("INSERT INTO c VALUES (1, 7)"),
            ]
        )
    assert await env.DB.prepare("SELECT count(*) AS n FROM c").first("n") == 0


async def test_attach_is_refused(env: Env, tmp_path: Path) -> None:
    with pytest.raises(D1Error):
        await env.DB.prepare(f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x").run()


async def test_extensions_fts5_json_math_rtree(env: Env) -> None:
    await env.DB.exec("CREATE VIRTUAL TABLE docs USING fts5(body)")
    await env.DB.prepare("INSERT INTO docs VALUES (?)").bind("the quick brown fox").run()
    await env.DB.prepare("INSERT INTO docs VALUES (?)").bind("lazy dogs sleep").run()
    hits = await env.DB.prepare("SELECT body FROM docs WHERE docs MATCH 'fox'").raw()
    assert hits == [["the quick brown fox"]]
    await env.DB.exec("CREATE VIRTUAL TABLE vocab USING fts5vocab(docs, row)")
    assert await env.DB.prepare("SELECT count(*) AS n FROM vocab").first("n") == 7
    j = (
        await env.DB.prepare("SELECT json_extract(?, '$.a.b') AS v")
        .bind('{"a":{"b":[1,2]}}')
        .first()
    )
    assert j == {"v": "[1,2]"}
    assert await env.DB.prepare("SELECT sqrt(16) AS v").first("v") == 4.0
    await env.DB.exec("CREATE VIRTUAL TABLE box USING rtree(id, x0, x1)")
    await env.DB.prepare("INSERT INTO box VALUES (1, 0, 10)").run()
    assert await env.DB.prepare("SELECT id FROM box WHERE x0 <= 5 AND x1 >= 5").first("id") == 1


async def test_concurrent_writers_all_land(env: Env) -> None:
    await make_table(env)
    ins = env.DB.prepare("INSERT INTO t (name) VALUES (?)")
    await asyncio.gather(*(ins.bind(f"n{i}").run() for i in range(200)))
    assert await env.DB.prepare("SELECT count(DISTINCT name) AS n FROM t").first("n") == 200


async def test_state_persists_across_reopen(provider: str, tmp_path: Path) -> None:
    from flarebase.platform import open_env

    from .conftest import CONFIG

    async with open_env(CONFIG, provider=provider, state_dir=tmp_path) as env:
        await env.DB.exec("CREATE TABLE k (v TEXT)")
        await env.DB.prepare("INSERT INTO k VALUES ('kept')").run()
    async with open_env(CONFIG, provider=provider, state_dir=tmp_path) as env:
        assert await env.DB.prepare("SELECT v FROM k").first("v") == "kept"


# -- limits (cloudflare-limits.md, D1 table) -------------------------------------------------
async def test_statement_length_limit_100000_bytes(env: Env) -> None:
    pad = 100_000 - len("SELECT '' AS v") - 10
    ok = "SELECT '" + "x" * pad + "' AS v"
    assert len(await env.DB.prepare(ok).first("v")) == pad
    too_long = "SELECT '" + "x" * 100_001 + "'"
    with pytest.raises(D1Error, match="D1_ERROR"):
        await env.DB.prepare(too_long).all()


async def test_bound_parameter_limit_100(env: Env) -> None:
    ok = await env.DB.prepare("SELECT " + ",".join(["?"] * 100)).bind(*range(100)).raw()
    assert ok == [list(range(100))]
    with pytest.raises(D1Error, match="too many SQL variables"):
        await env.DB.prepare("SELECT " + ",".join(["?"] * 101)).bind(*range(101)).raw()


async def test_column_limit_100(env: Env) -> None:
    cols = ", ".join(f"c{i}" for i in range(100))
    await env.DB.exec(f"CREATE TABLE wide ({cols})")
    with pytest.raises(D1Error, match="too many columns"):
        await env.DB.exec(f"CREATE TABLE wider ({cols}, c100)")


async def test_row_and_value_size_limit_2000000_bytes(env: Env) -> None:
    # Cloudflare's docs say 2,000,000 bytes; workerd enforces 4 MiB (a documented difference).
    await env.DB.exec("CREATE TABLE big (v BLOB)")
    await env.DB.prepare("INSERT INTO big VALUES (?)").bind(b"x" * 1_999_000).run()
    with pytest.raises(D1Error, match="too big"):
        await env.DB.prepare("INSERT INTO big VALUES (?)").bind(b"x" * 2_000_001).run()
    with pytest.raises(D1Error, match="too big"):
        await env.DB.prepare("SELECT zeroblob(2000001)").all()


async def test_function_argument_limit_32(env: Env) -> None:
    # Docs: 32; workerd enforces 127 (documented difference).
    assert await env.DB.prepare(f"SELECT max({','.join(['1'] * 32)}) AS m").first("m") == 1
    with pytest.raises(D1Error, match="too many arguments on function max"):
        await env.DB.prepare(f"SELECT max({','.join(['1'] * 33)})").all()


async def test_like_pattern_limit_50_bytes(env: Env) -> None:
    # Docs: 50 bytes; Miniflare does not enforce it (documented difference).
    assert await env.DB.prepare(f"SELECT 'a' LIKE '{'%' * 50}' AS m").first("m") == 1
    with pytest.raises(D1Error, match="LIKE or GLOB pattern too complex"):
        await env.DB.prepare(f"SELECT 'a' LIKE '{'%' * 51}'").all()


async def test_compound_select_limit_5(env: Env) -> None:
    five = " UNION ALL ".join(["SELECT 1"] * 5)
    assert len(await env.DB.prepare(five).raw()) == 5
    with pytest.raises(D1Error, match="too many terms in compound SELECT"):
        await env.DB.prepare(" UNION ALL ".join(["SELECT 1"] * 6)).raw()


async def test_expression_depth_limit_100(env: Env) -> None:
    deep = "SELECT 1" + " + 1" * 120
    with pytest.raises(D1Error, match="Expression tree is too large"):
        await env.DB.prepare(deep).all()
    assert await env.DB.prepare("SELECT 1" + " + 1" * 90 + " AS v").first("v") == 91


async def test_trigger_depth_limit_10(env: Env) -> None:
    await env.DB.exec(
        "CREATE TABLE chain (n INTEGER);\n"
        "CREATE TRIGGER again AFTER INSERT ON chain WHEN NEW.n < 50 "
        "BEGIN INSERT INTO chain VALUES (NEW.n + 1); END;"
    )
    await env.DB.exec("PRAGMA recursive_triggers = ON")
    await env.DB.prepare("INSERT INTO chain VALUES (45)").run()  # 5 levels deep: fine
    with pytest.raises(D1Error, match="too many levels of trigger recursion"):
        await env.DB.prepare("INSERT INTO chain VALUES (0)").run()


async def test_queries_per_invocation_limit_1000(env: Env) -> None:
    stmt = env.DB.prepare("SELECT 1")
    with invocation():
        for _ in range(1000):
            await stmt.all()
        with pytest.raises(TooManyOperations, match="Too many API requests"):
            await stmt.all()
    await stmt.all()  # outside an invocation nothing is counted
