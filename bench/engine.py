"""How fast promptrl drives an OpenAI-compatible endpoint, beside bare async HTTP clients, in one run.

    make bench-engine        (python bench/engine.py [--repeat 2] [--n 1000])

A stdlib mock server (bench/mock_openai.py, its own process) answers every request after exactly
50 ms. Each client evaluates N distinct questions at a given concurrency c in a fresh process:
efficiency = ideal wall (N x 0.05 / c) / measured wall; client CPU per example; peak RSS of the
client process. Also: `fit` efficiency (RandomFewShot, batch 32, c=32), `evaluate` with an LM
judge as the reward (c=32 each; efficiency against the program's calls alone), `evaluate` with
the reply cache on as every CLI run has it (c=32) and the time from `import promptrl` to the
first reply. Medians over --repeat rounds, each round measuring every
client at every level once (a VM that slows down mid-benchmark moves every client alike); the
table and the issue's goals, met or missed, are printed and written to bench/results/engine.md
(+ .json). DSPy is measured too when it is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/rss.py, also when this file is imported
from rss import peak_rss_mb  # noqa: E402

DELAY = 0.05


# ---- clients, each run in its own process -------------------------------------------------------------

class timed(dict):
    """`with timed() as spent:` -> spent["wall"], spent["cpu"] (seconds) of the block."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self["wall"], self["cpu"] = time.perf_counter() - self._wall, time.process_time() - self._cpu

def _questions(n: int) -> list[str]:
    return [f"question number {i}: what is {i} + {i}?" for i in range(n)]


def _promptrl_program(url: str, n: int, c: int, optimizer=None):
    """One Generator over N distinct questions, calling the mock at concurrency c."""
    import aiohttp  # noqa: F401 - imported before timing, as the bare clients do (first_call counts it)

    import promptrl
    import promptrl.trainer  # noqa: F401 - the evaluate loop's code, loaded before timing (first_call counts imports)

    class Question(promptrl.DataModel):
        question: str

    class Answer(promptrl.DataModel):
        answer: str

    lm = promptrl.LanguageModel("openai/mock", api_base=url, concurrency=c, num_retries=0, temperature=0.0,
                                max_tokens=32)
    x0 = promptrl.Input(Question)
    program = promptrl.Program(x0, promptrl.Generator(Answer, lm)(x0))
    program.compile(reward=promptrl.rewards.ExactMatch(), optimizer=optimizer)
    xs = [Question(question=q) for q in _questions(n)]
    return program, xs, [Answer(answer="x") for _ in xs]


def client_promptrl(url: str, n: int, c: int) -> dict:
    import asyncio

    program, xs, ys = _promptrl_program(url, n, c)
    with timed() as spent:
        logs = asyncio.run(program.evaluate(xs, ys, batch_size=c))
    assert logs["failures"] == 0, logs
    return spent


def client_promptrl_kept(url: str, n: int, c: int) -> dict:
    """evaluate with the reply cache on, as every `promptrl train` / `evaluate` run keeps its replies
    (reply_cache=true): the CLI's own call path."""
    import asyncio
    import tempfile

    program, xs, ys = _promptrl_program(url, n, c)
    with tempfile.TemporaryDirectory() as kept:
        program.language_models[0].use_reply_cache(kept)
        with timed() as spent:  # seeded as the CLI's runs are: each call carries a seed of its own
            logs = asyncio.run(program.evaluate(xs, ys, batch_size=c, seed=0))
            program.language_models[0].close_replies()  # every reply on disk, as a run ends
    assert logs["failures"] == 0, logs
    return spent


def client_promptrl_fit(url: str, n: int, c: int) -> dict:
    import asyncio

    import promptrl

    program, xs, ys = _promptrl_program(url, n, c, optimizer=promptrl.optimizers.RandomFewShot(k=2))
    with timed() as spent:
        asyncio.run(program.fit(xs, ys, epochs=1, batch_size=c))
    return spent


def client_promptrl_judged(url: str, n: int, c: int) -> dict:
    """evaluate with an LM judge as the reward (one judge call per example, on the same server):
    ideal wall N x 0.05 / c when the judge works while the program still predicts."""
    import asyncio

    import promptrl

    program, xs, ys = _promptrl_program(url, n, c)
    judge = promptrl.LanguageModel("openai/mock", api_base=url, concurrency=c, num_retries=0, max_tokens=64)
    program.compile(reward=promptrl.rewards.LMAsJudge("same answer", judge, skip_exact=False))
    with timed() as spent:
        logs = asyncio.run(program.evaluate(xs, ys, batch_size=c))
    assert logs["failures"] == 0 and logs["infra_failures"] == 0, logs
    return spent


