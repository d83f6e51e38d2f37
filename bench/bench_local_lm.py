"""Benchmark the embedded model path; prints medians and ratios measured in this one run.

1. decoding speed with and without the JSON-schema grammar (DESIGN.md measured sampling under a
   grammar ~3x slower per token), separated from prompt processing by a 1-token call;
2. a whole structured call vs a free one (the grammar also stops the model early);
3. the cost of building the grammar per call;
4. promptrl's per-call overhead: LanguageModel.generate vs calling llama-cpp directly.

    make bench      # or: .venv/bin/python bench/bench_local_lm.py [--calls 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from llama_cpp import LlamaGrammar

from promptrl.datasets import load
from promptrl.engine.transports import LocalTransport
from promptrl.language_model import LanguageModel
from promptrl.modules import Generator, Input


def median_time(fn, calls: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(calls):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()

    dataset = load("sentiment", seed=0)
    lm = LanguageModel(max_tokens=48)
    generator = Generator(dataset.output_data_model, lm, name="answer")
    generator(Input(dataset.input_data_model))
    messages = generator.render_messages(dataset.x_test[0].model_dump())
    schema = json.dumps(dataset.output_data_model.model_json_schema())
    llama = LocalTransport(lm)._llama()

    def call(max_tokens: int, grammar: bool) -> int:
        out = llama.create_chat_completion(
            messages=messages, temperature=0, max_tokens=max_tokens,
            grammar=LlamaGrammar.from_json_schema(schema, verbose=False) if grammar else None)
        return out["usage"]["completion_tokens"]

    call(48, True)  # warm-up: model load and the prompt in the KV cache
    results = {}
    for grammar in (True, False):
        t_first, _ = median_time(lambda: call(1, grammar), args.calls)
        t_full, tokens = median_time(lambda: call(48, grammar), args.calls)
        results[grammar] = (t_first, t_full, tokens, (t_full - t_first) / max(tokens - 1, 1))
    t_promptrl, _ = median_time(lambda: asyncio.run(lm.generate(messages, dataset.output_data_model)), args.calls)
    t_build, _ = median_time(lambda: LlamaGrammar.from_json_schema(schema, verbose=False), args.calls)

    print(f"median of {args.calls} calls; SmolLM2-135M Q4_1; one few-shot-free sentiment prompt")
    for grammar, (t_first, t_full, tokens, per_token) in results.items():
        name = "grammar" if grammar else "free   "
        print(f"{name}: first token {t_first * 1000:6.1f} ms, whole call {t_full * 1000:6.1f} ms for {tokens:2d} tokens, "
              f"decoding {per_token * 1000:5.1f} ms/token ({1 / per_token:5.1f} tokens/s)")
    print(f"  decoding time per token, grammar / free: {results[True][3] / results[False][3]:.2f}x")
    print(f"  whole call, grammar / free: {results[True][1] / results[False][1]:.2f}x "
          "(the grammar ends the reply at the closing brace)")
    print(f"building the grammar from the JSON schema: {t_build * 1000:.2f} ms "
          f"({t_build / results[True][1]:.1%} of a call: promptrl builds it per call, no cache)")
    print(f"promptrl LanguageModel.generate: {t_promptrl * 1000:6.1f} ms/call; "
          f"ratio to a direct llama-cpp grammar call: {t_promptrl / results[True][1]:.2f}x")


if __name__ == "__main__":
    main()
