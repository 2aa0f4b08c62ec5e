"""`flarebase migrate redis | vectors | blobs`: thin commands over the object migrations.

flarebase migrate redis redis://host:6379 --rules rules.toml      Redis -> KV and D1
flarebase migrate redis --upstash-url https://... --upstash-token T --rules rules.toml
flarebase migrate vectors export.jsonl --vectorize INDEX           JSONL -> Vectorize
flarebase migrate vectors --upstash-url https://... --upstash-token T --vectorize INDEX
flarebase migrate blobs s3://bucket/prefix --endpoint-url URL --r2 BUCKET
flarebase migrate blobs vercel-blob:// --vercel-token T --r2 BUCKET
flarebase migrate blobs ./folder --r2 BUCKET

Like the table migrations: a checkpoint (re-run the same command after a crash),
verification at the end (`flarebase migrate verify SOURCE --kind ...` again later)
and a JSON report.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..platform import FlarebaseError, open_env
from .checkpoint import default_path
from .cli import (
    CheckpointOpt,
    ConfigOpt,
    DryRunOpt,
    ProviderOpt,
    ReplaceOpt,
    ReportOpt,
    RestartOpt,
    SampleOpt,
    StateOpt,
    VerifyOpt,
    _finish,
    _progress,
    _run,
    migrate_app,
)
from .objects import ObjectMigration, ObjectOptions, migrate_objects, verify_objects

RulesOpt = Annotated[Path | None, typer.Option("--rules", help="mapping rules (TOML)")]
KVOpt = Annotated[str | None, typer.Option("--kv", help="default KV binding of the rules")]
D1Opt = Annotated[str | None, typer.Option("--d1", help="default D1 binding of the rules")]
UpstashUrlOpt = Annotated[
    str | None, typer.Option("--upstash-url", help="Upstash REST URL (https://...upstash.io)")
]
UpstashTokenOpt = Annotated[
    str | None,
    typer.Option("--upstash-token", help="Upstash REST token (default: $UPSTASH_*_REST_TOKEN)"),
]
ScanCountOpt = Annotated[
    int, typer.Option("--scan-count", min=1, help="SCAN COUNT: keys per batch (about)")
]
RateOpt = Annotated[
    float | None,
    typer.Option("--max-items-per-second", help="throttle reading (spare a production source)"),
]


@asynccontextmanager
async def _env(config: Path, state_dir: Path | None, provider: str) -> AsyncIterator[Any]:
    async with open_env(config, provider=provider, state_dir=state_dir) as env:
        yield env


def _where(provider: str, state_dir: Path | None) -> str:
    return f"{provider}{f', {state_dir}' if state_dir else ''}"


async def _execute(
    build: Callable[[Any], Awaitable[ObjectMigration]],
    config: Path,
    state_dir: Path | None,
    provider: str,
    checkpoint: Path | None,
    options: ObjectOptions,
    report_path: Path | None,
) -> None:
    async with _env(config, state_dir, provider) as env:
        migration = await build(env)
        root = env.project.root
        path = checkpoint or default_path(
            root, migration.kind, migration.description, migration.target
        )
        try:
            report = await migrate_objects(
                migration,
                path,
                options=options,
                progress=None if options.dry_run else _progress(),
            )
        finally:
            await migration.aclose()
        _finish(report, report_path, root, migration.kind, schema=False)


async def verify_kind(
    build: Callable[[Any], Awaitable[ObjectMigration]],
    config: Path,
    state_dir: Path | None,
    provider: str,
    sample: int,
    report_path: Path | None,
    saved: dict[str, Any] | None = None,
) -> None:
    async with _env(config, state_dir, provider) as env:
        migration = await build(env)
        if saved and hasattr(migration, "restore"):
            migration.restore(saved)
        try:
            report = await verify_objects(migration, sample)
        finally:
            await migration.aclose()
        _finish(report, report_path, env.project.root, f"{migration.kind}-verify", schema=False)


def _token(given: str | None, *names: str) -> str:
    if given:
        return given
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise FlarebaseError(f"give a token (or set {' or '.join(names)})")


# -- redis -----------------------------------------------------------------------------------


def redis_builder(
    url: str | None,
    upstash_url: str | None,
    upstash_token: str | None,
    rules_path: Path | None,
    kv: str | None,
    d1: str | None,
    scan_count: int,
    provider: str,
    state_dir: Path | None,
) -> Callable[[Any], Awaitable[ObjectMigration]]:
    async def build(env: Any) -> ObjectMigration:
        from .keys import RedisMigration
        from .redis_rules import load_rules
        from .sources.redis import RedisClient, RespClient, UpstashClient

        rules = load_rules(rules_path, kv=kv, d1=d1)
        client: RedisClient
        rest = upstash_url or (url if url and url.startswith(("http://", "https://")) else None)
        if rest:
            token = _token(upstash_token, "UPSTASH_REDIS_REST_TOKEN", "KV_REST_API_TOKEN")
            client = UpstashClient(rest, token)
        elif url:
            client = RespClient(url)
        else:
            raise FlarebaseError("give a redis:// URL or --upstash-url")
        names = sorted({r.binding for r in rules.rules if r.binding})
        target = ", ".join(names) + f" ({_where(provider, state_dir)})"
        return RedisMigration(
            client, rules, {n: env[n] for n in names if n in env}, target, count=scan_count
        )

    return build


@migrate_app.command("redis")
def redis(
    url: Annotated[
        str | None, typer.Argument(help="redis://[user:password@]host:port/db (or rediss://)")
    ] = None,
    upstash_url: UpstashUrlOpt = None,
    upstash_token: UpstashTokenOpt = None,
    rules: RulesOpt = None,
    kv: KVOpt = None,
    d1: D1Opt = None,
    scan_count: ScanCountOpt = 500,
    checkpoint: CheckpointOpt = None,
    restart: RestartOpt = False,
    replace: ReplaceOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
    report: ReportOpt = None,
    max_items_per_second: RateOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
) -> None:
    """Redis or Upstash Redis into KV and D1, by the rules file; verified."""
    build = redis_builder(
        url, upstash_url, upstash_token, rules, kv, d1, scan_count, provider, state_dir
    )
    options = ObjectOptions(
        restart, replace, verify, max_items_per_second=max_items_per_second, dry_run=dry_run
    )
    _run(lambda: _execute(build, config, state_dir, provider, checkpoint, options, report))


__all__ = [
    "blobs",
    "blobs_builder",
    "object_kind",
    "redis",
    "redis_builder",
    "vectors",
    "vectors_builder",
    "verify_kind",
]


# -- vectors ---------------------------------------------------------------------------------


def _mapping(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        src, sep, dst = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"--namespace {value!r}: expected SOURCE=TARGET")
        out[src.strip()] = dst.strip()
    return out


def vectors_builder(
    file: Path | None,
    upstash_url: str | None,
    upstash_token: str | None,
    vectorize: str | None,
    namespace: list[str] | None,
    separator: str,
    keep_nested: bool,
    data_key: str,
    source_metric: str | None,
    batch_size: int,
    provider: str,
    state_dir: Path | None,
) -> Callable[[Any], Awaitable[ObjectMigration]]:
    async def build(env: Any) -> ObjectMigration:
        from .sources.vectors import JsonlVectors, UpstashVectors, VectorSource
        from .vectors import VectorMigration

        if source_metric is not None and source_metric not in (
            "cosine",
            "euclidean",
            "dot-product",
        ):
            raise FlarebaseError("--source-metric must be cosine, euclidean or dot-product")
        source: VectorSource
        if upstash_url:
            token = _token(upstash_token, "UPSTASH_VECTOR_REST_TOKEN")
            source = UpstashVectors(upstash_url, token)
        elif file is not None:
            source = JsonlVectors(file, source_metric)
        else:
            raise FlarebaseError("give a JSONL file or --upstash-url")
        specs = env.project.vectorize
        spec = next((s for s in specs if vectorize in (s.binding, s.index_name)), None)
        if spec is None:
            if vectorize is None and len(specs) == 1:
                spec = specs[0]
            else:
                names = ", ".join(s.binding for s in specs) or "none"
                raise FlarebaseError(f"--vectorize BINDING: one of the project's ({names})")
        return VectorMigration(
            source,
            env[spec.binding],
            spec.index_name,
            namespaces=_mapping(namespace),
            separator=separator,
            nested=keep_nested,
            data_key=data_key,
            batch_size=batch_size,
            where=_where(provider, state_dir),
        )

    return build


VectorizeOpt = Annotated[str | None, typer.Option("--vectorize", help="target Vectorize binding")]
NamespaceOpt = Annotated[
    list[str] | None, typer.Option("--namespace", help="SOURCE=TARGET namespace (repeat)")
]
SeparatorOpt = Annotated[
    str, typer.Option("--metadata-separator", help="joins flattened metadata keys")
]
NestedOpt = Annotated[
    bool, typer.Option("--keep-nested", help="keep nested metadata objects (no flattening)")
]
DataKeyOpt = Annotated[
    str, typer.Option("--data-key", help="metadata key for Upstash's data field ('' drops it)")
]
MetricOpt = Annotated[
    str | None, typer.Option("--source-metric", help="the JSONL vectors' metric, to check")
]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", min=1, max=1000, help="vectors per upsert (max 1000)")
]


@migrate_app.command("vectors")
def vectors(
    file: Annotated[
        Path | None, typer.Argument(help="a JSONL export: {id, vector, metadata, namespace?}")
    ] = None,
    upstash_url: UpstashUrlOpt = None,
    upstash_token: UpstashTokenOpt = None,
    vectorize: VectorizeOpt = None,
    namespace: NamespaceOpt = None,
    metadata_separator: SeparatorOpt = "__",
    keep_nested: NestedOpt = False,
    data_key: DataKeyOpt = "data",
    source_metric: MetricOpt = None,
    batch_size: BatchSizeOpt = 1000,
    checkpoint: CheckpointOpt = None,
    restart: RestartOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
    sample: SampleOpt = 100,
    report: ReportOpt = None,
    max_items_per_second: RateOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
) -> None:
    """Upstash Vector or a JSONL export into a Vectorize index; verified."""
    build = vectors_builder(
        file,
        upstash_url,
        upstash_token,
        vectorize,
        namespace,
        metadata_separator,
        keep_nested,
        data_key,
        source_metric,
        batch_size,
        provider,
        state_dir,
    )
    options = ObjectOptions(
        restart,
        False,
        verify,
        sample,
        max_items_per_second=max_items_per_second,
        dry_run=dry_run,
    )
    _run(lambda: _execute(build, config, state_dir, provider, checkpoint, options, report))


# -- blobs -----------------------------------------------------------------------------------


def _bytes_option(value: str) -> int:
    text = value.strip().lower().replace(" ", "")
    for suffix, factor in (("gib", 1024**3), ("mib", 1024**2), ("kib", 1024), ("b", 1)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def blobs_builder(
    source: str,
    r2: str | None,
    endpoint_url: str | None,
    vercel_token: str | None,
    vercel_api_url: str,
    target_prefix: str,
    concurrency: int,
    page_size: int,
    part_size: str,
    multipart_threshold: str,
    provider: str,
    state_dir: Path | None,
) -> Callable[[Any], Awaitable[ObjectMigration]]:
    async def build(env: Any) -> ObjectMigration:
        from .blobs import BlobMigration
        from .sources.blobs import BlobSource, FolderBlobs, S3Blobs, VercelBlobs

        blob_source: BlobSource
        if source.startswith("s3://"):
            blob_source = S3Blobs(source, endpoint_url=endpoint_url)
        elif source.startswith(("vercel-blob://", "vercel://")):
            token = _token(vercel_token, "BLOB_READ_WRITE_TOKEN")
            prefix = source.split("://", 1)[1]
            blob_source = VercelBlobs(token, api_url=vercel_api_url, prefix=prefix)
        else:
            blob_source = FolderBlobs(source)
        specs = env.project.r2_buckets
        spec = next((s for s in specs if r2 in (s.binding, s.bucket_name)), None)
        if spec is None:
            if r2 is None and len(specs) == 1:
                spec = specs[0]
            else:
                names = ", ".join(s.binding for s in specs) or "none"
                raise FlarebaseError(f"--r2 BINDING: one of the project's ({names})")
        return BlobMigration(
            blob_source,
            env[spec.binding],
            spec.name,
            target_prefix=target_prefix,
            concurrency=concurrency,
            page_size=page_size,
            part_size=_bytes_option(part_size),
            multipart_threshold=_bytes_option(multipart_threshold),
            where=_where(provider, state_dir),
        )

    return build


R2Opt = Annotated[str | None, typer.Option("--r2", help="target R2 binding")]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
]
VercelTokenOpt = Annotated[
    str | None,
    typer.Option("--vercel-token", help="Vercel Blob read-write token ($BLOB_READ_WRITE_TOKEN)"),
]
VercelApiOpt = Annotated[str, typer.Option("--vercel-api-url", help="Vercel Blob API")]
TargetPrefixOpt = Annotated[str, typer.Option("--target-prefix", help="put before every key")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="transfers at a time")]
PageOpt = Annotated[int, typer.Option("--page-size", min=1, max=1000, help="objects per batch")]
PartOpt = Annotated[str, typer.Option("--part-size", help="multipart part size (>= 5MiB)")]
ThresholdOpt = Annotated[
    str, typer.Option("--multipart-threshold", help="objects larger go multipart")
]


@migrate_app.command("blobs")
def blobs(
    source: Annotated[
        str, typer.Argument(help="s3://bucket/prefix, vercel-blob://[prefix], or a folder")
    ],
    r2: R2Opt = None,
    endpoint_url: EndpointOpt = None,
    vercel_token: VercelTokenOpt = None,
    vercel_api_url: VercelApiOpt = "https://blob.vercel-storage.com",
    target_prefix: TargetPrefixOpt = "",
    concurrency: ConcurrencyOpt = 8,
    page_size: PageOpt = 100,
    part_size: PartOpt = "8MiB",
    multipart_threshold: ThresholdOpt = "64MiB",
    checkpoint: CheckpointOpt = None,
    restart: RestartOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
    sample: SampleOpt = 100,
    report: ReportOpt = None,
    max_items_per_second: RateOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
) -> None:
    """S3-compatible buckets, Vercel Blob or a folder into an R2 bucket; verified."""
    build = blobs_builder(
        source,
        r2,
        endpoint_url,
        vercel_token,
        vercel_api_url,
        target_prefix,
        concurrency,
        page_size,
        part_size,
        multipart_threshold,
        provider,
        state_dir,
    )
    options = ObjectOptions(
        restart,
        False,
        verify,
        sample,
        max_items_per_second=max_items_per_second,
        dry_run=dry_run,
    )
    _run(lambda: _execute(build, config, state_dir, provider, checkpoint, options, report))


def object_kind(source: str | None, kind: str | None, upstash_url: str | None) -> str | None:
    """Which object migration `flarebase migrate verify SOURCE` means (None: a table one)."""
    if kind:
        return kind
    text = source or ""
    if text.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    if text.endswith((".jsonl", ".ndjson")):
        return "vectors"
    if text.startswith(("s3://", "vercel-blob://", "vercel://")) or (text and Path(text).is_dir()):
        return "blobs"
    if upstash_url:
        raise typer.BadParameter("with --upstash-url, say --kind redis or --kind vectors")
    return None
