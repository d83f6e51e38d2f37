"""Integration: the real embedded SmolLM2-135M model through the LanguageModel interface."""

import asyncio

import pytest

import promptrl
from promptrl.callbacks import ProgramCheckpoint
from promptrl.datasets import load

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentiment():
    dataset = load("sentiment", seed=0)
    return dataset, dataset.splits(train_size=6, val_size=3, test_size=4, seed=0)


def test_local_model_returns_valid_structured_output(sentiment):
    dataset, (_, _, test) = sentiment
    lm = promptrl.LanguageModel("local/smollm2-135m", max_tokens=48)
    x0 = promptrl.Input(dataset.input_data_model)
    program = promptrl.Program(x0, promptrl.Generator(dataset.output_data_model, lm)(x0))
    outputs = asyncio.run(program.predict(test.x, seed=0))
    assert all(isinstance(o, dataset.output_data_model) for o in outputs)  # grammar: always valid JSON
    assert lm.usage.calls == len(test) and lm.usage.failures == 0
    assert lm.usage.prompt_tokens > 50 * len(test) and lm.usage.completion_tokens > 0


def test_same_seed_same_outputs_at_positive_temperature(sentiment):
    dataset, (_, _, test) = sentiment
    lm = promptrl.LanguageModel("local/smollm2-135m", temperature=1.0, max_tokens=48)
    x0 = promptrl.Input(dataset.input_data_model)
    program = promptrl.Program(x0, promptrl.ChainOfThought(dataset.output_data_model, lm)(x0))
    first = asyncio.run(program.predict(test.x[:2], seed=3))
    second = asyncio.run(program.predict(test.x[:2], seed=3))
    assert first == second and all(o.thinking is not None for o in first if o is not None)


def test_fit_on_local_model_sets_examples_and_checkpoints(sentiment, tmp_path):
    dataset, (train, val, _) = sentiment
    lm = promptrl.LanguageModel("local/smollm2-135m", max_tokens=48)
    x0 = promptrl.Input(dataset.input_data_model)
    program = promptrl.Program(x0, promptrl.Generator(dataset.output_data_model, lm, name="answer")(x0))
    program.compile(reward=promptrl.rewards.ExactMatch(in_mask=["answer"]),
                    optimizer=promptrl.optimizers.RandomFewShot(k=2, k_best=4))
    checkpoint = ProgramCheckpoint(tmp_path / "best.program.json")
    history = asyncio.run(program.fit(train.x, train.y, validation_data=(val.x, val.y), epochs=1, batch_size=3,
                                      callbacks=[checkpoint]))
    assert set(history.history) >= {"reward", "val_reward"}
    assert (tmp_path / "best.program.json").is_file()
    if history.history["reward"][0] > 0:  # a correct training prediction became a demonstration
        assert 1 <= len(program.get_module("answer").examples) <= 2


def test_local_cosine_similarity_ranks_a_paraphrase_above_an_unrelated_text():
    reward = promptrl.rewards.CosineSimilarity("local/smollm2-135m", in_mask=["answer"])
    target = {"answer": "the cat sat on the mat", "thinking": "ignored by the mask"}

    async def scores():
        close = await reward(target, {"answer": "a cat was sitting on the mat"})
        far = await reward(target, {"answer": "quarterly revenue grew by eight percent"})
        return close, far

    close, far = asyncio.run(scores())
    assert 0.0 <= far < close <= 1.0
    assert reward.embedding_model.usage.calls == 2
