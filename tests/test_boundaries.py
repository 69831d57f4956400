"""Architecture rules a test can check: the UI never imports the heavy ML stack, core never imports gradio."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "chromadb", "sentence_transformers", "bitsandbytes")
UI_MODULES = sorted(f"studio.ui.{p.stem}" for p in (ROOT / "studio" / "ui").glob("*.py") if p.stem != "__init__")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, anywhere in the file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_there_are_ui_modules_to_check() -> None:
    assert {"studio.ui.models_tab", "studio.ui.playground_tab"} <= set(UI_MODULES)


def test_importing_the_ui_loads_no_ml_library() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in ["studio.ui", *UI_MODULES])
            + f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing studio.ui loaded: {done.stdout.strip()}"


@pytest.mark.parametrize("path", sorted((ROOT / "studio" / "ui").rglob("*.py")), ids=lambda p: p.name)
def test_ui_source_never_imports_ml_libraries_or_core_modules_that_do(path: Path) -> None:
    # studio.core.* modules that import torch are reached only through the Services object passed in;
    # type-only imports under TYPE_CHECKING are not executed and are allowed.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    runtime_imports = imported_modules(path) - _type_checking_imports(tree)
    bad = sorted(m for m in runtime_imports if m.split(".")[0] in HEAVY
                 or m in ("studio.services", "studio.core.models", "studio.core.generation", "studio.core.runtime", "studio.core.hub"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def _type_checking_imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    names.add(inner.module)
                elif isinstance(inner, ast.Import):
                    names |= {alias.name for alias in inner.names}
    return names


def test_the_scanner_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    import torch.nn\n    from peft import PeftModel\n")
    assert {"torch.nn", "peft"} <= imported_modules(source)


CORE_MODULES = sorted(f"studio.core.{p.relative_to(ROOT / 'studio' / 'core').with_suffix('').as_posix().replace('/', '.')}"
                      for p in (ROOT / "studio" / "core").rglob("*.py") if p.stem != "__init__")


def test_importing_core_and_services_loads_no_gradio() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in [*CORE_MODULES, "studio.services"])
            + "print('gradio' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("path", sorted((ROOT / "studio" / "core").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT / "studio")))
def test_core_never_imports_gradio(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in ("gradio", "gradio_client"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
