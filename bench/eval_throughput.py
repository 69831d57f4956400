"""Evaluation throughput: batched generation against one example at a time, on the same model.

    python bench/eval_throughput.py [--examples 64] [--batch 16] [--hidden 256] [--layers 4] [--tokens 32] [--repeats 3]

Builds a random-init Llama (no download), loads it through the ModelManager and evaluates the same
held-out examples (questions of varied length) with `evaluation.runner.evaluate` at batch size 1 and
at `--batch`, greedy, interleaved, `--repeats` times each. `min_new_tokens` = `max_new_tokens`
(set on the model's generation config) makes every answer exactly `--tokens` tokens, so both do
the same work. Prints the median time of each, the speed-up, and whether every batched answer
equals its one-at-a-time answer; exits 1 when the speed-up is below --target or an answer differs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from studio.config import GenerationParams, LoadParams  # noqa: E402
from studio.core.evaluation.data import EvalExample, parse_example  # noqa: E402
from studio.core.evaluation.runner import EvaluationRun, Variant, evaluate  # noqa: E402
from studio.core.models import ModelManager  # noqa: E402
from studio.core.tiny_model import build_tiny_model  # noqa: E402

WORDS = ("battery router firmware warranty cable restart update charge solar grid app light fan error code "
         "home support install reset screen signal power mode night export tariff").split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="batch size of the batched run")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer (min = max)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--target", type=float, default=2.0, help="minimum speed-up of batched over one at a time")
    return parser.parse_args()


def held_out(n: int, seed: int = 0) -> list[EvalExample]:
    """`n` support-style questions of 5 to 40 words, so batches really are padded."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "?"
        examples.append(parse_example({"question": question, "reference": json.dumps({"answer": question[:40]}),
                                       "facts": [rng.choice(WORDS)]}, line=i + 1))
    return examples


def timed(manager: ModelManager, examples: list[EvalExample], params: GenerationParams, batch: int) -> tuple[float, EvaluationRun]:
    start = time.perf_counter()
    run = evaluate(manager, examples, [Variant("base")], params, batch_size=batch)
    return time.perf_counter() - start, run


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        texts = [" ".join(random.Random(s).choice(WORDS) for _ in range(300)) for s in range(50)]
        path = build_tiny_model(Path(tmp) / "bench-llama", hidden_size=args.hidden, layers=args.layers, vocab_size=1000,
                                texts=texts, seed=0)
        manager = ModelManager()
        manager.load(LoadParams(model=str(path), device="cpu"))
        with manager.use(None) as (model, _tok):
            model.generation_config.min_new_tokens = args.tokens  # equal-length answers: both runs do the same work
        params = GenerationParams(temperature=0.0, max_new_tokens=args.tokens)
        examples = held_out(args.examples)
        timed(manager, examples[:args.batch], params, args.batch)  # warm-up
        timed(manager, examples[:2], params, 1)
        single_times, batched_times = [], []
        for _ in range(args.repeats):
            t1, single = timed(manager, examples, params, 1)
            tb, batched = timed(manager, examples, params, args.batch)
            single_times.append(t1)
            batched_times.append(tb)
    same = sum(s.answers["base"].answer == b.answers["base"].answer for s, b in zip(single.results, batched.results))
    tokens = sum(r.answers["base"].scores.tokens for r in batched.results)
    t1, tb = statistics.median(single_times), statistics.median(batched_times)
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers; {args.examples} examples × {args.tokens} new tokens "
          f"({tokens} generated per run); torch threads {torch.get_num_threads()}; median of {args.repeats}")
    print(f"one at a time : {t1:7.2f} s  ({tokens / t1:7.1f} tok/s)")
    print(f"batch of {args.batch:<5}: {tb:7.2f} s  ({tokens / tb:7.1f} tok/s)")
    print(f"speed-up      : {t1 / tb:7.2f}×   (target ≥ {args.target}×)")
    print(f"answers equal : {same}/{len(batched.results)}")
    return 0 if t1 / tb >= args.target and same == len(batched.results) else 1


if __name__ == "__main__":
    sys.exit(main())
