"""Continuous batching for the embedded model: the calls in flight share one llama.cpp context.

One worker thread owns a context with `slots` sequences, each in a KV stream of its own. Each
step it runs one `llama_decode` over every active sequence: the (chunked) prompt of one just
admitted, the last sampled token of the others, each followed by its draft; then samples each with
its own sampler chain and grammar. A finished call frees its slot for the next queued one at once.

- Same replies as `Llama.create_chat_completion` on the same settings (transports.LocalTransport
  loads it so), bit for bit: the prompt is rendered by llama-cpp-python's own chat handler, the
  sampler chain and seed are the same, and flash attention in micro-batches of UBATCH tokens makes
  each token's logits independent of its batch and of how its prompt was chunked (see UBATCH).
- A new sequence starts from the longest prefix of its prompt already in a slot (the system
  prompt and demonstrations every example of an evaluation shares; the whole prompt when the runs
  of an evaluation ask the same example in turn) instead of evaluating it again: kept in its own
  slot, or copied from another (`seq_cp`; between streams llama.cpp copies a whole stream, a few ms,
  then the tail is cut). Calls of one evaluation arrive together: one waits a step for a prompt
  another is evaluating, then copies it.
- Kept logits: the logits of the positions a decode computed (the end of a prompt, the reply; up to
  max_kept rows per slot) stay with the slot while its tokens stay in the cache. A call over the
  same tokens (the next run of an evaluation asking the same example) samples from them without a
  decode, for as long as it picks the tokens already there: with the same prompt and the same
  reply, a call costs no llama_decode at all. So a call asking what an active call asks waits for
  it and follows it in its slot (_admit), rather than decode the same tokens side by side in another.
- Drafts: the continuation of an earlier reply under the same grammar (the JSON skeleton, often the
  whole answer) is decoded with the token it follows, and kept for as long as the sampler picks the
  same tokens (each kept token saves a decode step; the others are cut from the cache).
- The grammar is checked on the best candidates only (the top_k first allowed tokens in logit
  order are what the chain keeps), not on all 49k tokens every step; where few tokens are allowed
  (the JSON skeleton) the whole-vocabulary check is done once per grammar state and kept. Same
  token, same random draw.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import random
import threading
from dataclasses import dataclass, field

import numpy as np

# Flash attention in micro-batches of at most UBATCH tokens computes every token's logits exactly as
# decoding it alone would (measured here: 0.0 difference for 2..48, up to 1.1 from 64 tokens on, and
# up to 0.8 at any size without flash attention). So a token's logits do not depend on what else is
# in its batch or in the cache: prefix reuse, drafts and several sequences per decode change no output,
# and a seed gives the same reply whatever ran before.
UBATCH = 32
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class _Captured(Exception):
    pass


class DoesNotFit(ValueError):
    """The prompt plus max_tokens is longer than a slot: run the call on the sequential path."""


class _CaptureCompletion:
    """Stands in for the Llama object when calling llama-cpp-python's chat handler: the handler
    renders and tokenizes the prompt, then hands create_completion its arguments, which we keep."""

    def __init__(self, llama):
        self._llama = llama
        self.kwargs: dict = {}

    def __getattr__(self, name):
        return getattr(self._llama, name)

    def create_completion(self, **kwargs):
        self.kwargs = kwargs
        raise _Captured


def completion_arguments(llama, messages, grammar, temperature: float, max_tokens: int, seed) -> dict:
    """The arguments `llama.create_chat_completion(...)` passes on to create_completion: prompt
    tokens, stop strings, sampling settings."""
    from llama_cpp import llama_chat_format

    handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
               or llama_chat_format.get_chat_completion_handler(llama.chat_format))
    capture = _CaptureCompletion(llama)
    try:  # the defaults of Llama.create_chat_completion, which the sequential path uses
        handler(llama=capture, messages=messages, temperature=temperature, top_p=0.95, top_k=40, min_p=0.05,
                typical_p=1.0, stream=False, stop=[], seed=seed, max_tokens=max_tokens, presence_penalty=0.0,
                frequency_penalty=0.0, repeat_penalty=1.0, grammar=grammar)
    except _Captured:
        return capture.kwargs
    raise RuntimeError("the chat handler did not call create_completion")


@dataclass
class BatchResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    reused_tokens: int = 0  # prompt tokens taken from the cache instead of evaluated
    drafted_tokens: int = 0  # tokens guessed from earlier replies and checked in the same decode
    accepted_tokens: int = 0  # of those, the ones the sampler picked (each one a llama_decode saved)
    kept_logits_tokens: int = 0  # tokens sampled from logits kept from an earlier decode (no decode), end included


@dataclass(eq=False)
class _Sequence:
    messages: list
    grammar: object  # LlamaGrammar or None
    temperature: float
    max_tokens: int
    seed: int | None
    future: concurrent.futures.Future
    prompt: list[int] = field(default_factory=list)
    stop: list[bytes] = field(default_factory=list)
    sampling: dict = field(default_factory=dict)
    slot: int = -1
    n_past: int = 0  # tokens of this sequence in the KV cache
    pending: list[int] = field(default_factory=list)  # tokens to decode next
    generated: list[int] = field(default_factory=list)
    reused: int = 0
    placed: bool = False
    multibyte_fix: int = 0
    chain: object = None
    grammar_sampler: object = None
    grammar_key: str | None = None  # replies under the same grammar are this one's drafts
    draft_len: int = 0
    drafted: int = 0  # draft tokens fed with this call's decodes
    accepted: int = 0  # draft tokens the sampler picked anyway (kept)
    from_kept: int = 0  # tokens sampled from kept logits


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Replies:
    """Recent replies per grammar, the drafts for the next ones: the calls of an evaluation share a
    schema, so their replies share the JSON skeleton and often the whole answer."""

    def __init__(self, keep: int = 32):
        self.keep = keep
        self.by_key: dict[str | None, list[tuple[int, ...]]] = {}

    def add(self, key: str | None, tokens: list[int]) -> None:
        replies = self.by_key.setdefault(key, [])
        reply = tuple(tokens)
        if reply in replies:
            replies.remove(reply)
        replies.append(reply)
        del replies[:-self.keep]

    def guess(self, key: str | None, generated: list[int], limit: int, context: int = 2) -> list[int]:
        """The continuation of the latest reply that starts like this one; else of the latest one
        containing its last `context` tokens."""
        replies = self.by_key.get(key) or ()
        start = tuple(generated)
        for reply in reversed(replies):
            if reply[:len(start)] == start and len(reply) > len(start):
                return list(reply[len(start):len(start) + limit])
        if len(generated) < context:
            return []
        tail = tuple(generated[-context:])
        for reply in reversed(replies):
            for i in range(len(reply) - context):
                if reply[i:i + context] == tail:
                    return list(reply[i + context:i + context + limit])
        return []


class BatchEngine:
    """Several completions decoded together in one llama.cpp context (see the module doc)."""

    def __init__(self, llama, slots: int, n_ctx: int, slot_ctx: int | None = None, n_batch: int = 512,
                 min_copy: int = 32, max_draft: int = 8, max_kept: int = 64):
        import llama_cpp
        from llama_cpp import _internals

        self.C = llama_cpp
        self.llama = llama
        self.slots = slots
        self.n_ctx_call = n_ctx  # what one call may use, as in the sequential path
        self.slot_ctx = slot_ctx or n_ctx  # what one slot holds; longer calls raise DoesNotFit
        self.n_batch = n_batch
        self.min_copy = min_copy  # a stream copy costs a few ms: worth it for a prefix this long
        self.max_draft = max_draft  # 0: no speculation
        self.replies = _Replies()
        self._allowed_sets: dict[tuple, np.ndarray] = {}  # (grammar, reply so far) -> tokens it allows
        self.max_cached_set = 4096  # tokens: larger sets (free text) are found among the top candidates
        self.max_cached_tokens = 2_000_000  # ~8 MB of allowed sets in all; then the cache starts over
        self._cached_tokens = 0
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * self.slot_ctx
        params.n_batch = n_batch
        params.n_ubatch = UBATCH
        params.n_seq_max = slots
        params.kv_unified = False  # one stream per sequence: bit-identical to one call at a time
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED  # see UBATCH
        params.n_threads = llama.n_threads
        params.n_threads_batch = llama.n_threads_batch
        params.no_perf = False
        self._context = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self.ctx = self._context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama._model.vocab
        self.n_vocab = llama.n_vocab()
        self._batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.batch = self._batch.batch
        self._candidates = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)  # filled per use (_allowed, _apply_chain)
        self.cached: list[list[int]] = [[] for _ in range(slots)]  # tokens in the KV cache per slot
        # logits computed at cached positions, per slot (position -> row; rows are never written to)
        self.kept: list[dict[int, np.ndarray]] = [{} for _ in range(slots)]
        self.max_kept = max_kept  # rows per slot (~0.2 MB each): the start of a reply is what repeats
        self._all_tokens = np.arange(self.n_vocab, dtype=np.int32)
        self.active: list[_Sequence] = []
        self.waiting: list[_Sequence] = []
        self.prompt_tokens_evaluated = 0  # counters for tests and the benchmark
        self.prompt_tokens_reused = 0
        self.decode_calls = 0
        self.tokens_drafted = 0
        self.tokens_accepted = 0
        self.tokens_from_kept = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._broken: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="promptrl-local-batch", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------

    def submit(self, messages, grammar, temperature: float, max_tokens: int, seed) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._broken is not None or self._stopping:
                future.set_exception(RuntimeError(f"the local batch engine stopped: {self._broken or 'closed'}"))
                return future
            self.waiting.append(_Sequence(messages, grammar, temperature, max_tokens, seed, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._batch.close()
            self._context.close()

    # -- the worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self.waiting and not self.active:
                    self._cond.wait()
                if self._stopping:
                    break
                admitted = self._admit()
            try:
                for seq in admitted:
                    self._prepare(seq)
                self._drop_cancelled()
                self._place_ready()
                if self.active:
                    self._step()
            except Exception as error:  # noqa: BLE001 - a broken context fails every call, not the process
                with self._cond:
                    self._broken = error
                    self._stopping = True
                break
        with self._cond:
            for seq in self.active + self.waiting:
                self._release(seq)
                self._fail(seq, RuntimeError(f"the local batch engine stopped: {self._broken or 'closed'}"))
            self.active, self.waiting = [], []

    def _admit(self) -> list[_Sequence]:
        """Move queued calls into free slots (under the lock). A call asking what an active one asks
        (another run of the same example) waits for it: placed in its slot after it, it samples from
        the logits kept there instead of decoding the same tokens side by side in another slot."""
        admitted = []
        for seq in list(self.waiting):
            if len(self.active) >= self.slots:
                break
            if seq.future.cancelled():
                self.waiting.remove(seq)
                continue
            if any(other.messages == seq.messages for other in self.active):
                continue
            self.waiting.remove(seq)
            seq.slot = -1  # chosen once the prompt is known (_place)
            self.active.append(seq)
            admitted.append(seq)
        return admitted

    def _prepare(self, seq: _Sequence) -> None:
        """Render the prompt, reuse the longest cached prefix, build the samplers."""
        try:
            args = completion_arguments(self.llama, seq.messages, seq.grammar, seq.temperature, seq.max_tokens,
                                        seq.seed)
            prompt = list(args["prompt"])
            if len(prompt) >= self.n_ctx_call:
                raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {self.n_ctx_call}")
            if seq.max_tokens + len(prompt) >= self.n_ctx_call:  # as Llama._create_completion truncates
                seq.max_tokens = self.n_ctx_call - len(prompt)
            if len(prompt) + seq.max_tokens > self.slot_ctx:
                raise DoesNotFit(f"{len(prompt)} prompt tokens + max_tokens do not fit a slot of {self.slot_ctx}")
        except Exception as error:  # noqa: BLE001 - this call's error, reported to its caller
            self.active.remove(seq)
            self._fail(seq, error)
            return
        seq.prompt = prompt
        seq.stop = [s.encode("utf-8") for s in (args.get("stop") or [])]
        seq.sampling = args
        seq.grammar_key = None if seq.grammar is None else f"{seq.grammar._root}\n{seq.grammar._grammar}"
        self._make_samplers(seq)
        seq.placed = False

    def _place_ready(self) -> None:
        """Give each admitted sequence a slot and the longest cached prefix of its prompt (see the
        module doc); one whose prefix another sequence is still evaluating waits a step."""
        copied = False
        for seq in [s for s in self.active if not s.placed]:
            busy = {s.slot for s in self.active if s.placed}
            free = [s for s in range(self.slots) if s not in busy]
            # the longest prefix; between equals, the slot that kept the logits after the whole prompt
            slot = max(free, key=lambda s: (_common_prefix(self.cached[s], seq.prompt),
                                            len(seq.prompt) - 1 in self.kept[s]))
            own = _common_prefix(self.cached[slot], seq.prompt)
            source = max(range(self.slots), key=lambda s: _common_prefix(self.cached[s], seq.prompt))
            elsewhere = _common_prefix(self.cached[source], seq.prompt)
            coming = max((_common_prefix(o.prompt, seq.prompt) for o in self.active
                          if o.placed and not o.generated and len(o.pending) > 1), default=0)
            if coming >= max(own, elsewhere) + self.min_copy:
                continue
            if elsewhere >= own + self.min_copy:
                if copied:  # one stream copy per step
                    continue
                copied = True
                self._cut(slot, 0)
                self.C.llama_memory_seq_cp(self.memory, source, slot, -1, -1)
                self.cached[slot] = list(self.cached[source])
                self.kept[slot] = dict(self.kept[source])
            self._place(seq, slot)

    def _place(self, seq: _Sequence, slot: int) -> None:
        """Start the sequence in `slot` from the longest prefix of its prompt there."""
        seq.slot = slot
        seq.placed = True
        last = len(seq.prompt) - 1
        best = _common_prefix(self.cached[slot], seq.prompt)
        if best == len(seq.prompt) and last in self.kept[slot]:
            # the whole prompt and the logits after it are kept: the reply starts without a decode, and
            # the earlier reply after it stays in the cache for as long as this one repeats it
            seq.pending = []
        else:  # the last prompt token is evaluated in any case: its logits start the reply
            best = min(best, last)
            self._cut(slot, best)
            seq.pending = seq.prompt[best:]
        kept = self.kept[slot]  # rows before the prompt's end serve no later call of this prompt: room
        for p in [p for p in kept if p < last]:
            del kept[p]
        seq.n_past = best
        seq.reused = best
        seq.generated = []
        seq.multibyte_fix = 0
        seq.draft_len = self.max_draft
        self.prompt_tokens_reused += best

    def _make_samplers(self, seq: _Sequence) -> None:
        """The chain Llama._init_sampler builds for these settings, seeded the same way."""
        C, llama, a = self.C, self.llama, seq.sampling
        if seq.seed is not None:
            llama.set_seed(seq.seed)
        else:
            llama.set_seed(random.Random(llama._seed).randint(0, 2**32))
        seed = llama._seed
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        if a["repeat_penalty"] != 1.0 or a["frequency_penalty"] or a["presence_penalty"]:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_penalties(
                self.n_vocab, llama.last_n_tokens_size, a["repeat_penalty"], a["frequency_penalty"], a["presence_penalty"]))
        grammar = a.get("grammar")
        if grammar is not None:  # kept out of the chain: _sample checks it on the best candidates first
            seq.grammar_sampler = C.llama_sampler_init_grammar(self.vocab, grammar._grammar.encode(),
                                                               grammar._root.encode())
        temperature = a["temperature"]
        if temperature < 0.0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(seed))
        elif temperature == 0.0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
        else:
            for sampler in (C.llama_sampler_init_top_k(a["top_k"]), C.llama_sampler_init_typical(a["typical_p"], 1),
                            C.llama_sampler_init_top_p(a["top_p"], 1), C.llama_sampler_init_min_p(a["min_p"], 1),
                            C.llama_sampler_init_temp(temperature), C.llama_sampler_init_dist(seed)):
                C.llama_sampler_chain_add(chain, sampler)
        seq.chain = chain

    def _release(self, seq: _Sequence) -> None:
        for name in ("chain", "grammar_sampler"):
            sampler = getattr(seq, name)
            if sampler is not None:
                self.C.llama_sampler_free(sampler)
                setattr(seq, name, None)

    def _fail(self, seq: _Sequence, error: BaseException) -> None:
        if not seq.future.cancelled():
            try:
                seq.future.set_exception(error)
            except concurrent.futures.InvalidStateError:
                pass

    def _finish(self, seq: _Sequence, reason: str, text: bytes | None = None) -> None:
        self.active.remove(seq)
        self._release(seq)
        if text is None:
            text = self.llama.detokenize(seq.generated, prev_tokens=seq.prompt)
        self.replies.add(seq.grammar_key, seq.generated)
        result = BatchResult(text.decode("utf-8", errors="ignore"), len(seq.prompt), len(seq.generated), reason,
                             seq.reused, seq.drafted, seq.accepted, seq.from_kept)
        try:
            seq.future.set_result(result)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self.active if s.future.cancelled()]:
            self.active.remove(seq)  # its cached tokens stay valid for the next prefix match
            self._release(seq)

    def _cut(self, slot: int, position: int) -> None:
        """Drop a slot's cached tokens (and their kept logits) from `position` on."""
        self.C.llama_memory_seq_rm(self.memory, slot, position, -1)
        del self.cached[slot][position:]
        kept = self.kept[slot]
        for p in [p for p in kept if p >= position]:
            del kept[p]

    def _keep(self, slot: int, position: int, logits: np.ndarray) -> None:
        if len(self.kept[slot]) < self.max_kept:
            self.kept[slot][position] = logits.copy()  # the context's buffer is rewritten by the next decode

    def _sample_kept(self, seq: _Sequence) -> None:
        """Sample from kept logits while the sequence picks the tokens already cached after it; on the
        first other token (or one whose logits are not kept), cut the rest and decode from there."""
        cached, kept = self.cached[seq.slot], self.kept[seq.slot]
        while True:
            token = self._sample(seq, kept[seq.n_past - 1])
            seq.from_kept += 1
            self.tokens_from_kept += 1
            if not self._advance(seq, token):
                return
            if seq.n_past < len(cached) and cached[seq.n_past] == token and seq.n_past in kept:
                seq.n_past += 1
                continue
            self._cut(seq.slot, seq.n_past)
            seq.pending = [token]
            return

    def _logits(self, index: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.C.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))

    def _step(self) -> None:
        """One llama_decode over every active sequence, then the sampled tokens of each that is ready:
        one, or several when the tokens guessed after it (drafts) are the ones the sampler picks.
        A sequence whose next logits are kept samples first, without a decode."""
        C, batch = self.C, self.batch
        for seq in [s for s in self.active if s.placed and not s.pending]:
            self._sample_kept(seq)
        while True:
            entries = []  # (seq, prompt/pending tokens fed, batch index of its first logits or -1, draft)
            n = 0
            # generating sequences first (their last token and its draft), then prompts
            for seq in sorted((s for s in self.active if s.placed), key=lambda s: len(s.pending) > 1):
                take = min(len(seq.pending), self.n_batch - n)
                if take <= 0:
                    continue
                ready = take == len(seq.pending)
                draft = self._guess(seq, self.n_batch - n - take) if ready else []
                tokens = seq.pending[:take] + draft
                for j, token in enumerate(tokens):
                    batch.token[n + j] = token
                    batch.pos[n + j] = seq.n_past + j
                    batch.n_seq_id[n + j] = 1
                    batch.seq_id[n + j][0] = seq.slot
                    batch.logits[n + j] = ready and j >= take - 1
                entries.append((seq, take, n + take - 1 if ready else -1, draft))
                n += len(tokens)
            batch.n_tokens = n
            if n == 0:
                return
            status = C.llama_decode(self.ctx, batch)
            if status == 0:
                break
            if status != 1:
                raise RuntimeError(f"llama_decode failed ({status})")
            self._fail_active(RuntimeError("llama_decode found no KV cell for the batch"))
        self.decode_calls += 1
        for seq, take, index, draft in entries:
            fed = seq.pending[:take]
            if not seq.generated:
                self.prompt_tokens_evaluated += take
            seq.pending = seq.pending[take:]
            first = seq.n_past + take - 1  # the position whose logits are at `index`
            accepted, going, token = 0, True, None
            if index >= 0:
                # sample position by position; each draft token the sampler picked is already in the
                # cache, so the next position's logits are valid too (same tokens, same draws)
                while True:
                    logits = self._logits(index + accepted)
                    self._keep(seq.slot, first + accepted, logits)
                    token = self._sample(seq, logits)
                    going = self._advance(seq, token)
                    if not going or accepted == len(draft) or token != draft[accepted]:
                        break
                    accepted += 1
                self._adapt_draft(seq, len(draft), accepted)
            self.cached[seq.slot] += fed + draft[:accepted]
            seq.n_past += take + accepted
            if accepted < len(draft):  # the guesses after the first miss leave the cache
                C.llama_memory_seq_rm(self.memory, seq.slot, seq.n_past, -1)
            if going and index >= 0:
                seq.pending = [token]

    def _guess(self, seq: _Sequence, room: int) -> list[int]:
        """The draft for the tokens after this step's: the continuation of an earlier reply under the
        same grammar that matches the reply so far."""
        # Drafts that kept missing (free text) stop, until the reply's last 4 tokens are found in an
        # earlier reply again (the JSON that follows a free-text field)
        probing = seq.draft_len == 0
        limit = min(self.max_draft if probing else seq.draft_len, room, seq.max_tokens - len(seq.generated) - 1)
        if limit <= 0:
            return []
        draft = self.replies.guess(seq.grammar_key, seq.generated, limit, context=4 if probing else 2)
        seq.drafted += len(draft)
        self.tokens_drafted += len(draft)
        return draft

    def _adapt_draft(self, seq: _Sequence, drafted: int, accepted: int) -> None:
        """Longer drafts while they are confirmed, none once they keep missing: a rejected draft
        token costs about a third of a decode step here."""
        seq.accepted += accepted
        self.tokens_accepted += accepted
        if drafted == 0:
            return
        if accepted == drafted:
            seq.draft_len = min(max(2 * seq.draft_len, accepted), self.max_draft)
        elif accepted == 0:
            seq.draft_len //= 2
        else:
            seq.draft_len = max(accepted, 1)

    def _fail_active(self, error: BaseException) -> None:
        """A batch that cannot be decoded (the cache is restored as it was): its calls fail, the
        engine goes on with the next ones."""
        for seq in [s for s in self.active if s.placed]:
            self._cut(seq.slot, 0)
            self.active.remove(seq)
            self._release(seq)
            self._fail(seq, error)

    def _sample(self, seq: _Sequence, logits: np.ndarray) -> int:
        """The token llama-cpp-python's chain (grammar, top_k, top_p, min_p, temp, dist) picks, with
        the grammar checked on the best candidates only: the chain's first step keeps the top_k
        best allowed tokens, which are the top_k first allowed ones in logit order. Same token,
        same random draw; the whole vocabulary is masked only when too few top tokens are allowed."""
        C = self.C
        grammar = seq.grammar_sampler
        if grammar is None:  # what llama_sampler_sample does with the context's row
            token = self._apply_chain(seq.chain, self._all_tokens, logits)
            C.llama_sampler_accept(seq.chain, token)
            return token
        need = 1 if seq.sampling["temperature"] == 0.0 else seq.sampling["top_k"]
        # The grammar's state is a function of the reply so far: where few tokens are allowed (the
        # JSON skeleton every reply of a schema shares) the whole-vocabulary check is done once.
        key = (seq.grammar_key, tuple(seq.generated))
        allowed = self._allowed_sets.get(key)
        if allowed is None:
            for width in ((1, 256) if need == 1 else (256,)):
                if need <= 0 or width < need:
                    continue
                if width == 1:
                    top = np.array([int(np.argmax(logits))])
                else:
                    top = np.argpartition(-logits, width)[:width]
                    top = top[np.argsort(-logits[top], kind="stable")]
                found = self._allowed(grammar, top, logits[top])
                if len(found) >= need:
                    allowed = found[:need]
                    break
            else:  # mask the whole vocabulary, as the sequential path does every step
                allowed = self._allowed(grammar, np.arange(self.n_vocab, dtype=np.int32), logits)
                if len(allowed) <= self.max_cached_set:
                    if self._cached_tokens + len(allowed) > self.max_cached_tokens:
                        self._allowed_sets.clear()
                        self._cached_tokens = 0
                    self._allowed_sets[key] = allowed
                    self._cached_tokens += len(allowed)
        token = self._apply_chain(seq.chain, allowed, logits)
        C.llama_sampler_accept(seq.chain, token)
        C.llama_sampler_accept(grammar, token)
        return token

    def _array(self, size: int):
        return self.C.llama_token_data_array(
            data=self._candidates.ctypes.data_as(ctypes.POINTER(self.C.llama_token_data)), size=size, selected=-1,
            sorted=False)

    def _allowed(self, grammar, tokens: np.ndarray, token_logits: np.ndarray) -> np.ndarray:
        """The tokens (in the given order) the grammar allows next."""
        n = len(tokens)
        candidates = self._candidates
        candidates["id"][:n] = tokens
        candidates["logit"][:n] = token_logits
        candidates["p"][:n] = 0.0
        self.C.llama_sampler_apply(grammar, ctypes.byref(self._array(n)))
        return tokens[np.isfinite(candidates["logit"][:n])]

    def _apply_chain(self, chain, tokens: np.ndarray, logits: np.ndarray) -> int:
        n = len(tokens)
        candidates = self._candidates
        candidates["id"][:n] = tokens
        candidates["logit"][:n] = logits[tokens]
        candidates["p"][:n] = 0.0
        array = self._array(n)
        self.C.llama_sampler_apply(chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _advance(self, seq: _Sequence, token: int) -> bool:
        """What Llama._create_completion does with a sampled token: stop (False), or keep it and go
        on (True; the caller feeds it next)."""
        if self.C.llama_vocab_is_eog(self.vocab, token):
            self._finish(seq, "stop")
            return False
        seq.generated.append(token)
        all_text = self.llama.detokenize(seq.generated, prev_tokens=seq.prompt)
        for k, char in enumerate(all_text[-3:]):  # an incomplete UTF-8 character: not checked yet
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    seq.multibyte_fix = num - k
        if seq.multibyte_fix > 0:
            seq.multibyte_fix -= 1
            return True
        stops = [s for s in seq.stop if s in all_text]
        if stops:
            self._finish(seq, "stop", all_text[: all_text.index(stops[0])])
            return False
        if len(seq.generated) >= seq.max_tokens:
            self._finish(seq, "length")
            return False
        return True
