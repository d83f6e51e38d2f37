"""The embedded model's batch engine (engine/local_batch.py): several calls decoded together, with
drafts, give create_chat_completion's replies and token counts, valid JSON, reproducible seeds, a
reused prompt prefix, fewer decode steps, and survive cancelled calls."""

import asyncio
import concurrent.futures
import json
import time
from typing import Literal

import pydantic
import pytest

from promptrl.engine.local_batch import BatchEngine, BatchResult, DoesNotFit
from promptrl.engine.transports import LocalTransport
from promptrl.language_model import LanguageModel


class _FakeEngine:
    def __init__(self, outcome):
        self.outcome, self.calls = outcome, []

    def submit(self, messages, grammar, temperature, max_tokens, seed):
        self.calls.append((temperature, max_tokens, seed))
        future = concurrent.futures.Future()
        if isinstance(self.outcome, Exception):
            future.set_exception(self.outcome)
        else:
            future.set_result(self.outcome)
        return future


class Answer(pydantic.BaseModel):
    answer: str


def _with_engine(lm, engine, monkeypatch):
    monkeypatch.setattr(LocalTransport, "_engine", lambda self: engine)
    monkeypatch.setattr(LocalTransport, "_engines", {})


def test_every_local_call_goes_through_the_batch_engine_and_accounts_its_tokens(monkeypatch):
    lm = LanguageModel("local/smollm2-135m", concurrency=1, max_tokens=20, temperature=0.3)
    engine = _FakeEngine(BatchResult('{"answer": "yes"}', prompt_tokens=31, completion_tokens=7,
                                     finish_reason="stop", reused_tokens=20))
    _with_engine(lm, engine, monkeypatch)
    out = asyncio.run(lm.generate([{"role": "user", "content": "hi"}], Answer, seed=5))
    assert out == Answer(answer="yes")
    assert engine.calls == [(0.3, 20, 5)]
    assert (lm.usage.calls, lm.usage.prompt_tokens, lm.usage.completion_tokens) == (1, 31, 7)


def test_a_call_too_long_for_a_slot_runs_on_the_sequential_path(monkeypatch):
    lm = LanguageModel("local/smollm2-135m", concurrency=4)
    _with_engine(lm, _FakeEngine(DoesNotFit("too long")), monkeypatch)
    from promptrl.engine.transports import Completion

    monkeypatch.setattr(LocalTransport, "_complete_sync",
                        lambda self, messages, schema, seed: Completion('{"answer": "seq"}', 3, 2))
    assert asyncio.run(lm.generate([{"role": "user", "content": "hi"}], Answer)) == Answer(answer="seq")
    assert lm.usage.prompt_tokens == 3


# -- the real model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    """The Llama the engine renders prompts with, and a few-shot sentiment prompt set."""
    from promptrl.datasets import load
    from promptrl.engine.transports import local_model_path
    from promptrl.modules import Generator, Input

    dataset = load("sentiment", seed=0)
    generator = Generator(dataset.output_data_model, LanguageModel(), name="answer")
    generator(Input(dataset.input_data_model))
    generator.examples = [{"input": x.model_dump(), "output": y.model_dump()}
                          for x, y in zip(dataset.x_train[:2], dataset.y_train[:2])]
    messages = [generator.render_messages(x.model_dump()) for x in dataset.x_test[:8]]
    llama = LocalTransport._load(local_model_path("local/smollm2-135m", None), 256, None)
    return llama, messages, dataset.output_data_model


def _grammar(output_model):
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(json.dumps(output_model.model_json_schema()), verbose=False)


def _engine(llama, slots):
    return BatchEngine(llama, slots=slots, n_ctx=2048, slot_ctx=1024)


def _run(engine, messages, output_model, temperature=0.0, max_tokens=24, seeds=None):
    futures = [engine.submit(m, _grammar(output_model), temperature, max_tokens, seed)
               for m, seed in zip(messages, seeds or range(len(messages)))]
    return [f.result(timeout=120) for f in futures]


@pytest.mark.integration
def test_replies_are_create_chat_completions_whatever_the_concurrency_drafts_or_history(model):
    """Flash attention in small micro-batches makes a token's logits independent of its batch: the
    engine gives create_chat_completion's replies, token counts included, at any concurrency, with
    drafts guessed from whatever replies came before, at a positive temperature."""
    llama, messages, output_model = model
    sequential = LocalTransport._load(llama.model_path, 2048, None)
    expected = []
    for seed, m in enumerate(messages):
        out = sequential.create_chat_completion(messages=m, grammar=_grammar(output_model), temperature=0.7,
                                                max_tokens=24, seed=seed)
        expected.append((out["choices"][0]["message"]["content"], out["usage"]["prompt_tokens"],
                         out["usage"]["completion_tokens"]))
    for slots in (1, 3):
        engine = _engine(llama, slots=slots)
        try:
            _run(engine, messages[::-1], output_model, temperature=0.7, seeds=[99] * len(messages))  # other history
            results = _run(engine, messages, output_model, temperature=0.7)
        finally:
            engine.close()
        assert [(r.text, r.prompt_tokens, r.completion_tokens) for r in results] == expected, slots
        assert sum(r.accepted_tokens for r in results) > 0  # drafts were taken, and changed nothing


@pytest.mark.integration
def test_drafts_from_earlier_replies_save_decode_steps(model):
    llama, messages, output_model = model
    counts = {}
    for max_draft in (0, 8):
        engine = BatchEngine(llama, slots=1, n_ctx=2048, max_draft=max_draft)
        try:
            texts = [r.text for r in _run(engine, messages, output_model)]
            counts[max_draft] = (engine.decode_calls, texts)
        finally:
            engine.close()
    assert counts[8][1] == counts[0][1]
    assert counts[8][0] < 0.6 * counts[0][0], counts  # most reply tokens come confirmed in a prompt's decode


