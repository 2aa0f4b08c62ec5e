"""Fixtures for the `api` provider's tests.

No Cloudflare account is reachable here: the Cloudflare REST API is a recording fake
on loopback (`fake_cloudflare.FakeCloudflare`), whose answers are written from
Cloudflare's API reference, and R2's S3 API is moto's S3 server (real boto3 requests,
moto's S3 semantics, not R2's). The tests check the requests the provider sends and
how it reads answers of Cloudflare's shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from flarebase.platform import Env, open_env

from .fake_cloudflare import FakeCloudflare, Recorded

CONFIG = Path(__file__).with_name("wrangler.toml")
ACCOUNT = "acc0123456789"
TOKEN = "tok-test-not-a-secret"
BUCKET = "media"


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeCloudflare]:
    server = FakeCloudflare().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeCloudflare) -> FakeCloudflare:
    fake_server.reset()
    return fake_server


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url: str) -> Any:
    """A plain boto3 client of the moto server, with a fresh, empty bucket."""
    import boto3
    import httpx

    httpx.post(f"{moto_url}/moto-api/reset")
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


def provider_options(fake: FakeCloudflare, moto_url: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "account_id": ACCOUNT,
        "api_token": TOKEN,
        "base_url": fake.url,
        "retries": 2,
        "max_retry_wait": 0.05,  # caps the backoff: the tests do not sleep for real
        "r2_access_key_id": "test",
        "r2_secret_access_key": "test",
        "r2_region": "us-east-1",
    }
    if moto_url is not None:
        options["r2_endpoint_url"] = moto_url
    return options


@pytest.fixture
async def env(fake: FakeCloudflare) -> AsyncIterator[Env]:
    # R2's endpoint is never contacted in these tests (moto's is, in test_r2.py).
    async with open_env(CONFIG, provider="api", **provider_options(fake)) as env:
        yield env


@pytest.fixture
async def r2_env(fake: FakeCloudflare, moto_url: str, s3: Any) -> AsyncIterator[Env]:
    async with open_env(CONFIG, provider="api", **provider_options(fake, moto_url)) as env:
        yield env


def api(path: str) -> str:
    """A path under the test account, as the fake records it."""
    return f"/accounts/{ACCOUNT}{path}"


def multipart(request: Recorded) -> dict[str, bytes]:
    """The parts of a multipart/form-data body, by name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=default).parsebytes(head + request.body)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True)
        for part in message.iter_parts()
    }
