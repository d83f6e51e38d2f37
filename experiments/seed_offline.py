"""The Synalinks "Training Programs" GSM8k script, on promptrl's offline sentiment task.

Plain library API (no Hydra, no CLI), embedded SmolLM2-135M model, no network, no API key:
3 baseline evaluations -> 2 epochs of fit with a best-only checkpoint on val_reward
(validation data separate from the test data) -> reload best -> 3 final evaluations.

    make seed-script        # or: .venv/bin/python experiments/seed_offline.py
"""

import asyncio
import statistics
from pathlib import Path

import promptrl
from promptrl.seeding import derive_seed

NB_EPOCHS = 2
BATCH_SIZE = 8
NB_RUNS = 3
SEED = 0
FOLDER = Path("outputs/seed_offline")
checkpoint_filepath = FOLDER / "checkpoint.program.json"


def mean_std(results: list[dict], key: str = "reward") -> str:
    values = [r[key] for r in results]
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


async def main():
    language_model = promptrl.LanguageModel(model="local/smollm2-135m", temperature=0.3, max_tokens=96)

    print("Loading the offline sentiment dataset...")
    dataset = promptrl.datasets.load("sentiment", seed=SEED)
    train, val, test = dataset.splits(train_size=24, val_size=16, test_size=30, seed=SEED)
    print(f"Done: {len(train)} train, {len(val)} validation, {len(test)} test examples.")

    print("Creating program...")
    x0 = promptrl.Input(data_model=dataset.input_data_model)
    x1 = await promptrl.Generator(data_model=dataset.output_data_model, language_model=language_model)(x0)
    program = promptrl.Program(inputs=x0, outputs=x1, name="sentiment", description="Label a review's sentiment")
    print(program.summary())

    program.compile(
        reward=promptrl.rewards.ExactMatch(in_mask=["answer"]),
        optimizer=promptrl.optimizers.RandomFewShot(k=3, k_best=10, seed=SEED),
        metrics=[promptrl.metrics.F1Score(in_mask=["answer"])],
    )

    baseline = []
    for i in range(NB_RUNS):
        print(f"Baseline run {i + 1}/{NB_RUNS}")
        baseline.append(await program.evaluate(test.x, test.y, batch_size=BATCH_SIZE, seed=derive_seed(SEED, "run", i)))

    program_checkpoint_callback = promptrl.callbacks.ProgramCheckpoint(
        filepath=checkpoint_filepath, monitor="val_reward", mode="max", save_best_only=True
    )
    history = await program.fit(
        x=train.x, y=train.y, validation_data=(val.x, val.y), epochs=NB_EPOCHS, batch_size=BATCH_SIZE,
        callbacks=[program_checkpoint_callback, promptrl.callbacks.ProgressBar("fit ")], seed=SEED,
    )
    print("History:", history.records())

    program = promptrl.Program.load(checkpoint_filepath, language_model=language_model)
    program.compile(reward=promptrl.rewards.ExactMatch(in_mask=["answer"]),
                    metrics=[promptrl.metrics.F1Score(in_mask=["answer"])])
    final = []
    for i in range(NB_RUNS):
        print(f"Final run {i + 1}/{NB_RUNS}")
        final.append(await program.evaluate(test.x, test.y, batch_size=BATCH_SIZE, seed=derive_seed(SEED, "run", i)))

    print(f"baseline reward: {mean_std(baseline)}   f1: {mean_std(baseline, 'f1_score')}")
    print(f"trained  reward: {mean_std(final)}   f1: {mean_std(final, 'f1_score')}")
    print(f"language model usage: {language_model.usage}")


if __name__ == "__main__":
    asyncio.run(main())
