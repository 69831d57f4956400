"""The standard variants every comparison offers, by name: what each needs and the `Variant` it stands for.

`studio eval`, the Evaluate and Compare tabs and the demo scorecard all speak this vocabulary, so a
"tuned+rag" column means the same thing everywhere. Importing this module loads no ML library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.core.evaluation.runner import Variant
    from studio.core.prompting import PromptSpec

VARIANTS = ("base", "prompt", "rag", "tuned", "tuned+rag")
NEEDS_ADAPTER = ("tuned", "tuned+rag")
NEEDS_COLLECTION = ("rag", "tuned+rag")


def build_variants(names: list[str], adapter: str | None, collection: str | None,
                   prompt: PromptSpec | None = None) -> list[Variant]:
    """The Variants for `names` (from VARIANTS), in order: `adapter` for the tuned ones, `collection` (a knowledge
    base) for the rag ones, `prompt` (a preset) for "prompt"."""
    from studio.core.evaluation.runner import Variant

    table = {"base": Variant("base"), "prompt": Variant("prompt", prompt=prompt),
             "rag": Variant("rag", knowledge_base=collection), "tuned": Variant("tuned", adapter=adapter),
             "tuned+rag": Variant("tuned+rag", adapter=adapter, knowledge_base=collection)}
    return [table[n] for n in names]
