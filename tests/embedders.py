"""TEST ONLY: a tiny deterministic embedder, so memory tests need neither torch nor the
real model (one test per area uses the real MiniLM). Never a product default."""

from __future__ import annotations

import hashlib
import math
import re

__all__ = ["HashEmbedder"]


class HashEmbedder:
    """Words hashed (sha256, so the same in every process) into signed buckets, unit
    length; a text without words becomes the first basis vector."""

    name = "test-hash"

    def __init__(self, dimensions: int = 64) -> None:
        self.dimensions = dimensions

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * self.dimensions
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
                vector[h % self.dimensions] += 1.0 if (h >> 32) & 1 else -1.0
            norm = math.sqrt(sum(x * x for x in vector))
            if norm == 0:
                vector[0], norm = 1.0, 1.0
            vectors.append([x / norm for x in vector])
        return vectors
