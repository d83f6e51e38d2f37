"""One async interface to every language model: litellm providers and the embedded local model.

`LanguageModel.generate(messages, output_model, seed)` returns a validated instance of
`output_model` or raises `PredictionError`. Each call is accounted in `usage`.
Calls in flight are bounded by one adaptive window per language model (`concurrency` at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any

import pydantic

from promptrl.checks import check_number
from promptrl.engine import http
from promptrl.engine.prefix_texts import PrefixTexts
from promptrl.engine.scheduler import (
    AdaptiveLimiter, backoff, is_configuration_error, is_connection_error, is_request_error, is_retryable, retrying,
)
from promptrl.engine.structured import SETTING as STRUCTURED_OUTPUT, StructuredOutput, about_format
from promptrl.engine.transports import (
    DEFAULT_LOCAL_MODEL, Completion, LiteLLMTransport, LocalTransport, is_local_model, local_model_path, strip_fences,
)
from promptrl.errors import BudgetReached, LanguageModelUnavailable, PredictionError, UserError, one_line
from promptrl.secrets import MASK, add_secret, collect, collect_from_text, is_headers_key, is_secret_key, strip_userinfo

# litellm downloads its price map at import unless told to use the bundled copy (no network here).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# What a saved program may set: the model's sampling and pacing. Where calls go and what they carry
# (api_base, api_key, model_path, cache_dir, headers and any other transport argument) comes from
# the current config, never from a file (see from_saved).
SETTING_KEYS = ("temperature", "max_tokens", "concurrency", "timeout", "num_retries", "n_ctx", "n_threads",
                "structured_output", "max_consecutive_failures",
                "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "stop")
TRANSPORTS = ("auto", "http", "litellm")

# A Completion's fields, as the reply cache stores them (dataclasses.asdict deep-copies: ~3x slower).
_COMPLETION_FIELDS = tuple(f.name for f in fields(Completion))
_PROCESS = uuid.uuid4().hex  # tags reply-cache entries: a hit from another process was paid by an earlier run

_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("promptrl_usage_role", default=None)


@contextlib.contextmanager
def usage_role(role: str):
    """Account the calls made inside this block (and the tasks it starts) under `role` too,
    e.g. the program calls an optimizer makes to score its candidates."""
    token = _ROLE.set(role)
    try:
        yield
    finally:
        _ROLE.reset(token)


@dataclass
class Usage:
    """What a language model spent. `calls` counts requests that reached the backend."""

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0  # requests sent again after a transient error (timeout, 429, 5xx); one call each
    format_resends: int = 0  # requests sent again in the next structured-output mode (a server rejected one)
    cancelled: int = 0  # calls stopped in flight (SIGINT/SIGTERM); they may still be billed
    # What the cache hits cost when they were first paid (e.g. before a crash, for `--resume`): the
    # run's whole bill is cost + replayed_cost.
    replayed_calls: int = 0
    replayed_tokens: int = 0
    replayed_cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def add(self, **deltas) -> None:
        for key, value in deltas.items():
            setattr(self, key, getattr(self, key) + value)


class LanguageModel:
    """A language model: an OpenAI-compatible endpoint (`openai/...`, `hosted_vllm/...`,
    `lm_studio/...`, any `api_base`) through the lean HTTP transport, any other litellm provider
    (`ollama_chat/...`, `anthropic/...`, ...) through litellm, or the embedded GGUF model run
    in-process (`local/smollm2-135m`, or `local` + `model_path`).

    `concurrency` is the most calls in flight; the window adapts below it on 429s, 503s, timeouts
    and Retry-After. `structured_output` is how the schema is asked for (engine/structured.py);
    `transport` forces `http` (any OpenAI-compatible `api_base`) or `litellm`.
    """

    def __init__(
        self,
        model: str = DEFAULT_LOCAL_MODEL,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
        concurrency: int | None = None,
        timeout: float = 120.0,
        num_retries: int = 3,
        model_path: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        cache_dir: str | None = None,
        structured_output: str = "auto",
        transport: str = "auto",
        max_consecutive_failures: int = 10,
        **extra: Any,
    ):
        if concurrency is None:  # the local batch engine is fastest at 1 on 2 cores (make bench); providers take several
            concurrency = 1 if is_local_model(model) else 4
        owner = f"language model '{model}'"
        check_number(owner, "temperature", temperature, 0)
        check_number(owner, "timeout", timeout, 0)
        for key, value, minimum in (("max_tokens", max_tokens, 1), ("concurrency", concurrency, 1),
                                    ("num_retries", num_retries, 0), ("n_ctx", n_ctx, 64),
                                    ("max_consecutive_failures", max_consecutive_failures, 1)):
            check_number(owner, key, value, minimum, integer=True)
        for key, value, allowed in (("structured_output", structured_output, STRUCTURED_OUTPUT),
                                    ("transport", transport, TRANSPORTS)):
            if value not in allowed:
                raise UserError(f"{owner}: {key}={value!r} is not valid; use one of {', '.join(allowed)}")
        if is_local_model(model) and extra:
            raise UserError(f"language model '{model}': unknown setting(s) {sorted(extra)} for the local model; "
                            "it takes temperature, max_tokens, n_ctx, n_threads, model_path, cache_dir")
        # Remember the credentials: they are masked in every file written and line printed.
        add_secret(api_key)
        collect(extra)
        collect_from_text(api_base or "")
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.timeout = timeout
        self.num_retries = num_retries
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.cache_dir = cache_dir
        self.structured_output = structured_output
        self.transport = transport
        self.max_consecutive_failures = max_consecutive_failures  # the circuit breaker
        self.budget = None  # an engine.budget.Budget shared by a run's models
        self._consecutive_infra_failures = 0
        self._tripped = ""  # why the circuit breaker opened: the provider is down for this run
        self.extra = extra
        self.usage = Usage()
        self.usage_by_role: dict[str, Usage] = {}
        self.limiter = AdaptiveLimiter(concurrency)
        self.structured = StructuredOutput(structured_output, owner)
        self._cache = None
        self._key_texts = PrefixTexts()  # see _cache_key
        self._settings_kept: tuple | None = None
        self._run_cache_dir: str | None = None  # a run's own reply cache (use_reply_cache)
        if self.is_local:
            local_model_path(model, model_path)  # a wrong path or name is a user error now, not 0 reward later
            self._transport = LocalTransport(self)
        elif transport == "http" or (transport == "auto" and http.serves(model)):
            self._transport = http.HTTPTransport(self)
        else:
            self._transport = LiteLLMTransport(self)

    @property
    def endpoint(self) -> str:
        """Where calls go: the URL the lean transport posts to, the api_base, or the model file."""
        if self.is_local:
            return local_model_path(self.model, self.model_path)
        return getattr(self._transport, "api_base", None) or self.api_base or "the provider's default endpoint"

    @property
    def is_local(self) -> bool:
        return is_local_model(self.model)

    def _account(self, **deltas) -> None:
        self.usage.add(**deltas)
        role = _ROLE.get()
        if role is not None:
            self.usage_by_role.setdefault(role, Usage()).add(**deltas)

    def get_config(self) -> dict:
        """Constructor arguments without credentials (no api_key, no headers, no URL userinfo):
        what a checkpoint or a result file records."""
        config = {
            "model": self.model,
            "api_base": strip_userinfo(self.api_base),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "num_retries": self.num_retries,
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "cache_dir": self.cache_dir,
            "structured_output": self.structured_output,
            "transport": self.transport,
            "max_consecutive_failures": self.max_consecutive_failures,
        }
        config.update(self._public_extra())
        return config

    def _public_extra(self) -> dict:
        """Extra settings that are not credentials (headers and secret-looking keys are)."""
        return {k: v for k, v in self.extra.items() if not is_secret_key(k) and not is_headers_key(k)}

    def clone(self, **changes) -> "LanguageModel":
        """The same model and settings (and credentials) with its own usage counters, e.g. an
        optimizer's teacher; `changes` replace settings (temperature=0.7, ...)."""
        config = {**self.get_config(), **self.extra, "api_key": self.api_key, "api_base": self.api_base, **changes}
        return LanguageModel(**config)

    @staticmethod
    def endpoint_of(config: dict) -> dict:
        """The endpoint and credential part of a language_model config (what from_saved takes)."""
        return {k: v for k, v in config.items() if k not in SETTING_KEYS and k not in ("model", "_target_")}

    @classmethod
    def from_saved(cls, saved: dict, endpoint: dict | None = None, trust_endpoint: bool = False) -> "LanguageModel":
        """A model from a saved config (a checkpoint): its name and SETTING_KEYS from the file; its
        endpoint and credentials from `endpoint` (the current config). The file's own endpoint
        (api_base, model_path, cache_dir, extra transport arguments) only with `trust_endpoint`."""
        settings = {k: saved[k] for k in SETTING_KEYS if saved.get(k) is not None}
        from_file = {}
        if trust_endpoint:
            from_file = {k: v for k, v in saved.items()
                         if k not in SETTING_KEYS and k != "model" and v is not None and v != MASK}
        chosen = {k: v for k, v in (endpoint or {}).items() if v is not None}
        return cls(model=saved["model"], **settings, **{**from_file, **chosen})

    def __repr__(self) -> str:
        return f"LanguageModel(model={self.model!r})"

    def use_reply_cache(self, path) -> None:
        """Keep replies in `path` (a run's own cache: a resumed run replays them for free),
        unless the user chose a cache_dir. Not a setting: checkpoints do not record it."""
        if not self.cache_dir and self._cache is None:
            self._run_cache_dir = str(path)

    def _cache_store(self):
        where = self.cache_dir or self._run_cache_dir
        if where and self._cache is None:
            from promptrl.engine.reply_store import reply_store

            self._cache = reply_store(where)
        return self._cache

    def close_replies(self) -> None:
        """Flush and close the reply store (a run's end: its writer thread and files are let go); a
        later call opens it again."""
        store, self._cache = self._cache, None
        if store is not None:
            store.close()

    def _cache_key(self, messages: list[dict], schema: dict, seed: int | None) -> str:
        """sha256 of `json.dumps([model, api_base, model_path, temperature, max_tokens, extra, seed,
        messages, schema], sort_keys=True)`, the key replies have always been kept under; assembled
        from parts so that the settings, schema, system prompt and demonstrations are encoded once
        per prompt state, not per call (~20 -> ~10 us)."""
        prefix, last = messages[:-1], messages[-1:]
        prefix_text, schema_text = self._key_texts.get(
            (schema,), prefix, lambda: (_sorted_json(prefix)[1:-1], _sorted_json(schema)))
        text = (f"{self._settings_text()}, {_sorted_json(seed)}, [{prefix_text}{', ' if prefix and last else ''}"
                f"{_sorted_json(last)[1:-1]}], {schema_text}]")
        return hashlib.sha256(text.encode()).hexdigest()

    def _settings_text(self) -> str:
        """The key's opening `[model, api_base, model_path, temperature, max_tokens, extra` (no
        credentials), encoded again when a setting changed (told by type and value: 1 and 1.0 are
        encoded differently) or `extra` no longer equals its copy (one that cannot be copied: each call)."""
        raw = (self.model, self.api_base, self.model_path, type(self.temperature), self.temperature,
               type(self.max_tokens), self.max_tokens)
        kept = self._settings_kept
        if kept is None or kept[0] != raw or kept[1] is None or kept[1] != self.extra:
            text = _sorted_json([self.model, strip_userinfo(self.api_base), self.model_path, self.temperature,
                                 self.max_tokens, self._public_extra()])[:-1]
            try:
                extra = copy.deepcopy(self.extra)
            except Exception:  # noqa: BLE001 - e.g. a lock or client object: compared by nothing, encoded per call
                extra = None
            kept = self._settings_kept = (raw, extra, text)
        return kept[2]

    async def generate(
        self, messages: list[dict], output_model: type[pydantic.BaseModel], seed: int | None = None
    ) -> pydantic.BaseModel:
        """Ask for a JSON object following `output_model`'s schema; return it validated."""
        schema = schema_of(output_model)
        cache = self._cache_store()
        key = self._cache_key(messages, schema, seed) if cache is not None else None
        replayed = self._replay(cache, key) if cache is not None else None
        if replayed is not None:
            return self._validated(replayed, output_model)
        if self._tripped:
            raise LanguageModelUnavailable(self._tripped)

        try:
            completion, latency = await self._request(messages, output_model, schema, seed)
        except (UserError, BudgetReached):  # a setting that cannot work, or the budget: stop, do not score 0
            raise
        except Exception as error:  # noqa: BLE001 - classified below by what it is, not when it happens
            self._account(calls=1, failures=1)
            message = one_line(str(error).strip().splitlines()[0]) if str(error).strip() else type(error).__name__
            if is_connection_error(error):  # still refused or reset after the retries: the endpoint is gone
                where = getattr(self._transport, "api_base", None) or self.api_base or "the provider's default endpoint"
                raise LanguageModelUnavailable(f"cannot reach language model '{self.model}' at {where} ({message}); "
                                               "start the server or fix language_model.api_base") from error
            if is_retryable(error) and not is_configuration_error(error):
                # timeouts, 429, 5xx after the retries: no answer, not a wrong one
                self._consecutive_infra_failures += 1
                if self._consecutive_infra_failures >= self.max_consecutive_failures:
                    self._tripped = (  # every later call stops at once: the provider is down
                        f"language model '{self.model}' looks down: {self._consecutive_infra_failures} calls in a row "
                        f"failed after {self.num_retries} retries each (last: {type(error).__name__}: {message}); "
                        "stopped before paying for the rest - try again later, or raise "
                        "language_model.max_consecutive_failures")
                    raise LanguageModelUnavailable(self._tripped) from error
                raise PredictionError(f"{self.model}: no answer: {type(error).__name__}: {message}",
                                      infrastructure=True) from error
            if is_request_error(error):  # about this one request (context length, content filter)
                self._consecutive_infra_failures = 0
                raise PredictionError(f"{self.model}: request refused: {type(error).__name__}: {message}") from error
            raise LanguageModelUnavailable(  # a setting that can never work: stop now, whenever it shows
                f"language model '{self.model}' cannot be used ({type(error).__name__}: {message}); "
                "check the language_model settings and the provider's API key") from error
        self._consecutive_infra_failures = 0
        self._account(calls=1, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                      cost=completion.cost, latency_s=latency)  # time on the wire, not waiting for a slot
        if cache is not None:  # the raw reply: a replay fails validation exactly where the original did
            cache.put(key, json.dumps({"promptrl_reply": 2, "process": _PROCESS,
                                       **{name: getattr(completion, name) for name in _COMPLETION_FIELDS}}))
        return self._validated(completion, output_model)

    def _replay(self, cache, key: str) -> Completion | None:
        """The cached reply of an identical request. One paid by an earlier process (a run before its
        crash, for `--resume`) is accounted as replayed: the run's bill is cost + replayed_cost."""
        raw = cache.get(key)
        if raw is None:
            return None
        entry = json.loads(raw)
        if not isinstance(entry, dict) or entry.get("promptrl_reply") != 2:
            return None  # an entry of an earlier version: ask again
        completion = Completion(**{k: entry[k] for k in ("text", "prompt_tokens", "completion_tokens", "cost",
                                                         "truncated")})
        if entry.get("process") == _PROCESS:
            self._account(cache_hits=1)  # asked twice in this run: paid once
        else:
            self._account(cache_hits=1, replayed_calls=1, replayed_cost=completion.cost,
                          replayed_tokens=completion.prompt_tokens + completion.completion_tokens)
        return completion

    def _validated(self, completion: Completion, output_model):
        try:
            return output_model.model_validate_json(strip_fences(completion.text))
        except pydantic.ValidationError as error:
            self._account(failures=1)
            if completion.truncated or completion.completion_tokens >= self.max_tokens:
                raise PredictionError(f"{self.model}: output cut at max_tokens={self.max_tokens} before the JSON "
                                      "was complete; raise language_model.max_tokens") from None
            raise PredictionError(f"{self.model}: output failed validation: {error.errors()[0]['msg']}") from None

    async def _request(self, messages, output_model, schema, seed):
        """One call -> (completion, latency of its successful attempt): the first attempt directly
        (the common case costs no retry machinery), then attempts with backoff on transient errors
        (tenacity). Each attempt holds a slot of the adaptive window, which is free while waiting
        to retry."""
        try:
            return await self._attempt(messages, output_model, schema, seed)
        except Exception as error:  # noqa: BLE001 - classified right below
            if self.num_retries == 0 or not is_retryable(error):
                raise
            first_error = error
        self._account(retries=1)
        await asyncio.sleep(backoff(1, first_error))
        async for attempt in retrying(self.num_retries - 1, before_sleep=lambda _: self._account(retries=1),
                                      attempts_before=1):
            with attempt:
                return await self._attempt(messages, output_model, schema, seed)

    async def _attempt(self, messages, output_model, schema, seed):
        async with self.limiter.slot():
            if self.budget is not None:  # checked with a slot in hand: no queue of calls slips past a limit
                self.budget.start_call(self)
            while True:
                mode, fmt = self.structured.response_format(output_model.__name__, schema)
                started = time.perf_counter()
                try:
                    completion = await self._transport.complete(messages, output_model, schema, seed,
                                                                None if self.is_local else fmt)
                except asyncio.CancelledError:  # on the wire when the run was stopped: it may be billed
                    self._account(calls=1, cancelled=1, latency_s=time.perf_counter() - started)
                    raise
                except UserError:
                    raise
                except Exception as error:
                    self._account(latency_s=time.perf_counter() - started)
                    self.limiter.on_error(error)
                    if not self.is_local and self.structured.rejected(mode, error):
                        self._account(format_resends=1)
                        continue  # sent again at once in the next mode
                    if not self.is_local and self.structured.setting != "auto" and about_format(error):
                        raise LanguageModelUnavailable(
                            f"language model '{self.model}': the server rejects structured_output={mode} "
                            f"({one_line(error, 160)}); use structured_output=auto") from error
                    raise
                latency = time.perf_counter() - started
                self.limiter.on_success(latency)
                self.structured.confirm(mode)
                return completion, latency  # accounted with the call, in one step


def provider_of(model: str) -> str:
    """`openai` for `openai/gpt-4o-mini`, `local` for the embedded model."""
    return model.split("/", 1)[0] if "/" in model else model


_sorted_json = functools.partial(json.dumps, sort_keys=True)


@functools.lru_cache(maxsize=1024)
def schema_of(output_model: type[pydantic.BaseModel]) -> dict:
    """A data model's JSON schema, built once per class (not once per call)."""
    return output_model.model_json_schema()
