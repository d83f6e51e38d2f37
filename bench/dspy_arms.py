"""One DSPy optimizer on one BBH task, beside promptrl's arms in bench/quality.py.

    <dspy venv>/bin/python bench/dspy_arms.py --splits splits.json --api-base http://127.0.0.1:PORT/v1 \
        --arm mipro_v2 [--budget 300] [--out result.json]

Run under DSPy's own Python (`make install-dspy` makes .venv-dspy); it does not import promptrl.
bench/quality.py writes the splits file (train/val/test exactly as promptrl's runs draw them, the
answer's JSON schema, the sampling settings and the run seeds), so both sides see the same data.

Same model, server and constraint as promptrl: the llama.cpp server's OpenAI-compatible endpoint,
and every program call asks for promptrl's answer schema in llama.cpp's form
(`{"type": "json_object", "schema": ...}`); DSPy's own calls with other outputs (MIPROv2's proposer)
get the schema of their own output fields. The metric is promptrl's exact match (strings trimmed
and case-sensitive, numbers as numbers); GEPA also gets its one-line feedback. The optimizers'
LM (MIPROv2's prompt model, GEPA's reflection LM) is the same model at promptrl's teacher settings.

Arms: zero_shot (no optimizer), labeled_few_shot (LabeledFewShot k=3), bootstrap_few_shot
(BootstrapFewShot, 3 bootstrapped + 3 labeled demos), mipro_v2 (MIPROv2 auto="light", 3 + 3 demos),
gepa (GEPA, max_metric_calls = --budget). Prints one JSON line: each test run's accuracy and
per-example rewards, LM calls and wall time of training and of the test runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time

import dspy
import pydantic

ARMS = ("zero_shot", "labeled_few_shot", "bootstrap_few_shot", "mipro_v2", "gepa")


# ---- the metric: promptrl's ExactMatch on the answer field ---------------------------------------------

def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def values_match(expected, predicted) -> bool:
    """Numbers as numbers ("18" == "18.0"), strings trimmed and case-sensitive (promptrl.rewards.values_match)."""
    a, b = _number(expected), _number(predicted)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(predicted, str):
        return expected.strip() == predicted.strip()
    return expected == predicted


def _predicted(prediction):
    try:
        return prediction.get("answer") if hasattr(prediction, "get") else getattr(prediction, "answer", None)
    except Exception:  # an empty Prediction after a failed call
        return None


def exact_match(example, prediction, trace=None) -> float:
    predicted = _predicted(prediction)
    return float(predicted is not None and values_match(example.answer, predicted))


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    score = exact_match(gold, pred)
    predicted = _predicted(pred)
    feedback = "correct" if score else f"answer: expected {json.dumps(gold.answer)}, got " + (
        json.dumps(predicted) if predicted is not None else "nothing")
    return dspy.Prediction(score=score, feedback=feedback)


# ---- calls: the schema constraint and a counter ---------------------------------------------------------

def derive_seed(seed: int, *parts) -> int:
    """A child seed, as promptrl.seeding.derive_seed derives them."""
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def evaluate(program, test, lm, run_seed: int) -> tuple[list[float], int]:
    """Each test example once, at its own sampling seed (derived from the run's seed and the example's
    index, as promptrl seeds each call: one seed for a whole run would draw the same random numbers for
    every example). A call that fails or a reply that does not parse scores 0 and counts as a failure."""
    scores, failures = [], 0
    for index, example in enumerate(test):
        with dspy.context(lm=lm.copy(seed=derive_seed(run_seed, index))):
            try:
                prediction = program(**example.inputs())
            except Exception:
                prediction = None
        if prediction is None or _predicted(prediction) is None:
            failures += 1
            scores.append(0.0)
        else:
            scores.append(exact_match(example, prediction))
    return scores, failures


class SchemaJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter asking llama.cpp's server for a JSON-schema constrained reply (`json_object` + `schema`):
    the server turns OpenAI's `json_schema` form down. The answer signature gets promptrl's schema itself."""

    def __init__(self, answer_schema: dict):
        super().__init__()
        self.answer_schema = answer_schema

    def _prepare_response_format(self, lm, lm_kwargs, signature):
        fields = signature.output_fields
        if set(fields) == {"answer"}:
            schema = self.answer_schema
        else:
            model = pydantic.create_model("Outputs", __config__=pydantic.ConfigDict(extra="forbid"),
                                          **{name: (field.annotation, ...) for name, field in fields.items()})
            schema = model.model_json_schema()
        lm_kwargs["response_format"] = {"type": "json_object", "schema": schema}


