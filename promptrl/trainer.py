"""The training loop behind `program.fit` / `program.evaluate` / `program.predict`.

`predict`/`evaluate` (and validation) stream examples through a window sized from the language
models' concurrency: a finished example makes room for the next, with no per-batch barrier, and
is scored as soon as it is predicted (an LM judge works while the program's calls go on). In `fit`, `batch_size` is the optimizer's step: a training batch runs concurrently, then the
optimizer sees it. Results stay in example order, so a reward is always paired with its own
prediction by index.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from promptrl.callbacks import Callback, CallbackList
from promptrl.errors import PredictionError, UserError
from promptrl.modules import RunContext
from promptrl.rewards import Scored
from promptrl.seeding import derive_seed
from promptrl.engine.scheduler import run_all


@dataclass
class Prediction:
    """One example's run: its prediction (None if it failed), and the modules' trace."""

    index: int
    x: Any
    y_true: Any = None
    y_pred: Any = None
    error: str | None = None
    # "infrastructure": the provider gave no answer (left out of the scores); "invalid": an answer
    # that is not one (scored 0); None: a prediction.
    failure: str | None = None
    trace: list[dict] = field(default_factory=list)
    reward: float | None = None
    feedback: str | None = None  # the reward's explanation of its score (shown to optimizer LMs)
    scores: dict[str, float] = field(default_factory=dict)


async def _run_one(program, index: int, x, seed: int | None, trace: bool) -> Prediction:
    ctx = RunContext(seed=seed, index=index, trace=[] if trace else None)
    try:
        y_pred = await program.run(x, ctx)
        return Prediction(index=index, x=x, y_pred=y_pred, trace=ctx.trace or [])
    except PredictionError as error:
        return Prediction(index=index, x=x, error=str(error), trace=ctx.trace or [],
                          failure="infrastructure" if error.infrastructure else "invalid")


async def score_one(program, prediction: Prediction, y_true) -> None:
    """Attach the target, the reward (and its feedback) and each metric's score to the prediction."""
    prediction.y_true = y_true
    if program.reward:
        scored = await _safe_score(program.reward, prediction)
        if scored is None:  # no score is not a zero: the example is left out, like a call with no answer
            prediction.reward, prediction.feedback = 0.0, "could not be scored"
            if prediction.failure is None:
                prediction.failure = "infrastructure"
        else:
            prediction.reward, prediction.feedback = scored
    for metric in program.metrics:
        scored = await _safe_score(metric, prediction)
        prediction.scores[metric.name] = None if scored is None else scored.score


async def _safe_score(scorer, prediction: Prediction) -> Scored | None:
    """The scorer's Scored, or None when it could not score (a PredictionError: an embedding or
    judge call that failed or gave no valid verdict), with the error recorded - never a score it did
    not give. The example's input goes along as `x` to scorers that ask for it (`uses_input`, e.g.
    an LM judge), so rewards written without `x` keep working."""
    try:
        if getattr(scorer, "uses_input", False):
            return await scorer.scored(prediction.y_true, prediction.y_pred, x=prediction.x)
        return await scorer.scored(prediction.y_true, prediction.y_pred)
    except PredictionError as error:
        prediction.error = prediction.error or f"{getattr(scorer, 'name', 'scorer')}: {error}"
        return None


def answered(predictions: list[Prediction]) -> list[Prediction]:
    """The predictions the provider answered: infrastructure failures are not answers."""
    return [p for p in predictions if p.failure != "infrastructure"]


def summarize(predictions: list[Prediction], program) -> dict:
    """Mean of the reward and each metric over the answered examples (a metric with `aggregate`, e.g.
    corpus BLEU, computes its value from them all); the count of failed predictions (`failures`,
    scored 0) and of calls that got no answer (`infra_failures`, left out)."""
    scored = answered(predictions)
    logs: dict[str, float] = {}
    if program.reward:
        logs["reward"] = statistics.fmean(p.reward for p in scored) if scored else 0.0
    for metric in program.metrics:
        kept = [p for p in scored if p.scores.get(metric.name) is not None]  # a metric that could not score: left out
        if not kept:
            logs[metric.name] = 0.0
        elif hasattr(metric, "aggregate"):  # a corpus-level metric (corpus BLEU, distinct-n) is not a mean
            logs[metric.name] = metric.aggregate([(p.y_true, p.y_pred) for p in kept])
        else:
            logs[metric.name] = statistics.fmean(p.scores[metric.name] for p in kept)
    logs["failures"] = sum(p.failure == "invalid" for p in predictions)
    logs["infra_failures"] = len(predictions) - len(scored)
    return logs


