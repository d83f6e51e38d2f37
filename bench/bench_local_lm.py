"""Benchmark the embedded model path; prints medians and ratios measured in this one run.

1. grammar-constrained vs free generation (tokens/s) - DESIGN.md measured ~3x slower under a grammar;
2. a cached LlamaGrammar (what promptrl does) vs building it from the JSON schema on every call;
3. promptrl's per-call overhead: LanguageModel.generate vs calling llama-cpp directly.

    make bench      # or: .venv/bin/python bench/bench_local_lm.py [--calls 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from promptrl.datasets import load
from promptrl.language_model import LanguageModel, _LocalBackend
from promptrl.modules import Generator, Input


def median_time(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()

    dataset = load("sentiment", seed=0)
    lm = LanguageModel(max_tokens=48)
    x0 = Input(dataset.input_data_model)
    generator = Generator(dataset.output_data_model, lm, name="answer")
    generator(x0)
    messages = generator.render_messages(dataset.x_test[0].model_dump())
    schema = dataset.output_data_model.model_json_schema()
    backend = _LocalBackend(lm)
    llama = backend._llama()
    grammar = backend._grammar(schema)

    from llama_cpp import LlamaGrammar

    def constrained(g=None):
        out = llama.create_chat_completion(messages=messages, grammar=g or grammar, temperature=0, max_tokens=48)
        return out["usage"]["completion_tokens"]

    def free():
        out = llama.create_chat_completion(messages=messages, temperature=0, max_tokens=48)
        return out["usage"]["completion_tokens"]

    constrained()  # warm-up (model load, prompt cache)
    tokens_c, tokens_f = constrained(), free()
    t_constrained = median_time(constrained, args.calls)
    t_free = median_time(free, args.calls)
    t_fresh_grammar = median_time(
        lambda: constrained(LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)), args.calls)
    t_build = median_time(lambda: LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False), args.calls)
    t_promptrl = median_time(lambda: asyncio.run(lm.generate(messages, dataset.output_data_model)), args.calls)

    print(f"median over {args.calls} calls, SmolLM2-135M Q4_1, one sentiment prompt ({len(json.dumps(messages))} chars)")
    print(f"constrained: {t_constrained * 1000:7.1f} ms/call  {tokens_c / t_constrained:6.1f} tokens/s ({tokens_c} tokens)")
    print(f"free:        {t_free * 1000:7.1f} ms/call  {tokens_f / t_free:6.1f} tokens/s ({tokens_f} tokens)")
    print(f"  ratio constrained/free time per token: {(t_constrained / tokens_c) / (t_free / tokens_f):.2f}x")
    print(f"grammar built per call: {t_fresh_grammar * 1000:7.1f} ms/call (building alone {t_build * 1000:.1f} ms)")
    print(f"  ratio fresh/cached grammar: {t_fresh_grammar / t_constrained:.2f}x")
    print(f"promptrl LanguageModel.generate: {t_promptrl * 1000:7.1f} ms/call")
    print(f"  ratio promptrl/direct llama-cpp: {t_promptrl / t_constrained:.2f}x")


if __name__ == "__main__":
    main()
