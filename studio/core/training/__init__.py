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

# Nothing imported here loads torch: the studio builds TrainingService at start-up and the UI reads TrainParams.
# The worker is not imported: `python -m studio.core.training.worker` must find it not yet loaded.
from studio.core.training.estimate import MemoryEstimate, ParamCount, count_parameters, estimate_memory, estimate_run
from studio.core.training.params import RunConfig, TrainParams
from studio.storage.runs import RunDir, Runs, RunStatus
from studio.core.training.service import RunInfo, TrainingService

__all__ = [
    "MemoryEstimate", "ParamCount", "RunConfig", "RunDir", "RunInfo", "RunStatus", "Runs", "TrainParams", "TrainingService",
    "count_parameters", "estimate_memory", "estimate_run",
]