_SCHEMA = {"additionalProperties": False, "properties": {"answer": {"title": "Answer", "type": "string"}},
           "required": ["answer"], "title": "Answer", "type": "object"}
_SYSTEM = ("Given the input fields `question`, produce the output fields `answer`.\n\nAnswer with a JSON object "
           "that follows this JSON schema:\n" + json.dumps(_SCHEMA, separators=(",", ":")))


def _body(question: str) -> bytes:
    """The very request promptrl sends for `question` (same bytes, checked when the benchmark starts): the
    server does the same work for every client, and the bare clients build it per call as promptrl does."""
    return json.dumps({"model": "mock", "temperature": 0.0, "max_tokens": 32, "response_format": {
        "type": "json_schema", "json_schema": {"name": "Answer", "schema": _SCHEMA, "strict": True}}, "messages": [
        {"role": "system", "content": _SYSTEM}, {"role": "user", "content": json.dumps({"question": question})}]}).encode()


def check_body() -> None:
    """Fails when promptrl's request for a question differs from the bare clients' `_body`."""
    program, xs, _ = _promptrl_program("http://127.0.0.1:9/v1", 1, 1)
    lm, generator = program.language_models[0], program.generators[0]
    from promptrl.language_model import schema_of

    _, fmt = lm.structured.response_format(generator.output_data_model.__name__, schema_of(generator.output_data_model))
    sent = lm._transport.encode_body(generator.render_messages(xs[0].model_dump()), fmt, None)
    assert sent == _body(xs[0].question), (sent, _body(xs[0].question))


def client_httpx(url: str, n: int, c: int) -> dict:
    import asyncio

    import httpx

    async def run():
        window = asyncio.Semaphore(c)
        limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            async def one(q):
                async with window:
                    r = await client.post(url + "/chat/completions", content=_body(q),
                                          headers={"Content-Type": "application/json"})
                    return json.loads(r.json()["choices"][0]["message"]["content"])

            await asyncio.gather(*(one(q) for q in _questions(n)))

    with timed() as spent:
        asyncio.run(run())
    return spent


def client_aiohttp(url: str, n: int, c: int) -> dict:
    import asyncio

    import aiohttp

    async def run():
        window = asyncio.Semaphore(c)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:
            async def one(q):
                async with window:
                    async with session.post(url + "/chat/completions", data=_body(q),
                                            headers={"Content-Type": "application/json"}) as r:
                        return json.loads(json.loads(await r.read())["choices"][0]["message"]["content"])

            await asyncio.gather(*(one(q) for q in _questions(n)))

    with timed() as spent:
        asyncio.run(run())
    return spent


def client_dspy(url: str, n: int, c: int) -> dict:
    import dspy

    lm = dspy.LM("openai/mock", api_base=url, api_key="none", cache=False, num_retries=0, temperature=0.0,
                 max_tokens=32)
    dspy.configure(lm=lm)
    predictor = dspy.Predict("question -> answer")
    examples = [dspy.Example(question=q, answer="x").with_inputs("question") for q in _questions(n)]
    evaluate = dspy.Evaluate(devset=examples, metric=lambda e, p, t=None: 0.0, num_threads=c,
                             display_progress=False)
    with timed() as spent:
        evaluate(predictor)
    return spent


def first_call(url: str, n: int, c: int) -> dict:
    """Seconds from `import promptrl` to the first validated reply."""
    with timed() as spent:
        import asyncio

        import promptrl

        class Answer(promptrl.DataModel):
            answer: str

        lm = promptrl.LanguageModel("openai/mock", api_base=url, num_retries=0, max_tokens=32)
        asyncio.run(lm.generate([{"role": "user", "content": '{"question": "hi"}'}], Answer))
    return spent


CLIENTS = {"promptrl": client_promptrl, "promptrl_fit": client_promptrl_fit, "promptrl_judged": client_promptrl_judged,
           "promptrl_kept": client_promptrl_kept, "httpx": client_httpx,
           "aiohttp": client_aiohttp, "dspy": client_dspy, "first_call": first_call}


def child(args) -> None:
    spent = CLIENTS[args.child](args.url, args.n, args.c)
    peak_mb = peak_rss_mb()
    print(json.dumps({"wall": spent["wall"], "cpu_ms_per_example": 1000 * spent["cpu"] / max(args.n, 1),
                      "peak_rss_mb": peak_mb}))


