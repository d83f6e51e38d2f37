"""The dry run: what a train run will call, before paying for anything.

`promptrl train ... --dry-run` builds and checks the run exactly as `train` does (same code), makes
no LM call, and writes `plan.json`: the calls of each phase (baseline, fit, validation, optimizer
teacher and scoring, final) and of an LM judge, with tokens estimated from the rendered prompts
(about 4 characters a token) and the cost from the provider's price table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from promptrl.engine.prices import price_per_token
from promptrl.io import atomic_write_json


def _prompt_tokens(program, xs) -> float:
    """Mean prompt tokens of one program call on these inputs (the untrained prompts, ~4 chars a token)."""
    first = program.generators[0]
    sizes = [len(json.dumps(first.render_messages(x.model_dump()))) / 4 for x in xs]
    return sum(sizes) / len(sizes) if sizes else 0.0


def _completion_tokens(ys) -> float:
    sizes = [len(y.model_dump_json()) / 4 + 4 for y in ys]
    return sum(sizes) / len(sizes) if sizes else 0.0


JUDGE_COMPLETION = 100  # tokens of a verdict: a few sentences of critique and the score


def _judge_calls(program, calls: dict, generators: int) -> list[tuple]:
    """[(judge, calls)]: an LM judge as reward judges every scored prediction (the optimizer's
    candidates too), as a metric every prediction but the optimizer's (metrics are off there)."""
    from promptrl.rewards import LMAsJudge

    scored = sum(n for phase, n in calls.items() if phase != "optimizer_teacher") // max(generators, 1)
    candidates = calls.get("optimizer_scoring", 0) // max(generators, 1)
    judges = [(program.reward, scored)] if isinstance(program.reward, LMAsJudge) else []
    judges += [(m, scored - candidates) for m in program.metrics if isinstance(m, LMAsJudge)]
    return [(judge, n) for judge, n in judges if judge.language_model is not None]


def _judge_prompt_tokens(judge, split) -> float:
    """Mean prompt tokens of a judge call on this split (the target standing in for the prediction)."""
    from promptrl.rewards import apply_mask

    targets = [apply_mask(y, judge.in_mask, judge.out_mask) for y in split.y]
    sizes = [len(json.dumps(judge.messages(y, y, x))) / 4 for x, y in zip(split.x, targets)]
    return sum(sizes) / len(sizes) if sizes else 0.0


def plan_train(cfg, setup, out: Path) -> dict:
    """The plan of a train run built by `recipes.build_train`; written to `out/plan.json`."""
    generators = len(setup.program.generators)
    runs, epochs = cfg.nb_runs, cfg.epochs if setup.training else 0
    calls = {"baseline": runs * len(setup.test) * generators}
    upper_bound = False
    if setup.training:
        batches = epochs * math.ceil(len(setup.train) / cfg.batch_size)
        optimizer = setup.optimizer.planned_calls(batches, generators, len(setup.val), cfg.batch_size, epochs)
        # Early stopping may end training sooner: then every count of training is at most.
        upper_bound = optimizer["upper_bound"] or any(type(c).__name__ == "EarlyStopping" for c in setup.callbacks)
        calls.update({
            "fit": epochs * len(setup.train) * generators,
            "validation": (epochs + 1) * len(setup.val) * generators,  # the untrained program is validated too
            "optimizer_teacher": optimizer["teacher"],
            "optimizer_scoring": optimizer["scoring"],
            "final": runs * len(setup.test) * generators,
        })
    judges = _judge_calls(setup.program, calls, generators)
    if judges:  # at most one per scored prediction: exact matches and repeated judgements are free
        calls["judge"] = sum(n for _, n in judges)
    calls["total"] = sum(calls.values())
    program_calls = calls["total"] - calls.get("optimizer_teacher", 0) - calls.get("judge", 0)
    prompt = _prompt_tokens(setup.program, setup.test.x)
    completion = _completion_tokens(setup.test.y)
    tokens = {"program": round(program_calls * (prompt + completion))}
    cost = program_calls * (prompt * price_per_token(setup.lm.model)[0] + completion * price_per_token(setup.lm.model)[1])
    if judges:
        tokens["judge"] = 0
        for judge, n in judges:
            judge_prompt = _judge_prompt_tokens(judge, setup.test)
            judge_completion = min(judge.language_model.max_tokens or JUDGE_COMPLETION, JUDGE_COMPLETION)
            tokens["judge"] += round(n * (judge_prompt + judge_completion))
            input_price, output_price = price_per_token(judge.language_model.model)
            cost += n * (judge_prompt * input_price + judge_completion * output_price)
    if calls.get("optimizer_teacher"):
        teacher = setup.teacher
        teacher_prompt, teacher_completion = 4 * prompt, teacher.max_tokens  # a meta-prompt; at most max_tokens
        tokens["optimizer"] = round(calls["optimizer_teacher"] * (teacher_prompt + teacher_completion))
        input_price, output_price = price_per_token(teacher.model)
        cost += calls["optimizer_teacher"] * (teacher_prompt * input_price + teacher_completion * output_price)
    tokens["total"] = sum(tokens.values())
    plan = {
        "calls": calls,
        "upper_bound": upper_bound,
        "tokens": tokens,
        "cost": round(cost, 6),
        "models": {"program": setup.lm.model, "optimizer": setup.teacher.model if setup.teacher else None,
                   **({"judge": judges[0][0].language_model.model} if judges else {})},
        "sizes": {"train": len(setup.train), "val": len(setup.val), "test": len(setup.test), "nb_runs": runs,
                  "epochs": epochs, "batch_size": cfg.batch_size, "generators": generators},
        "note": "tokens estimated from the untrained prompts (about 4 characters a token); few-shot examples "
                "added by training make later prompts longer" + ("; optimizer calls are an upper bound"
                                                                  if upper_bound else "")
                + ("; judge calls are at most one per scored prediction (exact matches and repeated "
                   "judgements cost none)" if judges else ""),
    }
    atomic_write_json(Path(out) / "plan.json", plan)
    return plan
