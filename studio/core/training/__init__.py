"""Fine-tuning: parameters, the worker process, its run folder, and the service the UI and CLI drive.

params     TrainParams (how) and RunConfig (what; RUN.yaml)
runs       the run folder: status.json, metrics.jsonl, checkpoints, adapter; Runs lists and scans them
worker     the training process (`python -m studio.core.training.worker --config RUN.yaml [--resume]`)
setup      data, model, peft and TrainingArguments for a run
callbacks  the Trainer callback (metrics, STOP) and the padding collator
card       the adapter's README.md model card
estimate   trainable parameters and memory, before launching
service    TrainingService: start / stop / resume / delete / status / metrics / runs
"""
