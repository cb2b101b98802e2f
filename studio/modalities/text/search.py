"""Text data's search space: the networks a search tries and their settings."""

from __future__ import annotations

from typing import Any

from studio.core.search_dims import Dimension, choice, number


def dimensions(spec: Any, networks: list[str] | None = None) -> list[Dimension]:
    """Texts: the bag of words (MiniLM is fine-tuned with its own settings, not searched: each of its
    trials costs minutes on a CPU), its vector size, word groups, hidden layer and dropout."""
    from studio.core.spec import ArchitectureSpec, BagOfWordsParams

    bag = ("architecture.name", ("bag_of_words",))
    return [
        choice(ArchitectureSpec, "name", "architecture.name", tuple(networks or ("bag_of_words",))),
        number(
            BagOfWordsParams,
            "embedding_dim",
            "architecture.params.embedding_dim",
            16,
            256,
            log=True,
            when=bag,
        ),
        choice(BagOfWordsParams, "word_ngrams", "architecture.params.word_ngrams", (1, 2, 3), when=bag),
        choice(BagOfWordsParams, "hidden", "architecture.params.hidden", (0, 64, 256), when=bag),
        number(BagOfWordsParams, "dropout", "architecture.params.dropout", 0.0, 0.5, when=bag),
    ]
