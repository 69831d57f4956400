"""Peak memory of a 4-pane compare against one answer from the base alone, on the same model.

    python bench/compare_memory.py [--shape qwen2.5-1.5b|qwen2.5-0.5b|tiny] [--tokens 64] [--device auto] [--target 1.15]

Builds a random-init Llama (no download), a random LoRA adapter for it and a knowledge base of a
few documents, then measures, each in its own fresh Python process:

    base      the base model alone answers the message (generation.generate)
    base+rag  the base answers it through the RAG pipeline (RagService.answer): the retrieval stack's own cost
    compare   compare_stream with 4 panes: base, base+RAG, tuned adapter, tuned+RAG
    compare-norag  compare_stream with 4 panes and no retrieval: base, tuned, base, tuned (same adapter load,
              no retrieval stack), which separates the batch's cost from the embedder's and Chroma's

Peak memory is the process's RSS (psutil, sampled every 2 ms in a thread; not ru_maxrss, which a
child inherits from the parent it was forked from) and, on a GPU, torch.cuda.max_memory_allocated.
Prints every peak and the ratios; exits 1 when compare/base is above --target. A second copy of the
base would add its weights (printed) to the compare's peak. On CPU the retrieval stack (embedder,
Chroma, sentence-transformers) is most of the gap between compare and base: see base+rag.

Shapes (random-initialised, no download; `--shape`):
  qwen2.5-1.5b  (default) Qwen2.5-1.5B-Instruct's layer shapes: hidden 1536, 28 layers, 12 heads / 2 KV heads,
                MLP 8960, vocabulary 151,936, tied embeddings: 1.54 B parameters, 5.9 GiB in fp32.
  qwen2.5-0.5b  Qwen2.5-0.5B-Instruct's: hidden 896, 24 layers, 14 / 2 heads, MLP 4864: 494 M parameters, 1.9 GiB.
  tiny          hidden 512, 8 layers, vocabulary ~1000: 82 MiB, where fixed costs are everything.
What a compare adds is mostly fixed, whatever the model: the retrieval stack (sentence-transformers,
which imports scikit-learn, SciPy and pandas; the MiniLM embedder; Chroma) ~310 MiB, peft ~55 MiB, then
the adapter and a 4-row batch. A second copy of the base would add its whole weights. Measured on the
2-core CPU machine: 1.5B 1.12, 0.5B 1.17, tiny 1.81 (compare/base); compare/base+rag 1.07 / 1.03 / 1.09.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

CASES = ("base", "base+rag", "compare", "compare-norag")
SHAPES = {  # LlamaConfig fields; vocab_size None = the trained tokenizer's size
    "qwen2.5-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "qwen2.5-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "tiny": {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 8,
             "num_key_value_heads": 8, "vocab_size": None, "tie_word_embeddings": False},
}
MESSAGE = "How long does the warranty cover repairs, and what is not covered?"
WORDS = ("battery router firmware warranty cable restart update charge solar grid app light fan error code "
         "home support install reset screen signal power mode night export tariff repairs covered years").split()
DOCS = {
    "warranty.txt": "The warranty covers two years of repairs from the date of purchase. Water damage and drops are not covered.",
    "reset.md": "# Reset\n\nHold the reset button for ten seconds to restore factory settings. The light blinks twice.",
    "router.md": "# Router\n\nIf the router loses signal, check the cable, restart it and update the firmware.",
    "solar.txt": "The solar app shows export to the grid per hour. Night mode lowers the screen brightness.",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-1.5b", choices=tuple(SHAPES))
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per answer (min = max, so all do the same work)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--target", type=float, default=1.15, help="maximum compare/base peak ratio")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    return parser.parse_args()


# Parent: build everything once, then measure each case in a fresh process -------------------------------
def build_model(path: Path, shape: dict) -> Path:
    """A random-init Llama of `shape` with a BPE tokenizer trained on the benchmark's words (ids beyond it go unused)."""
    from studio.core.tiny_model import random_llama, train_tokenizer

    texts = [" ".join(random.Random(s).choice(WORDS) for _ in range(300)) for s in range(50)] + list(DOCS.values())
    tokenizer = train_tokenizer(texts, vocab_size=1000)
    model = random_llama(tokenizer, max_position_embeddings=4096, **{k: v for k, v in shape.items() if v is not None})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def prepare(root: Path, shape: dict) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.core.rag.service import RagService
    from studio.storage.workspace import Workspace

    model_dir = build_model(root / "model", shape)
    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(root / "adapter")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    rag = RagService(Workspace(root / "ws"))
    rag.create("support")
    *_, report = rag.ingest("support", [docs])
    assert not report.failed, report.failed


