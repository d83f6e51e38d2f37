"""Embedding models for CosineSimilarity: litellm providers, the embedded local model, or
`local/ngrams` - hashed character trigrams, offline and instant (lexical, not semantic)."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import zlib

from promptrl.errors import PredictionError
from promptrl.engine.transports import is_local_model, local_model_path
from promptrl.language_model import Usage


NGRAMS = "local/ngrams"
NGRAM_DIMENSIONS = 1024


def ngram_vector(text: str) -> list[float]:
    """Counts of the text's character trigrams (per word, with boundaries), hashed into 1024 bins."""
    vector = [0.0] * NGRAM_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        padded = f" {word} "
        for i in range(len(padded) - 2):
            vector[zlib.crc32(padded[i:i + 3].encode()) % NGRAM_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class EmbeddingModel:
    _local: dict[str, tuple] = {}

    def __init__(self, model: str = NGRAMS, api_base: str | None = None, model_path: str | None = None,
                 **litellm_kwargs):
        self.model = model
        self.api_base = api_base
        self.model_path = model_path
        self.litellm_kwargs = litellm_kwargs
        self.usage = Usage()

    @property
    def is_local(self) -> bool:
        return is_local_model(self.model)

    def _local_embed(self, texts: list[str]) -> list[list[float]]:
        path = local_model_path(self.model, self.model_path)
        if path not in self._local:
            from llama_cpp import Llama

            self._local[path] = (Llama(model_path=path, embedding=True, n_ctx=512, verbose=False), threading.Lock())
        llama, lock = self._local[path]
        with lock:
            # pooled per text: mean over tokens when the model returns token-level vectors
            vectors = []
            for text in texts:
                out = llama.embed(text)
                if out and isinstance(out[0], list):
                    out = [sum(col) / len(out) for col in zip(*out)]
                vectors.append(out)
        return vectors

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            if self.model == NGRAMS:
                vectors = [ngram_vector(text) for text in texts]
            elif self.is_local:
                vectors = await asyncio.to_thread(self._local_embed, texts)
            else:
                import litellm

                kwargs = dict(self.litellm_kwargs)
                if self.api_base:
                    kwargs["api_base"] = self.api_base
                response = await litellm.aembedding(model=self.model, input=texts, **kwargs)
                vectors = [item["embedding"] for item in response.data]
                self.usage.prompt_tokens += getattr(response.usage, "prompt_tokens", 0) or 0
        except Exception as error:  # noqa: BLE001 - a failed embedding is a failed score, not a crash
            self.usage.failures += 1
            raise PredictionError(f"embedding {self.model}: {error}") from error
        self.usage.calls += 1
        return vectors