# ---- the parent: server, runs, table ---------------------------------------------------------------------

PYTHONS = {}  # client -> the interpreter that runs it (DSPy may live in a venv of its own: --dspy-python)


def measure(client: str, url: str, n: int, c: int) -> dict | None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    python = PYTHONS.get(client, sys.executable)
    done = subprocess.run([python, __file__, "--child", client, "--url", url, "--n", str(n), "--c", str(c)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        print(f"  {client} c={c}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["efficiency"] = n * DELAY / c / result["wall"]
    return result


def median_of(runs: list[dict | None], key: str) -> float | None:
    values = [r[key] for r in runs if r]
    return statistics.median(values) if values else None


# (what, at least or at most, the goal): the targets for the OpenAI-compatible path
EFFICIENCY_GOALS = {8: 0.90, 32: 0.85, 128: 0.5}
CPU_GOAL_MS, RSS_GOAL_MB, FIT_GOAL, FIRST_CALL_GOAL_S = 1.0, 120, 0.7, 0.5


def goal_lines(rows: dict, levels: list[int], fit_efficiency, first) -> list[str]:
    """One line per goal: the figure, the goal, met or missed (a missing figure is missed)."""
    def line(name: str, value, goal: float, at_least: bool, fmt: str = ".2f") -> str:
        met = value is not None and (value >= goal if at_least else value <= goal)
        shown = "-" if value is None else format(value, fmt)
        return f"- {name}: {shown} ({'>=' if at_least else '<='} {goal:g}) {'met' if met else 'MISSED'}"

    promptrl = {c: rows.get(("promptrl", c), {}) for c in levels}
    out = [line(f"efficiency c={c}", promptrl[c].get("efficiency"), goal, True)
           for c, goal in EFFICIENCY_GOALS.items() if c in levels]
    cpus = [v["cpu_ms_per_example"] for v in promptrl.values() if v.get("cpu_ms_per_example")]
    rss = [v["peak_rss_mb"] for v in promptrl.values() if v.get("peak_rss_mb")]
    out += [line("client CPU ms/example, worst level", max(cpus) if cpus else None, CPU_GOAL_MS, False),
            line("peak RSS MB", max(rss) if rss else None, RSS_GOAL_MB, False, ".0f"),
            line("fit efficiency (batch 32)", fit_efficiency, FIT_GOAL, True),
            line("import promptrl + first call, s", first, FIRST_CALL_GOAL_S, False)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="questions per evaluation (c >= 8)")
    parser.add_argument("--n-serial", type=int, default=200, help="questions at c=1 (N x 50 ms of waiting)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--clients", help="comma-separated subset, e.g. promptrl,dspy")
    parser.add_argument("--dspy-python", help="a Python with dspy installed (e.g. a venv of its own)")
    parser.add_argument("--out", default=str(HERE / "results" / "engine.md"),
                        help="where the table goes (+ .json beside it); e.g. /tmp/engine.md for a trial run")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--c", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        return child(args)
    check_body()

    load_before = os.getloadavg()  # other work on the machine moves every figure: say how busy it was
    server = subprocess.Popen([sys.executable, str(HERE / "mock_openai.py"), "--delay", str(DELAY)],
                              stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{int(server.stdout.readline().split()[-1])}/v1"
    try:
        import importlib.util

        if args.dspy_python:
            PYTHONS["dspy"] = args.dspy_python
        has_dspy = args.dspy_python or importlib.util.find_spec("dspy")
        clients = ["promptrl", "httpx", "aiohttp"] + (["dspy"] if has_dspy else [])
        if args.clients:
            clients = [c for c in clients if c in args.clients.split(",")]
        levels = [int(c) for c in args.concurrency.split(",")]
        # Interleaved: each round measures every client at every level once, so the VM getting slower
        # or faster during the benchmark moves every client alike instead of whichever ran then.
        runs: dict[tuple[str, int], list] = {}
        extras = [("promptrl_fit", args.n, 32), ("promptrl_judged", args.n, 32), ("promptrl_kept", args.n, 32),
                  ("first_call", 1, 1)]
        for round_ in range(args.repeat):
            for c in levels:
                for client in clients:
                    result = measure(client, url, args.n_serial if c == 1 else args.n, c)
                    runs.setdefault((client, c), []).append(result)
                    print(f"  round {round_ + 1} {client:<9} c={c:<4} " + (" ".join(
                        f"{k}={result[k]:.3f}" for k in ("efficiency", "cpu_ms_per_example", "peak_rss_mb"))
                        if result else "failed"), flush=True)
            for client, n, c in extras:
                runs.setdefault((client, c), []).append(measure(client, url, n, c))
        rows = {(client, c): {k: median_of(runs[(client, c)], k)
                              for k in ("efficiency", "cpu_ms_per_example", "peak_rss_mb")}
                for client in clients for c in levels}
        fit_efficiency = median_of(runs[("promptrl_fit", 32)], "efficiency")
        judged_efficiency = median_of(runs[("promptrl_judged", 32)], "efficiency")
        kept = {k: median_of(runs[("promptrl_kept", 32)], k) for k in ("efficiency", "cpu_ms_per_example")}
        first = median_of(runs[("first_call", 1)], "wall")
    finally:
        server.terminate()

    def cell(client, c, key, fmt):
        v = rows.get((client, c), {}).get(key)
        return "-" if v is None else format(v, fmt)

    lines = [f"# Engine benchmark: {DELAY * 1000:.0f} ms mock server, medians of {args.repeat} interleaved rounds",
             "", f"N={args.n} questions (c=1: {args.n_serial}); efficiency = ideal wall (N x {DELAY} s / c) / "
             "measured wall; CPU and RSS of the client process. Load average (1, 5, 15 min) at start "
             f"{' '.join(f'{x:.2f}' for x in load_before)}, at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
             "",
             "| client | " + " | ".join(f"eff. c={c}" for c in levels) + " | client CPU ms/example | peak RSS MB |",
             "|---" * (len(levels) + 3) + "|"]
    for client in clients:
        cpus = [rows[(client, c)]["cpu_ms_per_example"] for c in levels if rows[(client, c)]["cpu_ms_per_example"]]
        rss = [rows[(client, c)]["peak_rss_mb"] for c in levels if rows[(client, c)]["peak_rss_mb"]]
        spent = f" | {min(cpus):.2f}-{max(cpus):.2f} | {max(rss):.0f} |" if cpus else " | - | - |"
        lines.append(f"| {client} | " + " | ".join(cell(client, c, "efficiency", ".2f") for c in levels) + spent)
    lines += ["", f"fit (RandomFewShot, {args.n} examples, batch 32, c=32): efficiency "
              f"{'-' if fit_efficiency is None else f'{fit_efficiency:.2f}'}",
              f"evaluate with an LM judge as the reward ({args.n} examples, c=32 for the program and the judge; "
              f"ideal wall N x {DELAY} s / 32): efficiency {'-' if judged_efficiency is None else f'{judged_efficiency:.2f}'}",
              "evaluate with the reply cache on, as every CLI run keeps its replies (c=32): efficiency "
              + ("-" if kept["efficiency"] is None else
                 f"{kept['efficiency']:.2f}, client CPU {kept['cpu_ms_per_example']:.2f} ms/example"),
              f"import promptrl + first call: {'-' if first is None else f'{first:.2f}'} s", ""]
    for bare in ("httpx", "aiohttp"):
        for c in levels:
            p, h = rows.get(("promptrl", c), {}).get("efficiency"), rows.get((bare, c), {}).get("efficiency")
            if p and h:
                lines.append(f"- c={c}: promptrl / bare {bare} efficiency = {p / h:.2f}x")
    for c in levels:  # the CPU goal is per example at every level; c=1 is the VM's idle-wake cost most
        cpu = {client: rows[(client, c)]["cpu_ms_per_example"] for client in clients}
        if cpu.get("promptrl"):
            lines.append(f"- c={c}: client CPU ms/example " + ", ".join(
                f"{client} {v:.2f}" for client, v in cpu.items() if v) + "".join(
                f"; promptrl / bare {bare} = {cpu['promptrl'] / cpu[bare]:.2f}x"
                for bare in ("httpx", "aiohttp") if cpu.get(bare)))
    lines += ["", "Goals (issue #10), measured above:"] + goal_lines(rows, levels, fit_efficiency, first)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": {f"{k[0]} c={k[1]}": v for k, v in rows.items()}, "fit_efficiency": fit_efficiency,
         "judged_efficiency": judged_efficiency, "reply_cache_kept": kept,
         "first_call_s": first, "load_average": {"start": load_before, "end": os.getloadavg()}}, indent=2))


if __name__ == "__main__":
    main()