@pytest.mark.integration
def test_every_constrained_output_validates_nested_lists_enums_numbers(model):
    llama, messages, _ = model

    class Detail(pydantic.BaseModel):
        score: float
        count: int

    class Review(pydantic.BaseModel):
        label: Literal["positive", "negative", "neutral"]
        detail: Detail
        keywords: list[str] = pydantic.Field(max_length=2)

    engine = _engine(llama, slots=4)
    try:
        results = _run(engine, messages[:4], Review, temperature=0.8, max_tokens=96)
    finally:
        engine.close()
    finished = [r for r in results if r.finish_reason == "stop"]
    assert len(finished) >= 3
    for result in finished:
        Review.model_validate_json(result.text)


@pytest.mark.integration
def test_same_seed_same_output_across_runs_at_positive_temperature(model):
    llama, messages, output_model = model
    runs = []
    for slots in (4, 4):
        engine = _engine(llama, slots)
        try:
            runs.append([r.text for r in _run(engine, messages[:6], output_model, temperature=1.0,
                                              seeds=[7, 7, 8, 8, 9, 9])])
        finally:
            engine.close()
    assert runs[0] == runs[1]


@pytest.mark.integration
def test_the_shared_prompt_prefix_is_evaluated_once_per_slot(model):
    import llama_cpp

    llama, messages, output_model = model
    engine = _engine(llama, slots=2)
    try:
        results = _run(engine, messages, output_model)
        perf = llama_cpp.llama_perf_context(engine.ctx)
    finally:
        engine.close()
    prompt_tokens = sum(r.prompt_tokens for r in results)
    # llama.cpp's own counters: every token it evaluated, prompts and replies
    evaluated = perf.n_p_eval + perf.n_eval
    generated = sum(r.completion_tokens for r in results)
    assert evaluated < 0.6 * prompt_tokens + generated
    assert sum(r.reused_tokens for r in results) > 0.4 * prompt_tokens


@pytest.mark.integration
def test_cancelled_calls_free_their_slot_and_later_calls_still_work(model):
    llama, messages, output_model = model
    engine = _engine(llama, slots=2)
    try:
        futures = [engine.submit(m, _grammar(output_model), 0.0, 24, i) for i, m in enumerate(messages[:6])]
        for future in futures[1:5]:
            future.cancel()
        assert futures[0].result(timeout=120).finish_reason in ("stop", "length")
        assert futures[5].result(timeout=120).text
        deadline = time.time() + 10
        while engine.active and time.time() < deadline:
            time.sleep(0.05)
        assert engine.active == [] and engine.waiting == []
        again = _run(engine, messages[:2], output_model)
        assert all(output_model.model_validate_json(r.text) for r in again)
    finally:
        engine.close()


@pytest.mark.integration
@pytest.mark.parametrize("slots", [1, 3])
def test_runs_asking_the_same_example_sample_from_kept_logits_and_reply_the_same(model, slots):
    """The NB_RUNS evaluations ask each example in turn: the second run of a prompt samples from the
    logits the first one's decode left with the slot, with no llama_decode while it picks the same
    tokens, and gives the reply a fresh engine gives. With several slots, the runs of an example
    still go one after another in one slot (not side by side, where nothing is kept yet)."""
    llama, messages, output_model = model
    prompts = [m for m in messages[:4] for _ in range(3)]  # example by example, three runs each
    seeds = [run for _ in messages[:4] for run in range(3)]
    engine = _engine(llama, slots=slots)
    try:
        results = _run(engine, prompts, output_model, temperature=1.0, seeds=seeds)
        decodes = engine.decode_calls
        again = _run(engine, prompts[-1:], output_model, temperature=1.0, seeds=seeds[-1:])[0]
        assert engine.decode_calls == decodes  # same prompt, same seed: the reply comes from kept logits
    finally:
        engine.close()
    assert again.text == results[-1].text
    assert again.kept_logits_tokens == again.completion_tokens + 1  # every reply token and the end
    # a later run starts from the logits kept after its prompt (at least its first token)
    assert [r.kept_logits_tokens > 0 for r in results] == [run > 0 for run in seeds]
    # and one of them picks another token than the reply cached after the prompt: it decodes from there
    assert any(0 < r.kept_logits_tokens <= r.completion_tokens for r in results)
    fresh = []
    for prompt, seed in zip(prompts, seeds):  # one engine per call: nothing kept from another call
        engine = _engine(llama, slots=1)
        try:
            fresh.append(_run(engine, [prompt], output_model, temperature=1.0, seeds=[seed])[0])
        finally:
            engine.close()
    assert [r.text for r in results] == [r.text for r in fresh]
    assert all(r.kept_logits_tokens == 0 for r in fresh)


@pytest.mark.integration
def test_free_text_without_a_grammar_is_create_chat_completions(model):
    llama, messages, _ = model
    sequential = LocalTransport._load(llama.model_path, 2048, None)
    expected = [sequential.create_chat_completion(messages=m, temperature=0.7, max_tokens=16, seed=3)
                ["choices"][0]["message"]["content"] for m in messages[:3]]
    engine = _engine(llama, slots=2)
    try:
        futures = [engine.submit(m, None, 0.7, 16, 3) for m in messages[:3] + messages[2:3]]
        results = [f.result(timeout=120) for f in futures]
    finally:
        engine.close()
    assert [r.text for r in results] == expected + expected[2:]
    assert results[-1].kept_logits_tokens > 0  # the last prompt again: from the logits kept after it
