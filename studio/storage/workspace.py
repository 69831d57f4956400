"""The workspace folder: the only code that knows where the studio keeps what it writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import StudioError

_NAME = re.compile(r"^[\w][\w .()+-]{0,63}$")
RECENT_LIMIT = 10


def check_name(name: str, what: str) -> str:
    """A user-chosen name that is safe as a file name; raises StudioError otherwise."""
    name = (name or "").strip()
    if not _NAME.match(name) or ".." in name:
        raise StudioError(
            f"{what} name {name!r} is not usable.",
            "use 1-64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.",
        )
    return name


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        for sub in (self.adapters_dir, self.runs_dir, self.presets_dir, self.indexes_dir,
                    self.logs_dir, self.exports_dir, self.models_dir):
            sub.mkdir(parents=True, exist_ok=True)

    # Folder layout -------------------------------------------------------------------------
    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    @property
    def evals_dir(self) -> Path:
        return self.root / "evals"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def presets_dir(self) -> Path:
        return self.root / "presets"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def models_dir(self) -> Path:
        """Local model folders the user dropped in (offered in the model picker)."""
        return self.root / "models"

    @property
    def recent_file(self) -> Path:
        return self.root / "recent_models.json"

    # Recently used models ------------------------------------------------------------------
    def recent_models(self) -> list[str]:
        try:
            data = json.loads(self.recent_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # a missing or damaged list is just an empty history
        if not isinstance(data, list):
            return []
        return [m for m in data if isinstance(m, str)][:RECENT_LIMIT]

    def remember_model(self, model: str) -> None:
        """Put `model` first in the recent list (once), keeping the newest RECENT_LIMIT entries."""
        model = (model or "").strip()
        if not model:
            return
        models = [model] + [m for m in self.recent_models() if m != model]
        write_atomic(self.recent_file, json.dumps(models[:RECENT_LIMIT], indent=1))

    def local_models(self) -> list[Path]:
        """Model folders (holding a config.json) directly under the workspace's models/."""
        return sorted(p for p in self.models_dir.iterdir() if (p / "config.json").is_file())

    # Adapters --------------------------------------------------------------------------------
    def adapters(self) -> list[Path]:
        """Adapter folders (peft format) anywhere under adapters/ or inside runs/*/."""
        found = {p.parent for p in self.adapters_dir.rglob("adapter_config.json")}
        found |= {p.parent for p in self.runs_dir.glob("*/adapter/adapter_config.json")}
        return sorted(found)

    # Presets -----------------------------------------------------------------------------------
    def _preset_path(self, name: str) -> Path:
        return self.presets_dir / f"{check_name(name, 'Preset')}.json"

    def list_presets(self) -> list[str]:
        # Skips stray files (editor backups, ".name.json" leftovers) that no preset name could produce.
        return sorted(p.stem for p in self.presets_dir.glob("*.json") if _NAME.match(p.stem) and ".." not in p.stem)

    def save_preset(self, name: str, data: dict[str, Any]) -> Path:
        path = self._preset_path(name)
        write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
        return path

    def load_preset(self, name: str) -> dict[str, Any]:
        path = self._preset_path(name)
        if not path.is_file():
            raise StudioError(f"No preset named {name!r} in {self.presets_dir}.", "pick one from the list or save it first.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise StudioError(f"Preset file {path} is not valid JSON ({err}).", "delete it and save the preset again.") from None
        if not isinstance(data, dict):
            raise StudioError(f"Preset file {path} should hold a JSON object.", "delete it and save the preset again.")
        return data

    def delete_preset(self, name: str) -> None:
        self._preset_path(name).unlink(missing_ok=True)
