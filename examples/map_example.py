"""Map steps: a root map over the flow input and a dependent map over a step's output.

    sentences (map over the input) ── words ── lengths (map over words) ── stats
                                         └─────────────────────────────────┘

Input: a list of sentences. Each is tokenised by its own task, the word lists are
flattened, each word's length is measured by its own task, and the stats step combines them.

    pgweave worker pgweave_examples.map_example:flow --dsn "$DSN"
    pgweave start word_stats --input '["a b", "c d e"]' --wait --dsn "$DSN"
"""

from __future__ import annotations

import re
from typing import TypedDict

from pgweave.dsl import Flow


class WordsDeps(TypedDict):
    """Input of the words step: the tokenised sentences, in input order."""

    sentences: list[list[str]]


class StatsDeps(TypedDict):
    """Input of the stats step."""

    words: list[str]
    lengths: list[int]


def tokenize(sentence: str) -> list[str]:
    """One task per sentence: its words, lower-cased."""
    return re.findall(r"[a-z']+", sentence.lower())


def flatten(deps: WordsDeps) -> list[str]:
    """All words of all sentences, in order."""
    return [word for sentence in deps["sentences"] for word in sentence]


def measure(word: str) -> int:
    """One task per word: its length."""
    return len(word)


def stats(deps: StatsDeps) -> dict[str, object]:
    """Word count, longest word and average length."""
    words, lengths = deps["words"], deps["lengths"]
    if not words:
        return {"words": 0, "longest": None, "average_length": 0}
    longest = max(range(len(words)), key=lambda i: lengths[i])
    return {
        "words": len(words),
        "longest": words[longest],
        "average_length": round(sum(lengths) / len(lengths), 2),
    }


flow = (
    Flow[list[str]]("word_stats", timeout=10)
    .map("sentences", tokenize)
    .step("words", flatten, depends_on=["sentences"])
    .map("lengths", measure, array="words")
    .step("stats", stats, depends_on=["words", "lengths"])
)
