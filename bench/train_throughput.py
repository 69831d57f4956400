"""Training throughput of the studio's worker against a plain transformers Trainer + peft script, on CPU.

    python bench/train_throughput.py [--quick] [--hidden 256] [--layers 4] [--epochs 1] [--batch 16]

Builds a random-init Llama (hidden 256, 4 layers; its BPE tokenizer trained on the data) with
`build_tiny_model`, then trains a LoRA adapter on it twice per dataset, each run in its own
subprocess (so each one's peak RSS is its own, from os.wait4), one after the other:

  studio     `python -m studio.core.training.worker --config RUN.yaml` with the studio's defaults
             (length-bucketed batches, studio.core.training.sampler, each padded to its longest example);
  reference  a plain script below (no studio code): chat template → input_ids, transformers'
             DataCollatorForSeq2Seq padding to the longest in the batch, random batches, Trainer + peft.

Same model, examples, LoRA (r 16, alpha 32, all-linear), batch 16 × accumulation 1, learning rate, cosine
schedule, seed, epochs. Batch 16 is the Training tab's default effective batch (4 × accumulation 4) in one
forward pass. How much less padding can gain is bounded by how much padding random batches hold, and
that grows with the batch: on sample_data/train.jsonl random batches of 4 are ~14% padding, so even no
padding at all could speed batch 4 up by at most 1.17x; batches of 16 are ~27% padding (the bench prints
both shares and the ceiling they allow). Both train on every token (train_on_prompt) so their labels are the same, and
neither holds out validation data. Tokens/s counts non-padding input tokens (Trainer's
num_input_tokens_seen "non_padding") between the log of the step at 10% of the run (the first steps pay
one-time costs) and the last log, in both. Final loss = the mean logged training loss of the last quarter of the steps.

Datasets: (a) synthetic chats whose examples all have the same token count → target ratio ≥ 0.95
(the studio adds no overhead); (b) sample_data/train.jsonl (varied lengths; if it is missing,
sample_data/eval.jsonl's question → reference as chats) → target ≥ 1.3 from less padding.
Exits 1 when a target is missed.

The machine's other load moves single runs a lot (2 shared cores): each side runs --repeats times,
alternating which goes first, and the per-run figures are printed next to the medians. Each run uses
one torch thread by default: with two threads on two cores, any other process stalls OpenMP's
barriers and a run became 5-10x slower at random, which no number of repeats averages out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are a helpful support assistant."
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


# The reference: plain transformers + peft, run as `train_throughput.py --reference SPEC.json` -----------------
def reference_main(spec_path: str) -> None:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback,
                              TrainingArguments, set_seed)

    spec = json.loads(Path(spec_path).read_text())
    set_seed(spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    rows = []
    for line in Path(spec["data"]).read_text(encoding="utf-8").splitlines():
        ids = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=True)["input_ids"]
        ids = list(ids)[: spec["max_length"]]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})

    class Dataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict:
            return rows[i]

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0, self.points, self.losses = 0.0, [], []

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.t0 = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.points.append((time.monotonic() - self.t0, int(state.num_input_tokens_seen)))

    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=LORA["r"], lora_alpha=LORA["alpha"],
                                             lora_dropout=LORA["dropout"], target_modules="all-linear"))
    timer = Timer()
    args = TrainingArguments(output_dir=spec["out"], num_train_epochs=spec["epochs"], per_device_train_batch_size=spec["batch"],
                             gradient_accumulation_steps=1, learning_rate=spec["lr"], lr_scheduler_type="cosine",
                             warmup_steps=0.03, logging_steps=1, save_strategy="no", seed=spec["seed"], use_cpu=True,
                             include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=True,
                             remove_unused_columns=False, optim="adamw_torch")
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    Trainer(model=model, args=args, train_dataset=Dataset(), data_collator=collator, callbacks=[timer]).train()
    print("RESULT " + json.dumps({"points": timer.points, "losses": timer.losses}))


# The studio run -------------------------------------------------------------------------------------------------
def studio_config(model: Path, data: Path, out: Path, args: argparse.Namespace, max_length: int) -> Path:
    import yaml

    config = {"model": str(model), "dataset": str(data), "val_ratio": 0.0, "name": "bench",
              "train": {"method": "lora", "lora_r": LORA["r"], "lora_alpha": LORA["alpha"], "lora_dropout": LORA["dropout"],
                        "epochs": args.epochs, "learning_rate": args.lr, "per_device_batch_size": args.batch,
                        "gradient_accumulation": 1, "logging_steps": 1, "seed": args.seed, "train_on_prompt": True,
                        "max_length": max_length, "save_steps": 100_000}}
    path = out / "RUN.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_child(command: list[str], env: dict[str, str], out: Path) -> tuple[str, float, float]:
    """(stdout, peak RSS in MiB, wall seconds) of one child process; exits when it fails. os.wait4 gives this
    child's own peak RSS (getrusage(RUSAGE_CHILDREN) would be the largest of all children so far)."""
    start = time.monotonic()
    with (out / "stdout.txt").open("w") as stdout, (out / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{command[:4]} failed ({proc.returncode}):\n{(out / 'stderr.txt').read_text()[-3000:]}")
    return (out / "stdout.txt").read_text(), usage.ru_maxrss / 1024, time.monotonic() - start


def measure(which: str, model: Path, data: Path, work: Path, args: argparse.Namespace, max_length: int) -> dict:
    out = work / which
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if which == "reference":
        spec = out / "spec.json"
        spec.write_text(json.dumps({"model": str(model), "data": str(data), "out": str(out / "ckpt"), "epochs": args.epochs,
                                    "batch": args.batch, "lr": args.lr, "seed": args.seed, "max_length": max_length}))
        stdout, rss, wall = run_child([sys.executable, str(Path(__file__).resolve()), "--reference", str(spec)], env, out)
        result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    else:
        config = studio_config(model, data, out, args, max_length)
        stdout, rss, wall = run_child([sys.executable, "-m", "studio.core.training.worker", "--config", str(config),
                                       "--workspace", str(out / "ws")], env, out)
        rows = [json.loads(line) for line in (out / "ws" / "runs" / "bench" / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r.get("loss") is not None]
        # The worker logs cumulative tokens/s since training began: tokens = rate × elapsed at each step.
        result = {"points": [(r["elapsed_s"], (r["tokens_per_s"] or 0) * r["elapsed_s"]) for r in rows],
                  "losses": [r["loss"] for r in rows]}
    losses, points = result["losses"], result["points"]
    tail = losses[-max(1, len(losses) // 4):]
    warm = points[min(len(points) - 2, max(1, len(points) // 10))]  # the first steps pay one-time costs: leave them out
    tokens_per_s = (points[-1][1] - warm[1]) / (points[-1][0] - warm[0])
    return {"tokens_per_s": tokens_per_s, "loss": sum(tail) / len(tail), "rss_mib": rss, "wall_s": wall,
            "train_s": points[-1][0],
            "steps": len(losses)}


# Data -------------------------------------------------------------------------------------------------------------
def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def equal_length_data(count: int, seed: int) -> list[dict]:
    """Chats of the same shape whose words are drawn at random: after tokenisation they are trimmed to one length."""
    rng = random.Random(seed)
    words = ["router", "battery", "invoice", "restart", "cable", "update", "warranty", "solar", "meter", "account"]
    return [chat(" ".join(rng.choice(words) for _ in range(24)) + "?", " ".join(rng.choice(words) for _ in range(40)) + ".")
            for _ in range(count)]


def varied_data(count: int) -> tuple[list[dict], str]:
    train = ROOT / "sample_data" / "train.jsonl"
    if train.is_file():
        rows = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [{"messages": r["messages"]} for r in rows][:count], "sample_data/train.jsonl"
    rows = [json.loads(line) for line in (ROOT / "sample_data" / "eval.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [chat(r["question"], r["reference"]) for r in rows][:count], "sample_data/eval.jsonl (question → reference)"


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def token_lengths(model: Path, rows: list[dict]) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]) for r in rows]


def padding_share(lengths: list[int], batch: int, seed: int, grouped: bool = False) -> float:
    """Share of the tokens in batches drawn at random (the reference), or as the studio's length-bucketed
    sampler draws them, that are padding."""
    from studio.core.training.sampler import LengthBucketSampler
    from studio.core.training.sampler import padding_share as share

    if grouped:
        return share(lengths, LengthBucketSampler(lengths, batch, seed=seed).batches())
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    return share(lengths, [order[k:k + batch] for k in range(0, len(order), batch)])


# Main -----------------------------------------------------------------------------------------------------------
def compare(name: str, model: Path, data: Path, work: Path, args: argparse.Namespace, max_length: int, target: float) -> bool:
    """Run the pair `args.repeats` times, alternating which goes first (drift in the machine's load hits both);
    tokens/s is each side's median, the ratio the median of the back-to-back ratios."""
    runs: dict[str, list[dict]] = {"studio": [], "reference": []}
    for rep in range(args.repeats):
        order = ("studio", "reference") if rep % 2 == 0 else ("reference", "studio")
        for which in order:
            runs[which].append(measure(which, model, data, work / name / str(rep), args, max_length))
    ratio = statistics.median(s["tokens_per_s"] / r["tokens_per_s"] for s, r in zip(runs["studio"], runs["reference"]))
    s, r = runs["studio"][0], runs["reference"][0]
    print(f"\n[{name}]  {s['steps']} steps each, {args.repeats} run(s) of each")
    for which in ("studio", "reference"):
        m = runs[which]
        print(f"  {which:<10} {statistics.median(x['tokens_per_s'] for x in m):9.1f} tokens/s   final loss {m[0]['loss']:.4f}"
              f"   peak RSS {max(x['rss_mib'] for x in m):7.1f} MiB   train {statistics.median(x['train_s'] for x in m):.1f}s"
              f" of {statistics.median(x['wall_s'] for x in m):.1f}s wall   (runs: "
              + ", ".join(f"{x['tokens_per_s']:.0f}" for x in m) + ")")
    print(f"  ratio studio/reference {ratio:.2f} (target >= {target})   loss difference "
          f"{100 * (s['loss'] - r['loss']) / r['loss']:+.2f}%")
    return ratio >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smaller model, one run of each (about 1 minute)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--examples", type=int, default=240, help="examples per dataset")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side per dataset")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run (see above)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="high, so that the loss moves in a short run")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.reference:
        reference_main(args.reference)
        return 0
    if args.quick:
        args.hidden, args.layers, args.examples, args.repeats = 128, 2, 200, 1
    sys.path.insert(0, str(ROOT))
    from studio.core.tiny_model import build_tiny_model

    varied, source = varied_data(args.examples)
    equal = equal_length_data(args.examples, args.seed)
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        work = Path(tmp)
        texts = [m["content"] for r in varied + equal for m in r["messages"]]
        model = build_tiny_model(work / "model", hidden_size=args.hidden, layers=args.layers, vocab_size=1024,
                                 texts=texts, seed=args.seed)
        lengths = token_lengths(model, equal)
        shortest = min(lengths)  # trim every example to one length: the reference and studio both cut at max_length
        varied_lengths = token_lengths(model, varied)
        longest = max(varied_lengths)
        print(f"model hidden {args.hidden}, {args.layers} layers; batch {args.batch}, {args.epochs} epoch(s), "
              f"{args.examples} examples per dataset, torch threads {args.threads}")
        print(f"(a) synthetic, every example {shortest} tokens (trimmed from {shortest}-{max(lengths)})")
        random_pad = padding_share(varied_lengths, args.batch, args.seed)
        grouped_pad = padding_share(varied_lengths, args.batch, args.seed, grouped=True)
        print(f"(b) {source}: {min(varied_lengths)}-{longest} tokens; batches of {args.batch} are "
              f"{100 * random_pad:.1f}% padding drawn at random, {100 * grouped_pad:.1f}% length-grouped: "
              f"less padding alone can speed up by {(1 - grouped_pad) / (1 - random_pad):.2f}x")
        ok_a = compare("a-equal", model, write_jsonl(equal, work / "equal.jsonl"), work, args, max(16, shortest), 0.95)
        ok_b = compare("b-varied", model, write_jsonl(varied, work / "varied.jsonl"), work, args,
                       (longest + 15) // 16 * 16, 1.3)
    return 0 if ok_a and ok_b else 1


if __name__ == "__main__":
    raise SystemExit(main())
