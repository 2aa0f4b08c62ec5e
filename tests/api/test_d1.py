"""D1 over the REST API, against a recording fake of api.cloudflare.com (no real
account is reachable here): exact requests, result mapping, errors and retries.

Request and answer shapes are those of Cloudflare's API reference for "Query D1
Database" (`POST .../d1/database/{id}/query`, body `{sql, params}` or `{batch: [...]}`)
and "Raw D1 Database query" (`.../raw`, results `{columns, rows}`).
"""

from __future__ import annotations

import pytest

from flarebase.platform import D1Error, Env
from flarebase.platform.d1 import D1ExecResult, D1Meta

from .conftest import TOKEN, api
from .fake_cloudflare import FakeCloudflare, Reply, fail, ok

DB = "0b5c7e2a-db00-4c1d-9a55-1d1e0000d1d1"
QUERY = api(f"/d1/database/{DB}/query")
RAW = api(f"/d1/database/{DB}/raw")
META = {
    "changed_db": True,
    "changes": 1,
    "duration": 0.25,
    "last_row_id": 42,
    "rows_read": 0,
    "rows_written": 1,
    "served_by_colo": "LHR",
    "size_after": 16384,
}


def result(rows: list[dict[str, object]], meta: dict[str, object] | None = None) -> dict:
    return {"results": rows, "success": True, "meta": meta or {"duration": 0.1}}


async def test_all_posts_sql_and_params_and_maps_the_result(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, ok([result([{"id": 1, "name": "ada"}], META)]))

    res = await env.DB.prepare("SELECT * FROM users WHERE id = ? AND name = ?").bind(1, "ada").all()

    [request] = fake.requests
    assert request.auth == f"Bearer {TOKEN}"
    assert request.json == {
        "sql": "SELECT * FROM users WHERE id = ? AND name = ?",
        "params": [1, "ada"],
    }
    assert res.results == [{"id": 1, "name": "ada"}]
    assert res.success is True
    assert res.meta == D1Meta(
        duration=0.25,
        changes=1,
        last_row_id=42,
        changed_db=True,
        size_after=16384,
        rows_read=0,
        rows_written=1,
        served_by="LHR",
    )
    assert isinstance(res.meta.last_row_id, int)


async def test_bind_sends_what_json_carries_faithfully(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, ok([result([])]))

    await env.DB.prepare("INSERT INTO t VALUES (?, ?, ?, ?)").bind(True, None, 1.5, 2**53 - 1).run()

    # Compared as text: in Python True == 1, so parsed JSON could not tell them apart.
    assert b'"params":[1,null,1.5,9007199254740991]' in fake.requests[0].body


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\x00\x01", r"unhex\(\?\)"),
        (2**53, "bind it as a string"),
        (float("nan"), "cannot be sent"),
        (object(), "not supported"),
    ],
)
async def test_values_json_would_change_are_refused_before_any_request(
    env: Env, fake: FakeCloudflare, value: object, words: str
):
    with pytest.raises(D1Error, match=words) as caught:
        env.DB.prepare("SELECT ?").bind(value)
    assert caught.value.code == "D1_TYPE_ERROR"
    assert fake.requests == []


async def test_first_returns_the_first_row_or_a_column(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, ok([result([{"n": 3, "m": 4}, {"n": 5, "m": 6}])]))
    stmt = env.DB.prepare("SELECT n, m FROM t")

    assert await stmt.first() == {"n": 3, "m": 4}
    assert await stmt.first("m") == 4
    with pytest.raises(D1Error) as caught:
        await stmt.first("nope")
    assert caught.value.code == "D1_COLUMN_NOTFOUND"


async def test_first_of_no_rows_is_none(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, ok([result([])]))
    assert await env.DB.prepare("SELECT 1 WHERE 0").first() is None