def _check_data(x, y, what: str) -> None:
    if y is not None and len(x) != len(y):
        raise UserError(f"{what}: x has {len(x)} examples but y has {len(y)}; give one target per example")


def stream_window(program, scoring: bool = False) -> int:
    """Examples in flight: the sum of the concurrency of every LM they call (the program's, and the
    scorers' when they score as they go). An example holds one call at a time along a chain, so this
    keeps every model's window full - also when all examples are at the same model - and no example
    waits for a slot that another model's window would have given it."""
    models = list(program.language_models)
    if scoring:
        models += [getattr(s, "language_model", None) for s in (program.reward, *program.metrics)]
    distinct = {id(m): m for m in models if m is not None}
    return sum(m.concurrency for m in distinct.values()) or 4


async def predict(program, x, batch_size: int = 8, seed: int | None = None, callbacks=None) -> list[Prediction]:
    """Every example's Prediction, in the order of `x`. `batch_size` is kept for the Keras
    signature; calls stream through the language models' concurrency window instead."""
    return await _stream(program, [(i, example, seed) for i, example in enumerate(x)], callbacks)


async def run_scored(program, xs, ys, indices, seed: int | None, trace: bool = False) -> list[Prediction]:
    """Run and score examples (a training batch, an optimizer's candidate), in the order of `xs`."""
    return await _stream(program, [(i, x, seed) for i, x in zip(indices, xs)], None, ys, trace)


async def _stream(program, items: list[tuple[int, Any, int | None]], callbacks, ys=None,
                  trace: bool = False) -> list[Prediction]:
    """The Prediction of each (index, x, seed), in the order of `items`, streamed through the window;
    with `ys` (one target per item), each is scored as soon as it is predicted: an LM judge's calls
    overlap the program's instead of waiting for the slowest prediction."""
    if ys is not None and len(ys) != len(items):
        raise ValueError("predictions and targets differ in length")
    callbacks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks, program)
    callbacks.on_test_begin(len(items))
    results: list[Prediction | None] = [None] * len(items)
    pending = iter(range(len(items)))
    done = 0

    async def worker():
        nonlocal done
        for k in pending:  # shared by the workers: each takes the next example as it frees up
            index, example, seed = items[k]
            results[k] = prediction = await _run_one(program, index, example, seed, trace)
            if ys is not None:
                await score_one(program, prediction, ys[k])
            done += 1
            callbacks.on_test_batch_end(done)

    await run_all(worker() for _ in range(min(stream_window(program, ys is not None), len(items))))
    callbacks.on_test_end()
    return results


async def evaluate_runs(program, x, y, seeds: list[int | None], callbacks=None) -> list[tuple[dict, list[Prediction]]]:
    """One evaluation per seed, as `evaluate(..., seed, return_predictions=True)` gives each.

    The runs' calls go example by example (example 0 of every run, then example 1, ...): the calls
    of one example share their whole prompt, so a prompt cache (the embedded model's slots, a
    server's prefix cache) evaluates it once for all runs instead of once per run."""
    if program.reward is None and not program.metrics:
        raise UserError("evaluate needs a reward or metrics: call program.compile(reward=..., metrics=[...]) first")
    _check_data(x, y, "evaluate")
    items = [(i, example, seed) for i, example in enumerate(x) for seed in seeds]
    predictions = await _stream(program, items, callbacks, [y[i] for i, _, _ in items])
    runs = [predictions[r::len(seeds)] for r in range(len(seeds))]
    return [(summarize(run, program), run) for run in runs]


