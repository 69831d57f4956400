"""Peak memory of a 4-pane compare against one answer from the base alone, on the same model.

    python bench/compare_memory.py [--hidden 512] [--layers 8] [--tokens 64] [--device auto] [--target 1.15]

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
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per answer (min = max, so all do the same work)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--target", type=float, default=1.15, help="maximum compare/base peak ratio")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    return parser.parse_args()


# Parent: build everything once, then measure each case in a fresh process -------------------------------
def prepare(root: Path, hidden: int, layers: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.core.rag.service import RagService
    from studio.core.tiny_model import build_tiny_model
    from studio.storage.workspace import Workspace

    texts = [" ".join(random.Random(s).choice(WORDS) for _ in range(300)) for s in range(50)] + list(DOCS.values())
    model_dir = build_tiny_model(root / "model", hidden_size=hidden, layers=layers, heads=8, vocab_size=1000, texts=texts)
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
        prepare(root, args.hidden, args.layers)
        results = {case: measure(root, case, args) for case in CASES}
    mib = 2**20
    print(f"model: hidden {args.hidden}, {args.layers} layers, weights {results['base']['weights'] / mib:,.0f} MiB "
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
