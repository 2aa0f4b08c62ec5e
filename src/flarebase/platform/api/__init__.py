"""The `api` provider: Cloudflare's REST API (the official `cloudflare` SDK) and R2's
S3 API (boto3), for migrations and administration from a laptop.

    async with open_env("wrangler.toml", provider="api") as env:
        await env.DB.prepare("SELECT count(*) AS n FROM users").first("n")

The bindings are the project's wrangler.toml ones, with the same Python API as the
local provider: D1 (`database_id`), KV (`id`), Vectorize (`index_name`), Queue
producers (queue names) and R2 (`bucket_name`). Durable Objects live only inside
Workers: their bindings exist but refuse use.

Configuration (arguments win over the environment):
- `account_id` / $CLOUDFLARE_ACCOUNT_ID, `api_token` / $CLOUDFLARE_API_TOKEN: the
  token needs D1, Workers KV Storage, Vectorize and Queues permissions (Edit for
  writes) as the bindings used require;
- `r2_access_key_id` / $R2_ACCESS_KEY_ID, `r2_secret_access_key` /
  $R2_SECRET_ACCESS_KEY: an R2 API token's S3 credentials; the endpoint is
  https://<account_id>.r2.cloudflarestorage.com (`r2_endpoint_url` to change it,
  e.g. for a jurisdiction: https://<account_id>.eu.r2.cloudflarestorage.com),
  region "auto" (`r2_region`);
- `base_url`: the API's root (default https://api.cloudflare.com/client/v4; tests
  point it at a local fake), `timeout` (seconds per request), `retries`,
  `max_retry_wait`, `rate_limit` (see below). `state_dir` is accepted and unused, so
  that code written for the local provider can switch by name.

Rate limits. The Cloudflare API allows 1,200 requests per five minutes per user,
counted across everything that user runs (dashboard, wrangler, API tokens, this
provider); past it, every call is answered HTTP 429, with a Retry-After header in
seconds, until the window has passed. Each D1, KV, Vectorize or Queues call here is
one API request (a D1 `batch()` of many statements is one; KV `get_with_metadata()`
of bytes or a stream is two; the first Queue send adds one to look queue ids up).
R2 goes to its S3 endpoint, which is not under this limit (R2 has its own, per
bucket and object). So this provider
- spaces its own requests to at most `rate_limit` (default 1,200) per rolling five
  minutes, counted in this process; pass a lower figure when other tools share the
  user, or None to switch the limiter off;
- retries an idempotent call (every read, KV put/delete, Vectorize writes, a D1
  statement or batch that only reads) answered 429, 500, 502, 503 or 504, or not
  answered at all: up to `retries` (default 4) times, waiting what Retry-After asks
  when that is at most `max_retry_wait` (default 300 s) and raising at once when it
  is more, else backing off 0.5 s, 1 s, 2 s, ... with jitter;
- never retries a call that may have taken effect (D1 writes, Queue sends): its
  failure is raised with Cloudflare's message, for the caller to decide.
R2 requests are retried by boto3's "standard" retry mode (throttling, 5xx and
connection errors, up to `retries` times), for every operation: a conditional put
whose first answer was lost can then report None although it was stored.
To stay within the limit, batch: one D1 `batch()` per chunk of rows, KV bulk reads
of up to 100 keys, Vectorize writes of up to 5,000 vectors, Queue `send_batch()` of
up to 100 messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import D1Spec, KVSpec, Project, QueueProducerSpec, R2Spec, VectorizeSpec
from ..durable_objects import UnreachableNamespace
from ..errors import ConfigError
from .client import API_LIMIT, API_WINDOW, ApiClient, ApiFailure, RateLimiter

__all__ = ["ApiClient", "ApiFailure", "ApiProvider", "RateLimiter"]


class ApiProvider:
    name = "api"

    def __init__(
        self,
        project: Project,
        account_id: str | None = None,
        api_token: str | None = None,
        *,
        base_url: str | None = None,
        r2_access_key_id: str | None = None,
        r2_secret_access_key: str | None = None,
        r2_endpoint_url: str | None = None,
        r2_region: str = "auto",
        timeout: float = 60.0,
        retries: int = 4,
        max_retry_wait: float = API_WINDOW,
        rate_limit: int | None = API_LIMIT,
        state_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        for hosted in ("durable_objects", "queue_consumers"):
            if options.pop(hosted, None):
                raise ConfigError(
                    f"api provider: {hosted} written in Python run in the local provider; "
                    "on Cloudflare they are a Worker's own"
                )
        if options:
            raise ConfigError(f"api provider: unknown options {', '.join(sorted(options))}")
        self.project = project
        self.account_id = account_id or os.environ.get("CLOUDFLARE_ACCOUNT_ID")
        self.client = ApiClient(
            self.account_id,
            api_token or os.environ.get("CLOUDFLARE_API_TOKEN"),
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            max_retry_wait=max_retry_wait,
            rate_limit=rate_limit,
        )
        self._r2_options: dict[str, Any] = {
            "key_id": r2_access_key_id or os.environ.get("R2_ACCESS_KEY_ID"),
            "secret": r2_secret_access_key or os.environ.get("R2_SECRET_ACCESS_KEY"),
            "endpoint": r2_endpoint_url,
            "region": r2_region,
            "timeout": timeout,
            "retries": retries,
        }
        self._s3: Any = None
        self._queues: Any = None

    @property
    def s3(self) -> Any:
        """The S3 client of R2's endpoint, made when an R2 binding is first used."""
        if self._s3 is None:
            from .s3 import make_client

            o = self._r2_options
            if not o["key_id"] or not o["secret"]:
                raise ConfigError(
                    "api provider: R2 needs S3 credentials: give r2_access_key_id= and "
                    "r2_secret_access_key= (or set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY)"
                )
            endpoint = o["endpoint"]
            if not endpoint:
                if not self.account_id:
                    raise ConfigError(
                        "api provider: R2 needs account_id= (or CLOUDFLARE_ACCOUNT_ID) "
                        "or r2_endpoint_url="
                    )
                endpoint = f"https://{self.account_id}.r2.cloudflarestorage.com"
            self._s3 = make_client(
                endpoint, o["key_id"], o["secret"], o["region"], o["timeout"], o["retries"]
            )
        return self._s3

    # -- bindings ----------------------------------------------------------------------------

    def d1(self, spec: D1Spec) -> Any:
        from .d1 import ApiD1

        if not spec.database_id:
            raise ConfigError(
                f"{self.project.path}: D1 binding {spec.binding} has no database_id "
                "(the api provider reaches the database by id)"
            )
        return ApiD1(self.client, spec.database_id)

    def kv(self, spec: KVSpec) -> Any:
        from .kv import ApiKV

        if not spec.id:
            raise ConfigError(f"{self.project.path}: KV binding {spec.binding} has no id")
        return ApiKV(self.client, spec.id)

    def r2(self, spec: R2Spec) -> Any:
        from .r2 import ApiR2

        return ApiR2(lambda: self.s3, spec.name)

    def vectorize(self, spec: VectorizeSpec) -> Any:
        from .vectorize import ApiVectorize

        return ApiVectorize(self.client, spec.index_name)

    def durable_object(self, spec: Any) -> Any:
        return ApiDurableObjectNamespace(spec.name, spec.class_name)

    def queue(self, spec: QueueProducerSpec) -> Any:
        from .queues import ApiQueue, QueueDirectory

        if self._queues is None:
            self._queues = QueueDirectory(self.client)
        return ApiQueue(self.client, self._queues, spec)

    async def start(self, env: Any) -> None:
        pass

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._s3 is not None:
            self._s3.close()


class ApiDurableObjectNamespace(UnreachableNamespace):
    """A `[[durable_objects.bindings]]` entry: Durable Objects are reached only from
    inside Workers (no REST API drives them); using the binding says so."""

    def __init__(self, binding: str, class_name: str) -> None:
        super().__init__(
            binding,
            class_name,
            "Durable Objects are not reachable through Cloudflare's REST API; use the bridge "
            "provider or the local one",
        )