async def test_raw_uses_the_raw_endpoint(env: Env, fake: FakeCloudflare):
    answer = {"results": {"columns": ["a", "b"], "rows": [[1, "x"], [2, None]]}, "success": True}
    fake.answer("POST", RAW, ok([answer]))
    stmt = env.DB.prepare("SELECT a, b FROM t WHERE a > ?").bind(0)

    assert await stmt.raw() == [[1, "x"], [2, None]]
    assert await stmt.raw(column_names=True) == [["a", "b"], [1, "x"], [2, None]]
    assert [r.path for r in fake.requests] == [RAW, RAW]
    assert fake.requests[0].json == {"sql": "SELECT a, b FROM t WHERE a > ?", "params": [0]}


async def test_batch_is_one_request_with_each_statement_and_its_params(
    env: Env, fake: FakeCloudflare
):
    fake.answer(
        "POST",
        QUERY,
        ok([result([], {"changes": 1, "last_row_id": 7}), result([{"n": 1}])]),
    )
    insert = env.DB.prepare("INSERT INTO t (name) VALUES (?)")

    results = await env.DB.batch(
        [insert.bind("ada"), env.DB.prepare("SELECT count(*) AS n FROM t")]
    )

    [request] = fake.requests
    assert request.json == {
        "batch": [
            {"sql": "INSERT INTO t (name) VALUES (?)", "params": ["ada"]},
            {"sql": "SELECT count(*) AS n FROM t", "params": []},
        ]
    }
    assert [r.meta.last_row_id for r in results] == [7, 0]
    assert results[1].results == [{"n": 1}]


async def test_exec_sends_the_text_and_counts_the_statements(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, ok([result([], {"duration": 1.5}), result([], {"duration": 2})]))
    sql = "CREATE TABLE a (x);\nCREATE TABLE b (y);"

    assert await env.DB.exec(sql) == D1ExecResult(count=2, duration=3.5)
    assert fake.requests[0].json == {"sql": sql}


async def test_sql_errors_carry_cloudflares_message(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, fail(400, 7500, "no such table: nope: SQLITE_ERROR"))

    with pytest.raises(D1Error) as caught:
        await env.DB.prepare("SELECT * FROM nope").all()

    assert str(caught.value) == "D1_ERROR: no such table: nope: SQLITE_ERROR [code: 7500]"
    assert caught.value.code == "D1_ERROR"


async def test_exec_errors_are_d1_exec_errors(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, fail(400, 7500, 'near "CREAT": syntax error: SQLITE_ERROR'))

    with pytest.raises(D1Error) as caught:
        await env.DB.exec("CREAT TABLE x (y)")

    assert caught.value.code == "D1_EXEC_ERROR"
    assert str(caught.value).startswith('D1_EXEC_ERROR: near "CREAT": syntax error')


async def test_one_prepared_statement_is_one_statement(env: Env, fake: FakeCloudflare):
    with pytest.raises(D1Error, match="only one statement"):
        await env.DB.prepare("SELECT 1; DROP TABLE users").all()
    assert fake.requests == []


async def test_a_rate_limited_read_is_retried_after_retry_after(env: Env, fake: FakeCloudflare):
    limited = fail(429, 971, "Please wait and consider throttling your request speed")
    limited.headers["retry-after"] = "0"
    fake.answer("POST", QUERY, limited, ok([result([{"n": 1}])]))

    res = await env.DB.prepare("SELECT 1 AS n").all()

    assert res.results == [{"n": 1}]
    assert len(fake.requests) == 2


async def test_a_write_is_not_retried(env: Env, fake: FakeCloudflare):
    fake.answer("POST", QUERY, Reply(503, {"success": False, "errors": []}), ok([result([])]))

    with pytest.raises(D1Error, match="503"):
        await env.DB.prepare("INSERT INTO t VALUES (1)").run()
    assert len(fake.requests) == 1


async def test_dump_is_not_offered(env: Env):
    with pytest.raises(D1Error, match="wrangler d1 export"):
        await env.DB.dump()
