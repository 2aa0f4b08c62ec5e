"""The Vectorize index behind memory: created locally when missing, checked everywhere.

Start-up step (`prepare_index`, run by the memory router's lifespan when the server
starts, and otherwise before the first memory request):

- On the embedded provider (`flarebase dev`), the index that wrangler.toml's
  `[[vectorize]]` binding names is created if it does not exist, with the
  embedder's dimensions and the cosine metric, together with the metadata indexes
  memory filters on (`METADATA_INDEXES`) - what these commands would do:

      flarebase vectorize create <index> --dimensions 384 --metric cosine
      flarebase vectorize create-metadata-index <index> --property-name access --type string
      (and doc, kind, model)

- On Cloudflare, create the index and the same metadata indexes with
  `wrangler vectorize create` / `create-metadata-index` before deploying; the
  check below then only compares dimensions (`describe()`).

Either way, an index whose dimensions differ from the embedder's is refused with a
ConfigError naming both, and so is an embedding model other than the one the
index's documents were embedded with (`memory_indexes` in D1): vectors of
different models are not comparable, so they are never mixed in one index. With no
document of the old model left, the index is handed to the new model.
"""

from __future__ import annotations

import logging
from typing import Any

from ...platform.errors import ConfigError, VectorizeError
from . import store
from .embeddings import Embedder

log = logging.getLogger("flarebase.server.memory")

METRIC = "cosine"
# Metadata memory filters on. Vectorize filters only on indexed properties, and only
# vectors written after the index existed: these must exist before the first ingest.
METADATA_INDEXES: dict[str, str] = {
    "access": "string",  # "user:<id>" or "shared": the owner-or-shared scope, with $in
    "doc": "string",  # the document id
    "kind": "string",  # text, markdown or pdf
    "model": "string",  # the embedding model id
}


async def prepare_index(binding: Any, binding_name: str, db: Any, embedder: Embedder) -> str:
    """Make sure `binding` can hold `embedder`'s vectors; return what was done."""
    done = _create_local_index(binding, embedder.dimensions)
    details = await binding.describe()
    if details.dimensions != embedder.dimensions:
        raise ConfigError(
            f"the Vectorize index behind {binding_name} has {details.dimensions} dimensions, "
            f"but the embedding model {embedder.model_id} makes {embedder.dimensions}: "
            "create an index with matching dimensions and bind it as "
            f"{binding_name}, or choose another MEMORY_EMBEDDINGS"
        )
    await check_model(db, binding_name, embedder)
    return done


async def check_model(db: Any, binding_name: str, embedder: Embedder) -> None:
    record = await store.index_model(db, binding_name)
    if record is None:
        await store.set_index_model(db, binding_name, embedder.model_id, embedder.dimensions)
        return
    if record["model"] == embedder.model_id:
        return
    remaining = await store.documents_of_model(db, record["model"])
    if remaining:
        raise ConfigError(
            f"the Vectorize index behind {binding_name} holds {remaining} documents embedded "
            f"with {record['model']}, and the embedder is now {embedder.model_id}: vectors of "
            "different models are not comparable. Delete those documents (and ingest them "
            f"again), or bind a new index as {binding_name}"
        )
    log.info("memory index %s: model %s -> %s", binding_name, record["model"], embedder.model_id)
    await store.set_index_model(db, binding_name, embedder.model_id, embedder.dimensions)


def _create_local_index(binding: Any, dimensions: int) -> str:
    """On the local provider: create the index and its metadata indexes if missing."""
    if type(binding).__module__ != "flarebase.platform.local.vectorize":
        return "checked"  # not the embedded provider (and never import it in a Worker)
    from ...platform.local.vectorize import (
        LocalVectorize,
        create_index,
        create_metadata_index,
        list_metadata_indexes,
    )

    if not isinstance(binding, LocalVectorize):
        return "checked"
    # <state_dir>/vectorize/<index name>; absolute: the admin functions need it
    state_dir = binding.folder.parent.parent.resolve()
    name = binding.index_name
    done = "checked"
    try:
        create_index(
            state_dir,
            name,
            dimensions=dimensions,
            metric=METRIC,
            description="flarebase memory (server/memory)",
        )
        done = f"created the local Vectorize index {name} ({dimensions} dimensions, {METRIC})"
    except VectorizeError as e:
        if e.code != "VECTORIZE_DUPLICATE_NAME":
            raise
    existing = {m.property_name: m.index_type for m in list_metadata_indexes(state_dir, name)}
    for prop, kind in METADATA_INDEXES.items():
        if prop not in existing:
            create_metadata_index(state_dir, name, prop, kind)
        elif existing[prop] != kind:
            raise ConfigError(
                f"the metadata index {prop} of Vectorize index {name} has type "
                f"{existing[prop]}; memory needs {kind}"
            )
    return done
