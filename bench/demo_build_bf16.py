"""Seconds per optimizer step of the demo-model build in float32 and under bfloat16 autocast, side by side.

    python bench/demo_build_bf16.py [--steps 12] [--threads 2] [--plain] [--target 1.2]

Builds the tokenizer once, then the same model twice from the same seed (the `--copy-circuit` preset's
shape and corpus by default, the plain build's with `--plain`) and trains each for `--steps` steps on the
same chats, in turn: float32 first, then `bf16=True` (studio.core.demo_model.train.fit under
torch.autocast). Prints seconds per step, tokens per second, the loss each reached and the speed-up
(float32 seconds / bfloat16 seconds); exits 1 when the speed-up is below --target. The first step of each
is left out of the timing (one-off allocation). Autocast pays on a CPU with AVX512-BF16 (or AMX); without
it the speed-up can be below 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="the plain build's shape and corpus, not the circuit preset")
    parser.add_argument("--target", type=float, default=1.2)
    args = parser.parse_args()

    import torch

    from studio.core.demo_model import corpus
    from studio.core.demo_model.build import make_model, make_tokenizer
    from studio.core.demo_model.train import CIRCUIT, DemoParams, StepLog, fit

    torch.set_num_threads(args.threads)
    preset = {} if args.plain else {k: v for k, v in CIRCUIT.items() if k != "steps"}
    base = DemoParams(steps=args.steps, threads=args.threads, **preset)
    tokenizer = make_tokenizer(base)
    chats = list(corpus.chats(base.seed + 1, tokenizer, args.steps * base.chats_per_step, base.mix()))
    results = {}
    for bf16 in (False, True):
        params = dataclasses.replace(base, bf16=bf16)
        model, pins = make_model(tokenizer, params)
        marks: list[StepLog] = []
        fit(model, tokenizer, iter(chats), params, marks.append, None, pins)
        first, last = marks[0], marks[-1]
        seconds = (last.elapsed_s - first.elapsed_s) / (len(marks) - 1)
        tokens = (last.tokens - first.tokens) / (last.elapsed_s - first.elapsed_s)
        name = "bfloat16" if bf16 else "float32"
        results[name] = seconds
        print(f"{name:9s} {seconds:6.2f} s/step  {tokens:7.0f} tok/s  loss after {args.steps} steps {last.loss:.3f}", flush=True)
    speedup = results["float32"] / results["bfloat16"]
    print(f"speed-up (float32 / bfloat16 seconds per step): {speedup:.2f}x (target >= {args.target})")
    return 0 if speedup >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
