"""Throughput of the studio's streaming generation against a bare `model.generate` on the same model.

    python bench/generation.py [--hidden 512] [--layers 8] [--tokens 64] [--repeats 9]

Builds a random-init Llama big enough that per-token compute dominates (no download), loads it
through the ModelManager, and runs `generation.stream` and `model.generate(**generation_kwargs(...))`
(from the main thread, and from a fresh thread like the studio's worker) with the same prompt
tokens, params and seed, interleaved, after a warm-up of each. EOS is suppressed for all (the
model's generation_config), so every run produces exactly `--tokens` tokens. Prints the median
tokens/s of each and the ratio studio/bare (per baseline, the median over repeats of the
back-to-back runs' ratio, which other load on the machine disturbs least); exits 1 when the ratio
against the faster baseline is below --target.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from studio.config import GenerationParams, LoadParams  # noqa: E402
from studio.core import generation  # noqa: E402
from studio.core.models import ModelManager  # noqa: E402
from studio.core.tiny_model import build_tiny_model  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are a helpful support assistant."},
            {"role": "user", "content": "My router keeps dropping the connection. What should I check first?"}]



def training_texts(seed: int = 0) -> list[str]:
    """Enough varied (pseudo-)words for the BPE trainer to reach a realistic vocabulary of ~2k tokens."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [" ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(200))
            for _ in range(200)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512, help="hidden size of the random Llama")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=2000, help="tokenizer vocabulary to train")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per run")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.95, help="minimum studio/bare ratio")
    return parser.parse_args()


def run_studio(manager: ModelManager, params: GenerationParams) -> tuple[float, int]:
    start = time.perf_counter()
    *_, done = generation.stream(manager, MESSAGES, params)
    return time.perf_counter() - start, done.stats.completion_tokens


def run_bare(manager: ModelManager, params: GenerationParams) -> tuple[float, int]:
    with manager.use() as (model, tokenizer):
        prompt = torch.tensor([generation.render_prompt(tokenizer, MESSAGES).token_ids])
        generation.seed_everything(params.seed)
        start = time.perf_counter()
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             **generation.generation_kwargs(params, tokenizer))
        return time.perf_counter() - start, out.shape[1] - prompt.shape[1]


def run_bare_in_thread(manager: ModelManager, params: GenerationParams) -> tuple[float, int]:
    """The bare call from a fresh thread, as the studio's worker makes it.

    On a CPU shared with other busy programs, OpenMP's spin-waiting makes the thread that first
    used torch (here the main thread) several times slower than a fresh one; this baseline shows
    what the studio's own machinery costs, without that effect.
    """
    result: list[tuple[float, int]] = []
    worker = threading.Thread(target=lambda: result.append(run_bare(manager, params)))
    worker.start()
    worker.join()
    return result[0]


RUNNERS = {"studio stream": run_studio, "bare generate": run_bare, "bare, own thread": run_bare_in_thread}


def measure(manager: ModelManager, params: GenerationParams, repeats: int) -> tuple[dict[str, list[float]], int]:
    """Seconds per run for each runner, interleaved; and the tokens every run produced."""
    for run in RUNNERS.values():  # warm-up: first-call allocations, lazy imports, thread pools
        run(manager, params)
    names = list(RUNNERS)
    times: dict[str, list[float]] = {name: [] for name in names}
    counts: set[int] = set()
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:  # none always goes first
            seconds, tokens = RUNNERS[name](manager, params)
            times[name].append(seconds)
            counts.add(tokens)
    if len(counts) != 1:
        raise SystemExit(f"runs produced different token counts: {sorted(counts)}")
    return times, counts.pop()


def report(times: dict[str, list[float]], tokens: int) -> float:
    """Print the table; return the studio/bare ratio against the faster baseline."""
    print(f"\n{'':17} {'median tok/s':>12} {'ms/token':>9} {'min s':>7} {'max s':>7}")
    for name, t in times.items():
        rate = tokens / statistics.median(t)
        print(f"{name:17} {rate:12.1f} {1000 / rate:9.1f} {min(t):7.2f} {max(t):7.2f}")
    studio = times["studio stream"]
    ratios = {}
    for name in [n for n in times if n != "studio stream"]:
        # Each repeat's runs are back to back, so their ratio cancels most of what other programs
        # on the machine do to both; the median drops the repeats where they hit only one.
        ratios[name] = statistics.median(b / s for s, b in zip(studio, times[name]))
        print(f"studio/{name}: median of per-repeat ratios {ratios[name]:.3f}, "
              f"ratio of medians {statistics.median(times[name]) / statistics.median(studio):.3f}, "
              f"of best runs {min(times[name]) / min(studio):.3f}")
    return min(ratios.values())


def main() -> int:
    args = parse_args()
    params = GenerationParams(max_new_tokens=args.tokens, seed=1234)  # default sampling settings
    manager = ModelManager()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "bench-llama", hidden_size=args.hidden, layers=args.layers,
                                heads=max(1, args.hidden // 64), vocab_size=args.vocab, texts=training_texts())
        info = manager.load(LoadParams(model=str(path), precision="fp32", device="cpu"))
    with manager.use() as (model, tokenizer):
        model.generation_config.eos_token_id = None  # every run makes exactly --tokens tokens
        vocab = len(tokenizer)
    print(f"model: {info.parameters / 1e6:.1f}M params (hidden {args.hidden}, {args.layers} layers, vocab {vocab}), "
          f"fp32 on cpu, {torch.get_num_threads()} torch threads; {args.tokens} new tokens per run, "
          f"{args.repeats} interleaved repeats after a warm-up; load average {os.getloadavg()[0]:.1f}")
    times, tokens = measure(manager, params, args.repeats)
    ratio = report(times, tokens)
    ok = ratio >= args.target
    print(f"\nratio studio/bare (against the faster baseline): {ratio:.3f} -> "
          + ("ok" if ok else f"BELOW TARGET {args.target}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