async def evaluate(program, x, y, batch_size: int = 8, seed: int | None = None, callbacks=None,
                   return_predictions: bool = False):
    """Mean reward and metrics over (x, y). Needs `program.compile(reward=...)` first."""
    [(logs, predictions)] = await evaluate_runs(program, x, y, [seed], callbacks)
    return (logs, predictions) if return_predictions else logs


class History(Callback):
    """Per-epoch logs: `history.history["val_reward"]` is the list over epochs (as in Keras)."""

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []
        self.history: dict[str, list] = {}

    def on_epoch_end(self, epoch, logs=None):
        if epoch < 0:  # the untrained program's validation (validate_initial): not a training epoch
            return
        self.epochs.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def records(self) -> list[dict]:
        return [{"epoch": e, **{k: v[i] for k, v in self.history.items()}} for i, e in enumerate(self.epochs)]


def check_monitors(program, callbacks, has_validation: bool) -> None:
    """Fail before any LM call, not at the end of the first epoch, on a monitor that will not exist."""
    keys = ["reward", "failures", "infra_failures", *(m.name for m in program.metrics)]
    keys += [f"val_{k}" for k in keys] if has_validation else []
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if monitor is not None and monitor not in keys:
            raise UserError(f"{type(callback).__name__}: monitor '{monitor}' will not be in the logs "
                            f"(they hold {', '.join(keys)}); pick one of those"
                            + ("" if has_validation else " or pass validation_data"))


async def fit(program, x, y, validation_data=None, epochs: int = 1, batch_size: int = 8, callbacks=None,
              seed: int | None = 0, validate_initial: bool = False) -> History:
    """Train; with `validate_initial`, the untrained program is validated first and reported to the
    callbacks as epoch -1, so a checkpoint on val_reward never keeps a program worse than it."""
    if program.reward is None:
        raise UserError("fit needs a reward: call program.compile(reward=..., optimizer=...) first")
    if batch_size < 1 or epochs < 0:
        raise UserError(f"fit: batch_size must be >= 1 and epochs >= 0 (got {batch_size}, {epochs})")
    _check_data(x, y, "fit")
    if validation_data is not None:
        x_val, y_val = validation_data
        _check_data(x_val, y_val, "fit validation_data")
    check_monitors(program, callbacks or [], validation_data is not None)
    history = History()
    callbacks = CallbackList([*(callbacks or []), history], program)
    optimizer = program.optimizer
    rng = random.Random(seed)
    program.stop_training = False
    callbacks.on_train_begin({"epochs": epochs, "steps": -(-len(x) // batch_size)})
    # One validation seed for every epoch: epochs differ by their prompts, not their sampling.
    val_seed = derive_seed(seed, "val")
    if optimizer is not None:
        optimizer.validation_seed = val_seed
        await optimizer.on_train_begin(program, (x, y), validation_data)
    if validate_initial and validation_data is not None:
        val_logs = await evaluate(program, x_val, y_val, batch_size, val_seed, callbacks)
        callbacks.on_epoch_end(-1, {f"val_{k}": v for k, v in val_logs.items()})
    logs: dict = {}
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        order = list(range(len(x)))
        rng.shuffle(order)
        epoch_predictions: list[Prediction] = []
        for step, start in enumerate(range(0, len(order), batch_size)):
            indices = order[start:start + batch_size]
            batch = await run_scored(program, [x[i] for i in indices], [y[i] for i in indices], indices,
                                     derive_seed(seed, "fit", epoch), True)
            epoch_predictions += batch
            if optimizer is not None:
                await optimizer.on_batch_end(program, batch)
            callbacks.on_batch_end(step, summarize(batch, program))
        logs = summarize(epoch_predictions, program)
        if validation_data is not None:
            val_logs = await evaluate(program, x_val, y_val, batch_size, val_seed, callbacks)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        if optimizer is not None:
            await optimizer.on_epoch_end(program, epoch, logs)
        callbacks.on_epoch_end(epoch, logs)
        if program.stop_training:
            break
    callbacks.on_train_end(logs)
    return history
