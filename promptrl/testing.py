"""A scripted language model for fast tests of programs, rewards and optimizers.

It goes through the same `LanguageModel.generate` path (semaphore, validation, accounting);
only the backend is replaced by a function of the chat messages.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from promptrl.engine.transports import Completion
from promptrl.language_model import LanguageModel


class ScriptedLanguageModel(LanguageModel):
    """`responder(messages, output_model) -> dict | str` gives each reply (raise to simulate an
    LM error); `delay(messages) -> seconds` lets tests make calls finish out of order."""

    def __init__(self, responder: Callable, delay: Callable | None = None, **kwargs):
        kwargs.setdefault("model", "scripted")
        super().__init__(**kwargs)
        self.requests: list[list[dict]] = []
        self._responder, self._delay = responder, delay
        self._transport = _ScriptedTransport(self, responder, delay)

    def clone(self, **changes) -> "ScriptedLanguageModel":
        config = {**self.get_config(), **changes}
        return ScriptedLanguageModel(self._responder, self._delay, **config)


class _ScriptedTransport:
    def __init__(self, lm, responder, delay):
        self.lm, self.responder, self.delay = lm, responder, delay

    async def complete(self, messages, output_model, schema, seed, response_format=None) -> Completion:
        self.lm.requests.append(messages)
        if self.delay:
            await asyncio.sleep(self.delay(messages))
        reply = self.responder(messages, output_model)
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return Completion(text=text, prompt_tokens=sum(len(m["content"]) // 4 for m in messages),
                          completion_tokens=len(text) // 4)


def last_user_input(messages) -> dict:
    """The JSON input of the example being asked (the last user turn)."""
    return json.loads(messages[-1]["content"])


def sentiment_student(**settings) -> ScriptedLanguageModel:
    """A scripted model for fast end-to-end runs of the `sentiment` task (e.g. the CLI with
    `language_model._target_=promptrl.testing.sentiment_student`): it answers right only when its
    prompt holds few-shot examples, else always "positive" - so few-shot training visibly helps.
    As an optimizer LM it proposes instructions and critiques."""
    from promptrl.datasets.synthetic import _NEGATIVE

    def respond(messages, output_model):
        fields = output_model.model_fields
        if "instruction" in fields:
            return {"instruction": "Label the review as positive or negative."}
        if "critique" in fields:
            return {"critique": "The label does not match the review's adjectives."}
        text = last_user_input(messages)["text"]
        has_examples = any(m["role"] == "assistant" for m in messages)
        negative = any(word in text for word in _NEGATIVE)
        return {"answer": "negative" if has_examples and negative else "positive"}

    settings["model"] = "scripted"
    return ScriptedLanguageModel(respond, **settings)


# ---- a toy task for optimizer tests: question "qN" has answer "aN" ---------------------------------
from promptrl.data_model import DataModel, Field  # noqa: E402


class Question(DataModel):
    question: str = Field(description="A question")


class Answer(DataModel):
    answer: str = Field(description="The answer")


class Notes(DataModel):
    notes: str = Field(description="Notes")


def toy_data(n: int) -> tuple[list[Question], list[Answer]]:
    return [Question(question=f"q{i}") for i in range(n)], [Answer(answer=f"a{i}") for i in range(n)]
