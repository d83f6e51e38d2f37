"""Metrics: watched, not optimized. Any reward is a metric; F1Score and Accuracy are built in, and the
text-generation metrics Rouge, Bleu and Distinct (distinct-n) for summaries and rewrites."""

from __future__ import annotations

import importlib
import re
import statistics
import sys
from collections import Counter

from promptrl.errors import UserError
from promptrl.rewards import ExactMatch, Reward, apply_mask

__all__ = ["Metric", "F1Score", "Accuracy", "RewardMetric", "CorpusMetric", "Rouge", "Bleu", "Distinct"]

Metric = Reward  # a metric scores one prediction exactly like a reward; fit/evaluate average it (CorpusMetric: aggregate)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 18.0 is the token "18", not "18" and "0"
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _words(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?|\w+", text.lower())  # a decimal number is one token


def _tokens(data: dict) -> list[str]:
    return _words(" ".join(_text(v) for v in data.values()))


class F1Score(Reward):
    """Token-level F1 between target and prediction (lower-cased word tokens), as in SQuAD."""

    default_name = "f1_score"

    async def score(self, y_true: dict, y_pred: dict) -> float:
        truth, pred = _tokens(y_true), _tokens(y_pred)
        if not truth and not pred:
            return 1.0
        common = sum((Counter(truth) & Counter(pred)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred), common / len(truth)
        return 2 * precision * recall / (precision + recall)


class Accuracy(ExactMatch):
    """Share of predictions whose kept fields all match the target."""

    default_name = "accuracy"


class RewardMetric(Reward):
    """Watch any reward as a metric under its own name."""

    def __init__(self, reward: Reward, name: str | None = None):
        super().__init__(reward.in_mask, reward.out_mask, name or reward.name)
        self.reward = reward
        self.uses_input = getattr(reward, "uses_input", False)  # an LM judge reads the example's input

    async def scored(self, y_true, y_pred, **kwargs):
        return await self.reward.scored(y_true, y_pred, **kwargs)


# ---- text-generation metrics (the `text` extra: rouge-score, sacrebleu) ----------------------------------------


def _require(module: str, package: str, metric: str):
    """Import a text-metric package lazily (rouge-score pulls in nltk: ~2 s), or one line naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"metric {metric} needs the package '{package}', which is not installed: run "
                        "`make install-text` or `pip install 'promptrl[text]'`") from None


def _field_texts(y_true: dict, y_pred: dict) -> list[tuple[str, str, str]]:
    """(field, target text, prediction text) for each kept field of the target - the fields to score
    (a prediction's extra fields, e.g. a chain of thought's reasoning, are not); a missing one is ''."""
    return [(key, _text(value), _text(y_pred.get(key))) for key, value in y_true.items()]


def _release_stderr_from_absl() -> None:
    """rouge-score logs through absl, whose handler keeps the sys.stderr of its import and closes it when
    logging is reconfigured (Hydra does, each run): under pytest, Jupyter or a CliRunner that stream is
    theirs, and their output breaks (abseil-py#118). The real stderr, absl never closes."""
    import absl.logging

    if sys.__stderr__ is not None:
        absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


class Rouge(Reward):
    """ROUGE F-measure from `rouge_score.rouge_scorer` (`rouge_type` rouge1..rouge9, rougeL, or rougeLsum,
    which splits summaries on newlines), with its tokenizer (lower-cased ASCII letters and digits; other
    scripts are dropped) and optional Porter stemming (`use_stemmer`, needs no nltk data). Over a set of
    examples it is the mean of the per-example F-measures (the usual report). When the mask
    keeps several fields of the target, each is scored on its own and the scores averaged."""

    def __init__(self, rouge_type: str = "rougeL", use_stemmer: bool = False, in_mask=None, out_mask=None,
                 name: str | None = None):
        if not isinstance(rouge_type, str) or not re.fullmatch(r"rouge[1-9]|rougeL|rougeLsum", rouge_type):
            raise UserError(f"Rouge: rouge_type={rouge_type!r} is not valid; use rouge1 .. rouge9, rougeL or rougeLsum")
        # rouge1 -> rouge_1, rougeL -> rouge_l: the names in conf/metrics/text.yaml
        super().__init__(in_mask, out_mask, name or re.sub(r"^rouge(\w)", r"rouge_\1", rouge_type).lower())
        self.rouge_type, self.use_stemmer = rouge_type, bool(use_stemmer)
        rouge_scorer = _require("rouge_score.rouge_scorer", "rouge-score", self.name)
        _release_stderr_from_absl()
        from rouge_score.tokenizers import DefaultTokenizer

        # the tokenizer RougeScorer makes itself, given so it does not log "Using default tokenizer." each time
        self._scorer = rouge_scorer.RougeScorer([rouge_type], tokenizer=DefaultTokenizer(self.use_stemmer))

    async def score(self, y_true: dict, y_pred: dict) -> float:
        fields = _field_texts(y_true, y_pred)
        if not fields:
            return 0.0
        return statistics.fmean(self._scorer.score(true, pred)[self.rouge_type].fmeasure for _, true, pred in fields)


class CorpusMetric(Reward):
    """A metric defined over a set of examples, not as a mean of per-example scores: fit/evaluate call
    `aggregate` on the examples' (target, prediction) pairs (a failed prediction is an empty text).
    `corpus(pairs)` computes it for one field's (target text, prediction text) pairs; several kept fields
    are each computed on their own and averaged. `score` (one example: its feedback, or the reward when
    used as one) is `corpus` on that example alone unless a subclass defines it otherwise."""

    def corpus(self, pairs: list[tuple[str, str]]) -> float:
        raise NotImplementedError

    def aggregate(self, pairs: list[tuple]) -> float:
        by_field: dict[str, list[tuple[str, str]]] = {}
        for y_true, y_pred in pairs:
            masked = apply_mask(y_true, self.in_mask, self.out_mask), apply_mask(y_pred, self.in_mask, self.out_mask)
            for key, true, pred in _field_texts(*masked):
                by_field.setdefault(key, []).append((true, pred))
        return statistics.fmean(self.corpus(field) for field in by_field.values()) if by_field else 0.0

    async def score(self, y_true: dict, y_pred: dict) -> float:
        fields = _field_texts(y_true, y_pred)
        return statistics.fmean(self.corpus([(true, pred)]) for _, true, pred in fields) if fields else 0.0


class Bleu(CorpusMetric):
    """BLEU from sacrebleu on [0, 1] (sacrebleu's 0-100 score / 100). Over a set of examples it is corpus
    BLEU (n-gram matches and lengths summed over the examples, one brevity penalty), as papers report it -
    not the mean of sentence BLEUs. One example alone (feedback, or as a reward) gets sentence BLEU with
    effective order, as `sacrebleu.sentence_bleu`. One reference per example: the target's field."""

    default_name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False, smooth_method: str = "exp", in_mask=None,
                 out_mask=None, name: str | None = None):
        super().__init__(in_mask, out_mask, name)
        sacrebleu = _require("sacrebleu", "sacrebleu", self.name)
        settings = {"tokenize": tokenize, "lowercase": bool(lowercase), "smooth_method": smooth_method}
        try:
            self._corpus_bleu = sacrebleu.BLEU(**settings)
            self._sentence_bleu = sacrebleu.BLEU(**settings, effective_order=True)
        except (KeyError, AssertionError, ValueError, ImportError) as error:  # sacrebleu's ways to refuse an option
            from sacrebleu.metrics.bleu import BLEU

            if smooth_method not in BLEU.SMOOTH_DEFAULTS:
                raise UserError(f"Bleu: smooth_method={smooth_method!r} is not valid; use one of "
                                f"{', '.join(BLEU.SMOOTH_DEFAULTS)}") from None
            raise UserError(f"Bleu: sacrebleu refuses tokenize={tokenize!r} ({error}); use one of 13a, intl, char, "
                            "none, zh, ...") from None

    def corpus(self, pairs: list[tuple[str, str]]) -> float:
        hypotheses = [pred for _, pred in pairs]
        return self._corpus_bleu.corpus_score(hypotheses, [[true for true, _ in pairs]]).score / 100

    async def score(self, y_true: dict, y_pred: dict) -> float:
        fields = _field_texts(y_true, y_pred)
        if not fields:
            return 0.0
        return statistics.fmean(self._sentence_bleu.sentence_score(pred, [true]).score / 100
                                for _, true, pred in fields)


class Distinct(CorpusMetric):
    """distinct-n (RL4LMs' "diversity"): distinct n-grams / all n-grams of the predictions, on lower-cased
    word tokens (as F1Score). Over a set of examples the n-grams of all predictions are pooled, so a
    program that says the same thing every time scores low; one example alone gets its own ratio. 0 when
    there is no n-gram (a failed prediction adds none). The target only says which fields to score."""

    def __init__(self, n: int = 2, in_mask=None, out_mask=None, name: str | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"Distinct: n={n!r} is not valid; give the n-gram length, an integer >= 1 (e.g. n=2)")
        super().__init__(in_mask, out_mask, name or f"distinct_{n}")
        self.n = n

    def corpus(self, pairs: list[tuple[str, str]]) -> float:
        grams = []
        for _, pred in pairs:
            words = _words(pred)
            grams += [tuple(words[i:i + self.n]) for i in range(len(words) - self.n + 1)]
        return len(set(grams)) / len(grams) if grams else 0.0
