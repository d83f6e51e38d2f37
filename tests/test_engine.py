"""The provider call path against a scripted OpenAI-compatible server on loopback: structured
output modes and their fallback, retries and Retry-After, timeouts, error classes, the adaptive
window, streaming order, and the same accounting on the lean and the litellm transport."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from promptrl import LanguageModel
from promptrl.errors import LanguageModelUnavailable

from fake_openai import fake_openai_server, sentiment_program


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with fake_openai_server() as served:
        yield served


def predict(lm, texts, **kwargs):
    program, dataset = sentiment_program(lm)
    return asyncio.run(program.predict([dataset.input_data_model(text=t) for t in texts], **kwargs))


def evaluate(lm, texts):
    program, dataset = sentiment_program(lm)
    x = [dataset.input_data_model(text=t) for t in texts]
    y = [dataset.output_data_model(answer="positive" if "great" in t else "negative") for t in texts]
    logs, predictions = asyncio.run(_evaluate(program, x, y))
    return logs, predictions


async def _evaluate(program, x, y):
    from promptrl.trainer import evaluate as run

    return await run(program, x, y, return_predictions=True)


def openai_lm(url, **settings):
    settings.setdefault("num_retries", 0)
    return LanguageModel("openai/gpt-4o-mini", api_base=url, **settings)


def test_the_schema_is_sent_in_openais_strict_form(server):
    url, recorder = server
    lm = openai_lm(url)
    assert type(lm._transport).__name__ == "HTTPTransport"  # an api_base: the lean transport
    assert [o.answer for o in predict(lm, ["a great day", "a dull day"])] == ["positive", "negative"]
    fmt = recorder.requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["positive", "negative"]
    assert lm.structured.report() == {"setting": "auto", "mode": "json_schema", "fallbacks": []}


def test_a_server_that_rejects_json_schema_gets_the_llama_cpp_form_once(server, caplog):
    url, recorder = server
    recorder.rejected_formats = {"json_schema"}
    lm = openai_lm(url, concurrency=4)
    with caplog.at_level(logging.WARNING, logger="promptrl"):
        logs, predictions = evaluate(lm, ["great", "dull", "great fun", "dull film", "great", "bad"])
    assert logs["reward"] == 1.0 and logs["failures"] == 0 and lm.usage.failures == 0
    assert lm.structured.mode == "json_object_schema" and len(lm.structured.fallbacks) == 1
    assert sum("rejected structured output" in r.message for r in caplog.records) == 1
    # the server's own message, on one line, cut at a word: not its JSON wrapping, not its whole traceback
    reason = lm.structured.fallbacks[0]["reason"]
    assert reason.startswith("HTTP 422: 1 validation error: {'type': 'literal_error'") and "\n" not in reason
    assert '{"error"' not in reason and reason.endswith(" ...") and len(reason) <= 215
    last = recorder.requests[-1]["body"]["response_format"]
    assert last["type"] == "json_object" and last["schema"]["properties"]["answer"]["enum"] == ["positive", "negative"]
    assert lm.usage.calls == 6  # a rejected form is not a prediction
    assert lm.usage.retries == 0 and lm.usage.format_resends >= 1  # a rejected form is not flakiness either


def test_fallback_goes_down_to_prompt_only(server):
    url, recorder = server
    recorder.rejected_formats = {"json_schema", "json_object"}
    lm = openai_lm(url)
    assert predict(lm, ["great"])[0].answer == "positive"
    assert [f["to"] for f in lm.structured.fallbacks] == ["json_object_schema", "json_object", "none"]
    assert "response_format" not in recorder.requests[-1]["body"]
    assert (lm.usage.format_resends, lm.usage.retries) == (3, 0)


def test_a_fixed_mode_never_falls_back(server):
    url, recorder = server
    recorder.rejected_formats = {"json_schema"}
    lm = openai_lm(url, structured_output="json_schema")
    with pytest.raises(LanguageModelUnavailable, match="HTTP 422"):
        predict(lm, ["great"])
    assert len(recorder.requests) == 1


def test_a_429_is_retried_after_the_servers_retry_after(server):
    url, recorder = server
    recorder.actions = [{"status": 429, "headers": {"Retry-After": "0.4"}}]
    lm = openai_lm(url, num_retries=2)
    started = time.perf_counter()
    assert predict(lm, ["great"])[0].answer == "positive"
    assert time.perf_counter() - started >= 0.4
    assert len(recorder.requests) == 2
    assert (lm.usage.calls, lm.usage.retries, lm.usage.failures) == (1, 1, 0)
    assert lm.limiter.decreases == 1


def test_a_timeout_is_a_failed_prediction_not_a_stop(server):
    url, recorder = server
    recorder.actions = [{}, {"sleep": 1.5}]
    lm = openai_lm(url, timeout=0.5, concurrency=1)
    predictions = predict(lm, ["great", "dull", "great"])
    assert [p is None for p in predictions] == [False, True, False]
    assert lm.usage.failures == 1 and lm.usage.calls == 3


def test_error_classes(server):
    url, recorder = server
    recorder.actions = [{"status": 401, "body": "invalid api key"}]
    with pytest.raises(LanguageModelUnavailable, match="HTTP 401"):
        predict(openai_lm(url), ["great"])
    # a 400 for one request after the model has worked: that example fails, the run goes on, no retry
    recorder.actions, recorder.requests = [{}, {"status": 400, "body": "context length exceeded"}], []
    lm = openai_lm(url, num_retries=3, concurrency=1)
    predictions = predict(lm, ["great", "dull", "great"])
    assert [p is None for p in predictions] == [False, True, False] and len(recorder.requests) == 3
    assert lm.usage.retries == 0


def test_an_error_reply_is_told_by_its_message_on_one_line():
    from promptrl.engine.http import error_message

    assert error_message(b'{"error": {"message": "model\\n  not found", "type": "x"}}') == "model not found"
    assert error_message(b'{"error": "overloaded"}') == "overloaded"
    assert error_message(b'{"detail": [{"msg": "field required"}]}') == '[{"msg": "field required"}]'
    page = b"<html>\n<body>Bad Gateway</body>\n</html>" + b" filler" * 100
    assert error_message(page).startswith("<html> <body>Bad Gateway") and len(error_message(page)) <= 300


def test_invalid_json_is_a_failed_prediction(server):
    url, recorder = server
    recorder.actions = [{}, {"content": "I think it is positive"}]
    lm = openai_lm(url, concurrency=1)
    predictions = predict(lm, ["great", "dull"])
    assert predictions[1] is None and lm.usage.failures == 1 and lm.usage.calls == 2


def test_a_reset_connection_is_retried(server):
    url, recorder = server
    recorder.actions = [{"reset": True}]
    lm = openai_lm(url, num_retries=1)
    assert predict(lm, ["great"])[0].answer == "positive"
    assert lm.usage.retries == 1 and lm.usage.failures == 0


def test_accounting_is_the_same_on_both_transports(server):
    url, recorder = server
    usages = {}
    for transport in ("http", "litellm"):
        recorder.actions = [{}, {"status": 503}, {}, {"content": "not json"}]
        lm = openai_lm(url, transport=transport, num_retries=1, concurrency=1)
        predict(lm, ["great", "dull", "great fun", "so dull"])
        usage = lm.usage.to_dict()
        usage.pop("latency_s")
        usages[transport] = usage
    assert usages["http"] == usages["litellm"]
    assert usages["http"]["calls"] == 4 and usages["http"]["retries"] == 1 and usages["http"]["failures"] == 1
    assert usages["http"]["cost"] > 0  # priced from the same table


def test_results_keep_example_order_and_stream_without_batch_barriers(server):
    url, recorder = server
    in_flight_when_slow_one_answers = []

    def delay(text):
        if text == "slow great":
            time.sleep(0.6)
            in_flight_when_slow_one_answers.append(len(recorder.requests))
        return 0.0

    recorder.delay = delay
    lm = openai_lm(url, concurrency=4)
    texts = ["slow great"] + [f"dull {i}" if i % 2 else f"great {i}" for i in range(1, 12)]
    outputs = predict(lm, texts, batch_size=2)
    assert [o.answer for o in outputs] == ["positive" if "great" in t else "negative" for t in texts]
    # All other examples went through while the first was still being answered: no batch waited for it.
    assert in_flight_when_slow_one_answers == [len(texts)]


def test_the_window_halves_on_overload_and_recovers(server):
    url, recorder = server
    recorder.actions = [{"status": 429, "headers": {"Retry-After": "0.1"}} for _ in range(8)]
    lm = openai_lm(url, concurrency=8, num_retries=3)
    outputs = predict(lm, [f"great {i}" for i in range(40)])
    assert all(o is not None for o in outputs)
    report = lm.limiter.report()
    assert report["maximum"] == 8 and report["peak_in_flight"] <= 8
    assert report["decreases"] >= 1 and report["lowest_limit"] <= 4


def test_a_transient_500_at_the_start_does_not_change_the_mode(server):
    url, recorder = server
    recorder.actions = [{"status": 500, "body": "upstream overloaded"}]
    lm = openai_lm(url, num_retries=1)
    assert predict(lm, ["great"])[0].answer == "positive"
    assert lm.structured.mode == "json_schema" and lm.structured.fallbacks == [] and lm.usage.retries == 1


def test_schema_violating_and_truncated_replies_are_failed_predictions_counted_once(server):
    url, recorder = server
    recorder.actions = [{}, {"content": '{"answer": "maybe"}'},  # valid JSON, not one of the choices
                        {"content": '{"answer": "posi', "finish_reason": "length"}]  # cut at max_tokens
    lm = openai_lm(url, concurrency=1)
    program, dataset = sentiment_program(lm)
    from promptrl.trainer import predict as run

    predictions = asyncio.run(run(program, [dataset.input_data_model(text=t) for t in ("great", "dull", "great")]))
    assert [p.failure for p in predictions] == [None, "invalid", "invalid"]
    assert "max_tokens" in predictions[2].error
    assert (lm.usage.calls, lm.usage.failures, lm.usage.retries) == (3, 2, 0) and len(recorder.requests) == 3


def test_the_body_is_what_the_messages_settings_and_format_say_and_follows_new_prompts(server):
    """The body carries the settings, extra body keys and headers, the call's seed and format, and
    the prompt as it is now: a changed prompt, or a message edited in place, reaches the server."""
    url, recorder = server
    lm = openai_lm(url, top_p=0.5, extra_body={"top_k": 3}, extra_headers={"X-Trace": "t1"})
    program, dataset = sentiment_program(lm)
    generator = program.nodes[-1].module
    x = [dataset.input_data_model(text="great day")]
    asyncio.run(program.predict(x, seed=1))
    generator.instructions = "Judge the sentiment, please."
    asyncio.run(program.predict(x, seed=1))
    first, second = (r["body"] for r in recorder.requests)
    assert first["messages"][0]["content"] != second["messages"][0]["content"]
    assert second["messages"][0]["content"].startswith("Judge the sentiment, please.")
    assert second["messages"][1:] == first["messages"][1:] and second["messages"][-1]["role"] == "user"
    assert (second["top_p"], second["top_k"], second["max_tokens"], second["model"]) == (0.5, 3, 256, "gpt-4o-mini")
    assert isinstance(second["seed"], int) and second["response_format"]["type"] == "json_schema"
    headers = recorder.requests[-1]["headers"]
    assert headers["content-type"] == "application/json" and headers["x-trace"] == "t1"
    assert headers["authorization"] == "Bearer sk-test-not-a-real-key"

    from promptrl.language_model import schema_of

    messages = [{"role": "system", "content": "Say positive."}, {"role": "user", "content": '{"text": "é"}'}]
    output = dataset.output_data_model
    asyncio.run(lm.generate(messages, output))
    messages[0]["content"] = "Say negative."  # the same dict, edited in place
    asyncio.run(lm.generate(messages, output, seed=7))
    bodies = [r["body"] for r in recorder.requests[-2:]]
    assert [b["messages"] for b in bodies] == [[{**messages[0], "content": "Say positive."}, messages[1]], messages]
    assert "seed" not in bodies[0] and bodies[1]["seed"] == 7
    assert bodies[0]["response_format"]["json_schema"]["schema"] == schema_of(output)


def test_prices_are_read_from_the_table_entry_alone_and_agree_with_the_whole_table(tmp_path, monkeypatch):
    import json

    from promptrl.engine import prices

    table = {"gpt-x": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
             "openai/gpt-y": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6, "notes": "like gpt-x"},
             "odd/layout": {"input_cost_per_token": 5e-6, "output_cost_per_token": 6e-6},
             "twice": {"input_cost_per_token": 7e-6}}
    text = json.dumps(table, indent=4)
    text = text.replace('\n    "odd/layout"', '\n"odd/layout"')  # a line litellm's file has at column 0
    text = text[:-2] + ',\n    "twice": {"input_cost_per_token": 8e-6}\n}'  # a duplicate: the last one counts
    path = tmp_path / "table.json"
    path.write_text(text)
    monkeypatch.setattr(prices, "_table_path", lambda: path)
    for cached in (prices._table, prices.price_per_token):
        cached.cache_clear()
    try:
        assert prices.price_per_token("openai/gpt-y") == (3e-6, 4e-6)
        assert prices.price_per_token("hosted_vllm/my-own-model") == (0.0, 0.0)
        assert prices._table.cache_info().currsize == 0  # found, or named nowhere: no whole-table parse
        assert prices.price_per_token("openai/gpt-x") == (1e-6, 2e-6)  # named in a note too: parsed whole
        assert prices.price_per_token("odd/layout") == (5e-6, 6e-6)
        assert prices.price_per_token("twice") == (8e-6, 0.0)
    finally:
        for cached in (prices._table, prices.price_per_token):
            cached.cache_clear()


def test_import_promptrl_loads_only_the_call_path():
    """`import promptrl` + a first call stays fast: no litellm, datasets, optimizers or retry library
    until used; the lazily imported parts are still there by name."""
    import subprocess
    import sys

    code = ("import sys, promptrl; loaded = set(sys.modules); "
            "heavy = [m for m in ('litellm', 'tenacity', 'pandas', 'matplotlib', 'rich', 'promptrl.datasets', "
            "'promptrl.optimizers', 'promptrl.metrics', 'aiohttp') if m in loaded]; "
            "assert not heavy, heavy; "
            "from promptrl import datasets; promptrl.rewards.ExactMatch(); promptrl.optimizers.RandomFewShot; "
            "assert 'rewards' in dir(promptrl); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_each_request_carries_the_prompts_of_the_moment_though_their_encoding_is_kept(server):
    url, recorder = server
    lm = openai_lm(url, concurrency=1)
    program, dataset = sentiment_program(lm)
    generator = program.generators[0]
    texts = ["great", "dull"]

    def sent_messages():
        recorder.requests.clear()
        asyncio.run(program.predict([dataset.input_data_model(text=t) for t in texts], seed=3))
        return [r["body"]["messages"] for r in recorder.requests]

    def expected():
        return [generator.render_messages({"text": t}) for t in texts]

    assert sent_messages() == expected()
    assert len(lm._transport._heads) == 1  # one prompt state: one encoding, though each call has its own seed
    assert len({r["body"]["seed"] for r in recorder.requests}) == len(texts)
    generator.examples = [{"input": {"text": "great fun"}, "output": {"answer": "positive"}}]  # an optimizer step
    assert sent_messages() == expected() and len(expected()[0]) == 4  # system, demo turn, example
    generator._prompt_prefix()[1]["content"] = '{"text": "changed in place"}'  # the same dict, changed
    assert [m[1]["content"] for m in sent_messages()] == ['{"text": "changed in place"}'] * 2
    body = recorder.requests[-1]["body"]
    assert body["response_format"]["type"] == "json_schema" and body["model"] == lm.model.split("/", 1)[1]
