"""Text made from the messages every call of a prompt state repeats (the system prompt and the
demonstration turns: the same message objects while a generator's prompts do not change), kept
so that a call encodes only its own last message. Serves the request body (engine/http.py) and the
reply cache's key (LanguageModel._cache_key)."""

from __future__ import annotations

import collections
import copy
import operator
from typing import Callable

KEPT = 64  # entries: one per prompt state and anchor in use


class PrefixTexts:
    def __init__(self, kept: int = KEPT):
        self.kept = kept
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, anchors: tuple, prefix: list[dict], make: Callable[[], object]):
        """`make()`'s result for these leading messages and anchors (objects the text also depends
        on, e.g. a response_format or schema made once per class, or flags), made again when a
        message changed in place since (each is compared with the copy taken when it was made) or
        an anchor is another object."""
        key = (*map(id, anchors), *map(id, prefix))
        entry = self._entries.get(key)
        if entry is not None and all(map(operator.is_, entry[0], anchors)) and entry[1] == prefix:
            self._entries.move_to_end(key)
            return entry[2]
        made = make()
        # the anchors are held by the entry, so their ids cannot be reused by other objects meanwhile
        self._entries[key] = (anchors, copy.deepcopy(prefix), made)
        if len(self._entries) > self.kept:
            self._entries.popitem(last=False)
        return made