def measure(root: Path, case: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--root", str(root), "--tokens", str(args.tokens), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# Child: one measurement ------------------------------------------------------------------------------------
class PeakRss:
    """Samples this process's RSS in a daemon thread; `peak` is the highest value seen."""

    def __init__(self, every_s: float = 0.002) -> None:
        import psutil

        self.process, self.every_s, self.peak = psutil.Process(), every_s, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def child(case: str, root: Path, tokens: int, device: str) -> dict:
    with PeakRss() as rss:
        import torch

        from studio.config import GenerationParams, LoadParams
        from studio.core.models import ModelManager, model_memory_bytes

        manager = ModelManager()
        manager.load(LoadParams(model=str(root / "model"), device=device))
        with manager.use(None) as (model, _tok):
            model.generation_config.min_new_tokens = tokens
        params = GenerationParams(temperature=0.0, max_new_tokens=tokens)
        started = time.perf_counter()
        texts = answer(case, manager, root, params)
        elapsed = time.perf_counter() - started
        with manager.use(None) as (model, _tok):
            weights = model_memory_bytes(model)
    cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"case": case, "rss_peak": rss.peak, "cuda_max_allocated": cuda, "weights": weights, "answers": len(texts), "seconds": elapsed,
            "device": manager.info().device}


def answer(case: str, manager: object, root: Path, params: object) -> list[str]:
    from studio.core.compare import compare_stream
    from studio.core.evaluation.runner import Variant
    from studio.core.generation import generate
    from studio.core.rag.params import RetrievalParams
    from studio.core.rag.service import RagService
    from studio.storage.workspace import Workspace

    if case == "base":
        return [generate(manager, [{"role": "user", "content": MESSAGE}], params).text]  # type: ignore[arg-type]
    rag = RagService(Workspace(root / "ws"), manager)  # type: ignore[arg-type]
    retrieval = RetrievalParams(top_k=3)
    if case == "base+rag":
        events = list(rag.answer("support", MESSAGE, retrieval, generation=params))  # type: ignore[arg-type]
        return [events[-1].text]
    manager.attach_adapter(root / "adapter", "tuned")  # type: ignore[attr-defined]
    panes = [Variant("base"), Variant("base+rag", knowledge_base="support"), Variant("tuned", "tuned"),
             Variant("tuned+rag", "tuned", None, "support")]
    if case == "compare-norag":
        panes = [Variant("base"), Variant("tuned", "tuned"), Variant("base 2"), Variant("tuned 2", "tuned")]
    done = [e.payload.text for e in compare_stream(manager, rag, panes, None, MESSAGE, params, retrieval=retrieval)  # type: ignore[arg-type]
            if e.kind == "done"]
    assert len(done) == 4
    return done


def main() -> int:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.root), args.tokens, args.device)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare(root, SHAPES[args.shape])
        results = {case: measure(root, case, args) for case in CASES}
    mib = 2**20
    shape = SHAPES[args.shape]
    print(f"model: {args.shape} shape (hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers), weights {results['base']['weights'] / mib:,.0f} MiB "
          f"on {results['base']['device']}; {args.tokens} new tokens per answer")
    print(f"{'case':<14} {'RSS peak':>10} {'CUDA max':>10} {'answers':>8} {'seconds':>8}")
    for case, r in results.items():
        cuda = f"{r['cuda_max_allocated'] / mib:,.0f} MiB" if r["cuda_max_allocated"] is not None else "-"
        print(f"{case:<14} {r['rss_peak'] / mib:>6,.0f} MiB {cuda:>10} "
              f"{r['answers']:>8} {r['seconds']:>8.2f}")
    base, comp, rag = results["base"], results["compare"], results["base+rag"]
    ratio = comp["rss_peak"] / base["rss_peak"]
    print(f"RSS peak compare/base: {ratio:.3f} (target <= {args.target}); compare/base+rag: "
          f"{comp['rss_peak'] / rag['rss_peak']:.3f}; compare-norag/base: "
          f"{results['compare-norag']['rss_peak'] / base['rss_peak']:.3f}")
    worst = ratio
    if base["cuda_max_allocated"]:
        cuda_ratio = comp["cuda_max_allocated"] / base["cuda_max_allocated"]
        print(f"CUDA max allocated compare/base: {cuda_ratio:.3f}")
        worst = max(worst, cuda_ratio)
    return 0 if worst <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