class CallCounter(dspy.utils.callback.BaseCallback):
    def __init__(self):
        self.calls = 0

    def on_lm_start(self, call_id, instance, inputs):
        self.calls += 1


class BBH(dspy.Signature):  # no docstring: DSPy's default instructions, as a DSPy user starts
    question: str = dspy.InputField(desc="The task's question")
    answer: str = dspy.OutputField()


# ---- the arm ------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, help="JSON written by bench/quality.py")
    parser.add_argument("--api-base", required=True, help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--arm", required=True, choices=ARMS)
    parser.add_argument("--budget", type=int, default=300, help="GEPA's max_metric_calls (the others have no call cap)")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()

    splits = json.loads(open(args.splits, encoding="utf-8").read())
    lm_cfg, teacher_cfg = splits["language_model"], splits["teacher"]

    def make_lm(settings: dict) -> dspy.LM:
        return dspy.LM(f"openai/{splits['model_name']}", api_base=args.api_base, api_key="none", cache=False,
                       num_retries=3, temperature=settings["temperature"], max_tokens=settings["max_tokens"])

    lm, teacher = make_lm(lm_cfg), make_lm(teacher_cfg)
    counter = CallCounter()
    answer_schema = splits["answer_schema"]
    # no optimizer may stop on the small model's failed parses: a failed call scores 0, as in promptrl
    dspy.configure(lm=lm, adapter=SchemaJSONAdapter(answer_schema), callbacks=[counter], max_errors=10**6)
    signature = BBH.with_updated_fields("answer", desc=answer_schema["properties"]["answer"].get("description", ""))

    def examples(rows):
        return [dspy.Example(question=r["question"], answer=r["answer"]).with_inputs("question") for r in rows]

    train, val, test = examples(splits["train"]), examples(splits["val"]), examples(splits["test"])
    program = dspy.Predict(signature)
    seed = splits["seed"]

    started = time.perf_counter()
    if args.arm == "zero_shot":
        compiled = program
    elif args.arm == "labeled_few_shot":
        compiled = dspy.LabeledFewShot(k=3).compile(program, trainset=train)
    elif args.arm == "bootstrap_few_shot":
        compiled = dspy.BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=3,
                                         max_labeled_demos=3).compile(program, trainset=train)
    elif args.arm == "mipro_v2":
        optimizer = dspy.MIPROv2(metric=exact_match, prompt_model=teacher, task_model=lm, auto="light",
                                 max_bootstrapped_demos=3, max_labeled_demos=3, num_threads=1, seed=seed,
                                 verbose=False)
        compiled = optimizer.compile(program, trainset=train, valset=val)
    else:  # gepa
        optimizer = dspy.GEPA(metric=gepa_metric, max_metric_calls=args.budget, reflection_lm=teacher,
                              num_threads=1, seed=seed, track_stats=False)
        compiled = optimizer.compile(program, trainset=train, valset=val)
    train_wall, train_calls = time.perf_counter() - started, counter.calls

    accuracy, rewards, failures = [], [], []
    started = time.perf_counter()
    for run_seed in splits["run_seeds"]:  # each test run with its own seeds, like promptrl's runs
        scores, failed = evaluate(compiled, test, lm, run_seed)
        rewards.append(scores)
        accuracy.append(sum(scores) / len(scores))
        failures.append(failed)
    test_wall = time.perf_counter() - started

    predictor = compiled.predictors()[0]
    out = {"arm": args.arm, "dspy_version": dspy.__version__, "accuracy": accuracy, "rewards": rewards,
           "failures": failures, "train_calls": train_calls, "test_calls": counter.calls - train_calls,
           "train_wall_s": round(train_wall, 2), "test_wall_s": round(test_wall, 2),
           "demos": len(predictor.demos), "instructions": predictor.signature.instructions}
    line = json.dumps(out)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    sys.exit(main())
