"""Benchmark the embedded model path; prints medians and ratios measured in this one run.

1. decoding speed, free vs under the JSON-schema grammar, per token (a 1-token call separates
   prompt processing from decoding): llama-cpp-python's grammar sampler (sequential path) and the
   batch engine's (grammar checked on the sampled token, engine/local_batch.py);
2. calls/s through LanguageModel.generate at concurrency 1/2/4/8 on few-shot sentiment prompts
   (concurrency 1: one call at a time, create_chat_completion; > 1: the batch engine), each in a
   process of its own so its peak RSS is its own; outputs compared with concurrency 1;
3. the shared-prefix saving: prompt tokens the batch engine evaluated vs reused from a slot;
4. the cost of building the grammar and promptrl's per-call overhead.

    make bench      # or: .venv/bin/python bench/bench_local_lm.py [--calls 10] [--examples 48] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
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


def few_shot_generator(lm: LanguageModel, shots: int = 3):
    """Sentiment with `shots` demonstrations: every call shares the system prompt and demos."""
    dataset = load("sentiment", seed=0)
    generator = Generator(dataset.output_data_model, lm, name="answer")
    generator(Input(dataset.input_data_model))
    generator.examples = [{"input": x.model_dump(), "output": y.model_dump()}
                          for x, y in zip(dataset.x_train[:shots], dataset.y_train[:shots])]
    return dataset, generator


def decoding_speed(calls: int) -> None:
    from promptrl.engine.local_batch import BatchEngine

    lm = LanguageModel(max_tokens=48)
    dataset, generator = few_shot_generator(lm, shots=0)
    messages = generator.render_messages(dataset.x_test[0].model_dump())
    schema = json.dumps(dataset.output_data_model.model_json_schema())
    llama = LocalTransport(lm)._llama()
    engine = BatchEngine(LocalTransport._load(llama.model_path, 256, None), slots=1, n_ctx=2048)

    def sequential(max_tokens: int, grammar: bool) -> int:
        out = llama.create_chat_completion(
            messages=messages, temperature=0, max_tokens=max_tokens,
            grammar=LlamaGrammar.from_json_schema(schema, verbose=False) if grammar else None)
        return out["usage"]["completion_tokens"]

    def batched(max_tokens: int, grammar: bool) -> int:
        grammar = LlamaGrammar.from_json_schema(schema, verbose=False) if grammar else None
        return engine.submit(messages, grammar, 0.0, max_tokens, 0).result().completion_tokens

    print(f"1. decoding, median of {calls} calls, temperature 0, one sentiment prompt (SmolLM2-135M Q4_1)")
    per_token = {}
    for name, call in (("create_chat_completion", sequential), ("batch engine, 1 slot ", batched)):
        call(48, True)  # warm-up: model load and the prompt in the KV cache
        for grammar in (False, True):
            t_first, _ = median_time(lambda: call(1, grammar), calls)
            t_full, tokens = median_time(lambda: call(48, grammar), calls)
            per_token[name, grammar] = (t_full - t_first) / max(tokens - 1, 1)
            print(f"   {name} {'grammar' if grammar else 'free   '}: {tokens:2d} tokens in {t_full * 1000:6.1f} ms, "
                  f"decoding {per_token[name, grammar] * 1000:5.1f} ms/token ({1 / per_token[name, grammar]:5.1f} "
                  "tokens/s)")
        print(f"   {name} constrained speed / free speed: "
              f"{per_token[name, False] / per_token[name, True]:.2f}x")
    engine.close()
    t_build, _ = median_time(lambda: LlamaGrammar.from_json_schema(schema, verbose=False), calls)
    t_promptrl, _ = median_time(lambda: asyncio.run(lm.generate(messages, dataset.output_data_model)), calls)
    t_direct, _ = median_time(lambda: sequential(48, True), calls)
    print(f"4. building the grammar: {t_build * 1000:.2f} ms; LanguageModel.generate / direct grammar call: "
          f"{t_promptrl / t_direct:.2f}x")


def worker(concurrency: int, examples: int, repeat: int) -> dict:
    """Calls/s of LanguageModel.generate at this concurrency (in a process of its own)."""
    lm = LanguageModel(max_tokens=48, concurrency=concurrency, temperature=0.0)
    dataset, generator = few_shot_generator(lm)
    pool = dataset.x_test + dataset.x_train[3:]
    messages = [generator.render_messages(x.model_dump()) for x in pool[:examples]]

    async def run(batch):
        return await asyncio.gather(*(lm.generate(m, dataset.output_data_model, seed=i) for i, m in enumerate(batch)))

    asyncio.run(run(messages[:2]))  # warm-up: the model loaded, the demonstrations in the cache
    engine = next(iter(LocalTransport._engines.values()), None)
    evaluated0 = engine.prompt_tokens_evaluated if engine else 0
    reused0 = engine.prompt_tokens_reused if engine else 0
    times, outputs = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        outputs = asyncio.run(run(messages))
        times.append(time.perf_counter() - start)
    return {
        "concurrency": concurrency, "calls_per_s": examples / statistics.median(times),
        "times": times, "outputs": [o.model_dump() for o in outputs],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "prompt_tokens": lm.usage.prompt_tokens, "completion_tokens": lm.usage.completion_tokens,
        "evaluated": (engine.prompt_tokens_evaluated - evaluated0) if engine else None,
        "reused": (engine.prompt_tokens_reused - reused0) if engine else None,
    }


def throughput(examples: int, repeat: int, levels: list[int]) -> None:
    print(f"2. calls/s, LanguageModel.generate, {examples} few-shot sentiment calls (3 demonstrations), "
          f"temperature 0, median of {repeat} runs, one process per concurrency")
    results = {}
    for concurrency in levels:
        out = subprocess.run([sys.executable, __file__, "--worker", str(concurrency), "--examples", str(examples),
                              "--repeat", str(repeat)], capture_output=True, text=True, check=True)
        results[concurrency] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results[levels[0]]
    for concurrency, r in results.items():
        same = sum(a == b for a, b in zip(r["outputs"], base["outputs"]))
        path = "create_chat_completion" if concurrency == 1 else "batch engine"
        print(f"   concurrency {concurrency} ({path}): {r['calls_per_s']:5.2f} calls/s "
              f"({r['calls_per_s'] / base['calls_per_s']:.2f}x), runs {', '.join(f'{t:.1f}' for t in r['times'])} s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] - base['peak_rss_mb']:+.0f}), "
              f"outputs identical to concurrency {levels[0]}: {same}/{len(r['outputs'])}")
    batched = [r for c, r in results.items() if c > 1 and r["evaluated"] is not None]
    if batched:
        r = batched[-1]
        total = r["evaluated"] + r["reused"]
        print(f"3. shared prefix (concurrency {r['concurrency']}): {r['evaluated']} prompt tokens evaluated, "
              f"{r['reused']} reused from a slot ({r['reused'] / max(total, 1):.0%} of {total})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.examples, args.repeat)))
        return
    decoding_speed(args.calls)
    throughput(args.examples, args.repeat, [int(c) for c in args.levels.split(",")])


if __name__ == "__main__":
    main()
