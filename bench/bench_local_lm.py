"""Benchmark the embedded model path; prints medians and ratios measured in this one run.

1. decoding speed per token, free vs under a JSON-schema grammar ({reasoning, answer}: a reply long
   enough to time a rate on; a 1-token call separates prompt processing from decoding):
   llama-cpp-python's grammar sampler (create_chat_completion) and the batch engine's (grammar
   checked on the best candidates, engine/local_batch.py), drafts and kept logits off;
2. calls/s on few-shot sentiment prompts at temperature 0.3: create_chat_completion one call at a
   time on the settings used before the batch engine and on the engine's (flash attention, 32-token
   micro-batches), then LanguageModel.generate at concurrency 1/2/4/8 (the batch engine with
   drafts), each in a process of its own; replies compared with create_chat_completion's on the
   engine's settings; 2b. the same as `evaluate --runs 3` calls the model (each example three
   times in a row, one seed per run);
3. the shared-prefix saving (prompt tokens evaluated vs reused from a slot) and the drafts (tokens
   guessed, tokens confirmed, tokens sampled from kept logits, llama_decode calls per reply);
4. the cost of building the grammar and promptrl's per-call overhead;
5. `make train`'s phases (baseline runs, fit, final runs) and its result, run as a user runs it.

    make bench      # or: .venv/bin/python bench/bench_local_lm.py [--calls 10] [--examples 48] [--repeat 2] [--runs 3] [--no-train]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pydantic
from llama_cpp import Llama, LlamaGrammar

from promptrl.datasets import load
from promptrl.engine.transports import LocalTransport, local_model_path
from promptrl.language_model import LanguageModel
from promptrl.modules import Generator, Input
from rss import peak_rss_mb  # bench/rss.py, beside this file


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
    # Under the grammar a reasoning field first, then the label (~24 tokens; free text is cut at 40):
    # a 6-token label alone is too short to time a per-token rate on.
    reasoned = json.dumps(pydantic.create_model("Reasoned", reasoning=(str, ...),
                                                answer=(str, ...)).model_json_schema())
    length = 40
    llama = LocalTransport(lm)._llama()
    # drafts and kept logits off: the same prompt again would be drafted whole from the previous reply,
    # or sampled from the logits kept from it
    engine = BatchEngine(LocalTransport._load(llama.model_path, 256, None), slots=1, n_ctx=2048, max_draft=0,
                         max_kept=0)

    def sequential(max_tokens: int, grammar: bool) -> int:
        out = llama.create_chat_completion(
            messages=messages, temperature=0, max_tokens=max_tokens,
            grammar=LlamaGrammar.from_json_schema(reasoned, verbose=False) if grammar else None)
        return out["usage"]["completion_tokens"]

    def batched(max_tokens: int, grammar: bool) -> int:
        grammar = LlamaGrammar.from_json_schema(reasoned, verbose=False) if grammar else None
        return engine.submit(messages, grammar, 0.0, max_tokens, 0).result().completion_tokens

    print(f"1. decoding, median of {calls} calls, temperature 0, one sentiment prompt (SmolLM2-135M Q4_1); "
          "grammar: {reasoning, answer} JSON")
    per_token = {}
    for name, call in (("create_chat_completion", sequential), ("batch engine, 1 slot ", batched)):
        call(length, True)  # warm-up: model load and the prompt in the KV cache
        for grammar in (False, True):
            t_first, _ = median_time(lambda: call(1, grammar), calls)
            t_full, tokens = median_time(lambda: call(length, grammar), calls)
            per_token[name, grammar] = (t_full - t_first) / max(tokens - 1, 1)
            print(f"   {name} {'grammar' if grammar else 'free   '}: {tokens:2d} tokens in {t_full * 1000:6.1f} ms, "
                  f"decoding {per_token[name, grammar] * 1000:5.1f} ms/token ({1 / per_token[name, grammar]:5.1f} "
                  "tokens/s)")
        print(f"   {name} constrained speed / free speed: "
              f"{per_token[name, False] / per_token[name, True]:.2f}x")
    engine.close()
    t_build, _ = median_time(lambda: LlamaGrammar.from_json_schema(schema, verbose=False), calls)
    t_promptrl, _ = median_time(lambda: asyncio.run(lm.generate(messages, dataset.output_data_model)), calls)
    own = LocalTransport._engines[LocalTransport(lm)._engine_key()]  # the engine generate used
    t_direct, _ = median_time(lambda: own.submit(messages, LlamaGrammar.from_json_schema(schema, verbose=False),
                                                 lm.temperature, lm.max_tokens, None).result(), calls)
    print(f"4. building the grammar: {t_build * 1000:.2f} ms; LanguageModel.generate {t_promptrl * 1000:.1f} ms "
          f"against {t_direct * 1000:.1f} ms for the same call on the batch engine directly (medians): promptrl's "
          f"own cost is {(t_promptrl - t_direct) * 1000:.1f} ms per call")


OLD_PATH, SAME_SETTINGS = 0, -1  # the create_chat_completion workers


def worker(concurrency: int, examples: int, repeat: int, runs: int = 1) -> dict:
    """Calls/s at this concurrency (in a process of its own). OLD_PATH: create_chat_completion one call
    at a time on the settings LocalTransport used before the batch engine (flash attention off, 512-token
    micro-batches); SAME_SETTINGS: the same on the engine's settings, whose replies the engine's equal.
    runs > 1: `evaluate --runs` (each example asked `runs` times in a row, each run with its own seed)."""
    lm = LanguageModel(max_tokens=48, concurrency=max(concurrency, 1), temperature=0.3)
    dataset, generator = few_shot_generator(lm)
    pool = dataset.x_test + dataset.x_train[3:]
    calls = [(generator.render_messages(x.model_dump()), 1000 * run + i)
             for i, x in enumerate(pool[:examples + 2]) for run in range(runs)]
    warm_up, calls = calls[-2 * runs:], calls[:-2 * runs]
    schema = json.dumps(dataset.output_data_model.model_json_schema())

    llama = None  # loaded once, before the timed runs
    if concurrency == SAME_SETTINGS:
        llama = LocalTransport(lm)._llama()
    elif concurrency == OLD_PATH:
        llama = Llama(model_path=local_model_path(lm.model, None), n_ctx=2048, verbose=False)

    async def run(batch):
        if llama is not None:
            return [dataset.output_data_model.model_validate_json(llama.create_chat_completion(
                messages=m, grammar=LlamaGrammar.from_json_schema(schema, verbose=False), temperature=0.3,
                max_tokens=48, seed=seed)["choices"][0]["message"]["content"]) for m, seed in batch]
        return await asyncio.gather(*(lm.generate(m, dataset.output_data_model, seed=seed) for m, seed in batch))

    asyncio.run(run(warm_up))  # two other examples: the model loaded, the demonstrations in the cache
    engine = next(iter(LocalTransport._engines.values()), None)
    counters = ("prompt_tokens_evaluated", "prompt_tokens_reused", "tokens_drafted", "tokens_accepted",
                "tokens_from_kept", "decode_calls")
    before = {name: getattr(engine, name) for name in counters} if engine else {}
    times, outputs = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        outputs = asyncio.run(run(calls))
        times.append(time.perf_counter() - start)
    return {
        "concurrency": concurrency, "calls_per_s": len(calls) / statistics.median(times),
        "times": times, "outputs": [o.model_dump() for o in outputs],
        "peak_rss_mb": peak_rss_mb(),
        "calls": len(calls) * repeat,
        **({name: getattr(engine, name) - before[name] for name in counters} if engine else {}),
    }


def throughput(examples: int, repeat: int, levels: list[int], runs: int = 1) -> None:
    if runs == 1:
        print(f"2. calls/s, {examples} few-shot sentiment calls (3 demonstrations), temperature 0.3, median of "
              f"{repeat} runs, one process each")
    else:
        print(f"2b. evaluate --runs {runs}: {examples // runs} examples asked {runs} times each, example by example, "
              f"one seed per run, as `evaluate` and make train's baseline and final runs call the model")
    results = {}
    for concurrency in [OLD_PATH, SAME_SETTINGS, *levels]:
        out = subprocess.run([sys.executable, __file__, "--worker", str(concurrency), "--examples",
                              str(examples // runs), "--repeat", str(repeat), "--runs", str(runs)],
                             capture_output=True, text=True, check=True)
        results[concurrency] = json.loads(out.stdout.strip().splitlines()[-1])
    base, reference = results[OLD_PATH], results[SAME_SETTINGS]
    names = {OLD_PATH: "create_chat_completion, before (no flash)", SAME_SETTINGS: "create_chat_completion, engine settings"}
    for concurrency, r in results.items():
        same = sum(a == b for a, b in zip(r["outputs"], reference["outputs"]))
        path = names.get(concurrency, f"batch engine, concurrency {concurrency}")
        print(f"   {path:41s}: {r['calls_per_s']:5.2f} calls/s ({r['calls_per_s'] / base['calls_per_s']:.2f}x), "
              f"runs {', '.join(f'{t:.1f}' for t in r['times'])} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"replies identical to create_chat_completion's on the engine settings: {same}/{len(r['outputs'])}")
    for concurrency, r in results.items():
        if concurrency <= 0:
            continue
        total = r["prompt_tokens_evaluated"] + r["prompt_tokens_reused"]
        reused = r["prompt_tokens_reused"]
        print(f"{'3.' if runs == 1 else '3b.'} concurrency {concurrency}: prompt tokens {r['prompt_tokens_evaluated']} "
              f"evaluated, {reused} reused from a slot ({reused / max(total, 1):.0%}); "
              f"drafts {r['tokens_drafted']} tokens, {r['tokens_accepted']} confirmed "
              f"({r['tokens_accepted'] / max(r['tokens_drafted'], 1):.0%}); "
              f"{r['tokens_from_kept']} tokens sampled from kept logits; "
              f"{r['decode_calls'] / r['calls']:.2f} llama_decode calls per reply")


_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]\[promptrl\]\[INFO\] - (.*)$")


def train_phases() -> None:
    """`promptrl train +optimizer=random_few_shot` (make train) in a scratch directory; the phases
    from the timestamps of its log lines."""
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).with_name("promptrl")), "train", "--no-progress",
                              "+optimizer=random_few_shot"], cwd=scratch, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    stamps = [(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f"), m[2])
              for m in map(_STAMP.match, (out.stdout + out.stderr).splitlines()) if m]

    def last(prefix):
        return max(t for t, text in stamps if text.startswith(prefix))

    begin = stamps[0][0]
    marks = [("baseline runs", last("baseline run")), ("fit", last("reloaded best checkpoint")),
             ("final runs", last("final run"))]
    print("5. make train (promptrl train +optimizer=random_few_shot):")
    previous = begin
    for name, moment in marks:
        print(f"   {name:14s} {(moment - previous).total_seconds():6.1f} s")
        previous = moment
    print(f"   total wall     {wall:6.1f} s (start-up, plots and report included)")
    for line in out.stdout.splitlines():
        if line.startswith(("│ reward", "paired difference")):
            print("  ", line.strip(" │"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--no-train", action="store_true", help="skip timing make train's phases")
    parser.add_argument("--runs", type=int, default=3, help="runs per example in the evaluate measurement (2b)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.examples, args.repeat, args.runs)))
        return
    decoding_speed(args.calls)
    levels = [int(c) for c in args.levels.split(",")]
    throughput(args.examples, args.repeat, levels)
    throughput(args.examples, args.repeat, levels[:1], runs=args.runs)
    if not args.no_train:
        train_phases()


if __name__ == "__main__":
    main()
