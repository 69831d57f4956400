"""LengthBucketSampler: every index once per epoch, little padding, a new draw per epoch, same draw per (seed, epoch)."""

from __future__ import annotations

import random

import pytest

from studio.core.training.sampler import LengthBucketSampler, padding_share

_RNG = random.Random(7)
LENGTHS = [_RNG.randint(150, 400) for _ in range(240)]


def random_batches(n: int, size: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[k:k + size] for k in range(0, n, size)]


def test_each_epoch_yields_every_index_once_in_full_batches_but_the_last() -> None:
    sampler = LengthBucketSampler(LENGTHS, batch_size=16, seed=3)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(240)) and sorted(sampler) == list(range(240))
    assert [len(b) for b in batches] == [16] * 15 and len(sampler) == 240
    assert list(sampler) == [i for b in batches for i in b]


def test_padding_is_a_fraction_of_random_batching() -> None:
    sampler = LengthBucketSampler(LENGTHS, batch_size=16, seed=3)
    assert padding_share(LENGTHS, random_batches(240, 16, 3)) > 0.2  # uniform 150-400: ~30% of random batches is padding
    assert padding_share(LENGTHS, sampler.batches()) < 0.05  # a batch spans ~17 tokens of the 250-token range
    small_windows = LengthBucketSampler(LENGTHS, batch_size=16, seed=3, window_batches=1)  # sorting within a batch: none
    assert padding_share(LENGTHS, small_windows.batches()) > 0.2


def test_the_longest_batch_comes_first_and_epochs_differ_but_repeat() -> None:
    sampler = LengthBucketSampler(LENGTHS, batch_size=8, seed=3)
    first = sampler.batches()
    assert max(LENGTHS) == max(LENGTHS[i] for i in first[0])
    sampler.set_epoch(1)
    second = sampler.batches()
    assert second != first and {frozenset(b) for b in second} != {frozenset(b) for b in first}  # new members, not just order
    sampler.set_epoch(0)
    assert sampler.batches() == first  # a resumed run skips exactly the batches it trained on
    assert LengthBucketSampler(LENGTHS, batch_size=8, seed=4).batches() != first


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        LengthBucketSampler(LENGTHS, batch_size=0)
    assert LengthBucketSampler([], batch_size=4).batches() == [] and padding_share([], []) == 0.0


def test_the_worker_trainer_draws_group_by_length_batches_from_it(tmp_path, tiny_model_dir) -> None:  # noqa: ANN001
    from transformers import AutoModelForCausalLM, TrainingArguments

    from studio.core.training.callbacks import ListDataset
    from studio.core.training.worker import _bucketing_trainer

    rows = ListDataset([{"input_ids": [1] * n, "labels": [1] * n} for n in LENGTHS[:40]])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for strategy, expected in (("group_by_length", LengthBucketSampler), ("random", None)):
        args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none",
                                 train_sampling_strategy=strategy, seed=5)
        sampler = _bucketing_trainer()(model=model, args=args, train_dataset=rows)._get_train_sampler()
        assert isinstance(sampler, LengthBucketSampler) == (expected is not None)
        if expected is not None:
            assert sampler.batch_size == 4 and sampler.seed == 5 and sampler.lengths == LENGTHS[:40]
