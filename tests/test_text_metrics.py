"""Text-generation metrics (metrics=text): the numbers equal the reference packages' (rouge-score,
sacrebleu) and hand-counted distinct-n, per example and over a set of examples, also through a CLI run."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from typer.testing import CliRunner

from promptrl import DataModel, Field, Generator, Input, Program, UserError
from promptrl.cli import app
from promptrl.metrics import Bleu, Distinct, Rouge
from promptrl.testing import ScriptedLanguageModel, last_user_input
from promptrl.trainer import evaluate

sacrebleu = pytest.importorskip("sacrebleu")


@pytest.fixture(scope="module")
def rouge_scorer():
    """The reference package, imported only when a test needs it and then at once released from pytest's
    stderr by Rouge() (see metrics._release_stderr_from_absl): importing it at collection would leave the
    stream of every later in-process Hydra run (test_cli, test_recipe, ...) to be closed."""
    module = pytest.importorskip("rouge_score.rouge_scorer")
    Rouge()
    return module

TARGETS = ["The cats were running quickly across the garden.",
           "A storm closed the harbour on Monday, and ships waited outside.",
           "Prices rose by 3.5 percent in the third quarter."]
PREDICTIONS = ["the cat runs quickly across a garden",
               "Ships waited outside the harbour, closed by a storm on Monday.",
               "In the third quarter prices went up 3.5 percent."]


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_is_rouge_scores_f_measure(rouge_type, use_stemmer, rouge_scorer):
    metric = Rouge(rouge_type, use_stemmer=use_stemmer)
    reference = rouge_scorer.RougeScorer([rouge_type], use_stemmer=use_stemmer)
    for target, prediction in zip(TARGETS, PREDICTIONS):
        expected = reference.score(target, prediction)[rouge_type].fmeasure
        assert 0 < expected < 1
        assert run(metric({"summary": target}, {"summary": prediction})) == pytest.approx(expected, abs=1e-12)
    assert Rouge("rougeL").name == "rouge_l" and Rouge("rouge2").name == "rouge_2"


def test_stemming_changes_rouge(rouge_scorer):  # the option reaches the scorer
    pair = ({"summary": TARGETS[0]}, {"summary": PREDICTIONS[0]})
    assert run(Rouge("rouge1", use_stemmer=True)(*pair)) > run(Rouge("rouge1")(*pair))


def test_several_fields_are_scored_one_by_one_and_averaged_and_numbers_are_text(rouge_scorer):
    metric = Rouge("rouge1", in_mask=["summary", "year"])
    reference = rouge_scorer.RougeScorer(["rouge1"])
    y_true = {"summary": TARGETS[1], "year": 2024, "id": "x"}
    y_pred = {"summary": PREDICTIONS[1], "year": 2024.0, "id": "y", "reasoning": "extra fields are ignored"}
    expected = (reference.score(TARGETS[1], PREDICTIONS[1])["rouge1"].fmeasure + 1.0) / 2  # 2024.0 reads "2024"
    assert run(metric(y_true, y_pred)) == pytest.approx(expected)
    assert run(metric({"summary": "a b"}, {"other": "a b"})) == 0.0  # a missing field scores as an empty text
    assert run(metric({"summary": "a b"}, None)) == 0.0  # a failed prediction


def test_bleu_per_example_is_sentence_bleu_and_over_examples_is_corpus_bleu():
    metric = Bleu()
    for target, prediction in zip(TARGETS, PREDICTIONS):
        expected = sacrebleu.sentence_bleu(prediction, [target]).score / 100
        assert run(metric({"summary": target}, {"summary": prediction})) == pytest.approx(expected, abs=1e-12)
    pairs = [({"summary": t}, {"summary": p}) for t, p in zip(TARGETS, PREDICTIONS)]
    assert metric.aggregate(pairs) == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [TARGETS]).score / 100)
    lowercase = Bleu(lowercase=True, tokenize="intl")
    assert lowercase.aggregate(pairs) == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, [TARGETS], lowercase=True, tokenize="intl").score / 100)


def test_distinct_n_hand_counted():
    pairs = [({"summary": "x"}, {"summary": "The cat sat."}), ({"summary": "x"}, {"summary": "the cat ran"}),
             ({"summary": "x"}, None)]  # a failed prediction adds no n-gram
    # unigrams: the cat sat the cat ran -> 4 distinct of 6; bigrams: the-cat cat-sat the-cat cat-ran -> 3 of 4
    assert Distinct(n=1).aggregate(pairs) == pytest.approx(4 / 6)
    assert Distinct(n=2).aggregate(pairs) == pytest.approx(3 / 4)
    assert Distinct(n=3).aggregate(pairs) == pytest.approx(2 / 2)
    assert run(Distinct(n=1)({"summary": "x"}, {"summary": "no no no yes"})) == pytest.approx(2 / 4)
    assert run(Distinct(n=2)({"summary": "x"}, {"summary": "one"})) == 0.0  # no bigram at all
    assert Distinct(n=2).name == "distinct_2"


class Article(DataModel):
    text: str = Field(description="An article")


class Summary(DataModel):
    summary: str = Field(description="A one-sentence summary")


def summarizer(failing: set[int] = frozenset()):
    def respond(messages, output_model):
        i = int(last_user_input(messages)["text"].split()[1])
        return "not json" if i in failing else {"summary": PREDICTIONS[i]}

    return ScriptedLanguageModel(respond, num_retries=0)


def test_evaluate_reports_corpus_values_not_means_of_example_scores(rouge_scorer):
    program = Program(x := Input(Article), Generator(Summary, summarizer(failing={2}))(x), name="summarizer")
    program.compile(metrics=[Bleu(), Distinct(n=1), Rouge("rougeL")])
    xs = [Article(text=f"article {i}") for i in range(3)]
    ys = [Summary(summary=t) for t in TARGETS]
    logs, predictions = run(evaluate(program, xs, ys, return_predictions=True))
    assert logs["failures"] == 1
    hypotheses = [PREDICTIONS[0], PREDICTIONS[1], ""]  # the failed prediction: an empty hypothesis
    assert logs["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [TARGETS]).score / 100)
    assert logs["bleu"] != pytest.approx(sum(p.scores["bleu"] for p in predictions) / 3)
    words = " ".join(hypotheses).lower().replace(",", "").replace(".", "").split()
    assert logs["distinct_1"] == pytest.approx(len(set(words)) / len(words))
    reference = rouge_scorer.RougeScorer(["rougeL"])
    assert logs["rouge_l"] == pytest.approx(sum(reference.score(t, h)["rougeL"].fmeasure
                                                for t, h in zip(TARGETS, hypotheses)) / 3)


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # import sacrebleu -> ImportError
    with pytest.raises(UserError, match=r"make install-text.*promptrl\[text\]") as error:
        Bleu()
    assert "\n" not in str(error.value) and "sacrebleu" in str(error.value)
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(UserError, match="rouge-score"):
        Rouge()


@pytest.mark.parametrize("make, expected", [(lambda: Rouge("rougeX"), "rouge_type"),
                                            (lambda: Distinct(n=0), "n=0"),
                                            (lambda: Bleu(tokenize="nope"), "tokenize")])
def test_bad_options_are_user_errors(make, expected):
    with pytest.raises(UserError, match=expected):
        make()


def test_cli_run_with_metrics_text_reports_every_text_metric(tmp_path, rouge_scorer):
    names = ["rouge_1", "rouge_2", "rouge_l", "bleu", "distinct_1", "distinct_2"]
    result = CliRunner().invoke(app, [
        "train", "+optimizer=random_few_shot", "metrics=text", "nb_runs=2", "epochs=1", "batch_size=4",
        "dataset.train_size=8", "dataset.val_size=4", "dataset.test_size=10",
        "language_model._target_=promptrl.testing.sentiment_student", "--no-progress", f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "final_predictions.jsonl").read_text().splitlines()]
    final = json.loads((tmp_path / "final.json").read_text())
    for phase in ("baseline", "final"):
        assert set(names) <= set(json.loads((tmp_path / f"{phase}.json").read_text())["mean"])
    for i, logs in enumerate(final["runs"]):  # one-word answers: rouge is exact match; distinct-1 is pooled
        answers = [r["prediction"]["answer"] for r in rows if r["run"] == i]
        assert logs["rouge_l"] == pytest.approx(logs["reward"])
        assert logs["distinct_1"] == pytest.approx(len(set(answers)) / len(answers)) and logs["distinct_1"] < 1
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in report for name in names)
