"""`studio rag ...` in-process: ingest, query (search and --answer), eval, list/docs/delete, and every user error.

One knowledge base is ingested per module (the embedder loads once per process); tests that change
a knowledge base use their own collection or workspace.
"""

from __future__ import annotations

import json
import signal
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from studio import cli
from studio.core.rag.answer import NO_CONTEXT

DOCS = {
    "reset.md": "# Reset\n\nHold the reset button for ten seconds to restore the factory settings.\n\n"
                "## Lights\n\nA blinking orange light means the device is updating its firmware.\n",
    "warranty.txt": "The warranty covers two years of repairs for manufacturing defects. "
                    "Water damage and dropped devices are not covered by the warranty.\n",
    "billing.html": "<html><body><h1>Billing</h1><p>Invoices are sent by email on the first day of each month.</p>"
                    "<h2>Refunds</h2><p>Refunds reach your card within five working days.</p></body></html>",
}
KB = "manual"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A workspace with knowledge base `manual` built from DOCS, and what the first ingest printed."""
    root = tmp_path_factory.mktemp("cli-rag")
    docs = write_docs(root / "docs", DOCS)
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["rag", "ingest", str(docs), "--collection", KB, "--create", "--chunk-tokens", "64",
                         "--overlap-tokens", "8", "--workspace", str(root / "ws")])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "ws": str(root / "ws"), "docs": docs, "root": root}


def chunk_count(ws: str, capsys) -> int:
    code, out, _ = run(["rag", "list", "--workspace", ws], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith(KB + " "))
    return int(row.split()[-1])


def test_ingest_creates_the_knowledge_base_and_adds_every_file(ingested: dict) -> None:
    assert ingested["code"] == 0, ingested["err"]
    out = ingested["out"]
    assert f"Created knowledge base '{KB}'" in out and "chunk_tokens=64" in out and "overlap_tokens=8" in out
    for name in DOCS:
        assert any(line.startswith("added") and name in line for line in out.splitlines()), out
    assert "3 added" in out.splitlines()[-1], "the report summary ends the output"
    assert "[3/3] written" in ingested["err"] and "embedded so far" in ingested["err"], "progress goes to stderr"


def test_reingest_is_all_unchanged_with_the_same_chunks(ingested: dict, capsys) -> None:
    before = chunk_count(ingested["ws"], capsys)
    code, out, _ = run(["rag", "ingest", str(ingested["docs"]), "-c", KB, "--workspace", ingested["ws"]], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[:-1]] == ["unchanged"] * 3
    assert "3 unchanged" in out and "0 chunks embedded" in out
    assert chunk_count(ingested["ws"], capsys) == before > 0


def test_bad_files_fail_by_name_while_the_rest_land(ingested: dict, capsys) -> None:
    folder = write_docs(ingested["root"] / "mixed", {"good.md": "# Good\n\nThis file lands.\n", "notes.xyz": "what",
                                                      "empty.txt": ""})
    code, out, _ = run(["rag", "ingest", str(folder), "-c", "mixed", "--create", "--workspace", ingested["ws"]], capsys)
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("failed") and "notes.xyz" in line and "unsupported" in line for line in lines), out
    assert any(line.startswith("failed") and "empty.txt" in line and "empty" in line for line in lines), out
    assert any(line.startswith("added") and "good.md" in line for line in lines), out
    code, out, _ = run(["rag", "docs", "-c", "mixed", "--workspace", ingested["ws"]], capsys)
    assert code == 0 and "good.md" in out and "notes.xyz" not in out and "empty.txt" not in out


def test_query_ranks_the_right_document_first(ingested: dict, capsys) -> None:
    code, out, _ = run(["rag", "query", "how long does the warranty last", "-c", KB, "--workspace", ingested["ws"]], capsys)
    assert code == 0
    assert " 1. warranty.txt" in out and "similarity" in out and "dense" in out and "bm25" in out and "fused" in out
    assert "The warranty covers two years" in out
    code, out, _ = run(["rag", "query", "when are invoices sent", "-c", KB, "--mode", "bm25", "--top-k", "2",
                        "--workspace", ingested["ws"], "--json"], capsys)
    result = json.loads(out)
    best = result["chunks"][0]
    assert code == 0 and best["chunk"]["source"] == "billing.html" and best["chunk"]["heading_path"] == ["Billing"]
    assert best["rank"] == best["bm25_rank"] == 1 and best["dense_rank"] is None
    assert len(result["chunks"]) <= 2 and result["params"]["mode"] == "bm25"


def test_query_filters_by_document_and_file_type(ingested: dict, capsys) -> None:
    code, out, _ = run(["rag", "query", "warranty", "-c", KB, "--document", "reset.md", "--json",
                        "--workspace", ingested["ws"]], capsys)
    assert code == 0 and {c["chunk"]["source"] for c in json.loads(out)["chunks"]} == {"reset.md"}
    code, out, _ = run(["rag", "query", "warranty", "-c", KB, "--file-type", "html", "--json",
                        "--workspace", ingested["ws"]], capsys)
    assert code == 0 and {c["chunk"]["source"] for c in json.loads(out)["chunks"]} == {"billing.html"}


def test_query_answer_streams_and_lists_its_sources(ingested: dict, tiny_model_dir: Path, capsys) -> None:
    code, out, err = run(["rag", "query", "How long is the warranty?", "-c", KB, "--answer", "--model", str(tiny_model_dir),
                          "--max-new-tokens", "12", "--temperature", "0", "--workspace", ingested["ws"]], capsys)
    assert code == 0, err
    answer, _, sources = out.partition("\n\n")
    assert answer.strip(), "the streamed answer comes first"
    assert sources.startswith("Sources:\n[") or sources.startswith("The answer cited none of the passages it was given:\n[1] ")
    assert "search of 'manual'" in err and "tok/s" in err
    code, out, _ = run(["rag", "query", "How long is the warranty?", "-c", KB, "--answer", "--model", str(tiny_model_dir),
                        "--max-new-tokens", "4", "--json", "--workspace", ingested["ws"]], capsys)
    result = json.loads(out)
    assert code == 0 and result["answer"] and result["passages"] >= 1 and result["stats"]["completion_tokens"] >= 1
    assert result["chunks"][0]["chunk"]["source"] == "warranty.txt" and isinstance(result["citations"], list)


def test_nothing_above_the_threshold_says_so(ingested: dict, tiny_model_dir: Path, capsys) -> None:
    base = ["rag", "query", "How long is the warranty?", "-c", KB, "--min-similarity", "0.99", "--workspace", ingested["ws"]]
    code, out, err = run(base + ["--answer", "--model", str(tiny_model_dir)], capsys)
    assert code == 0 and out.strip() == NO_CONTEXT and "tok/s" not in err
    code, out, _ = run(base, capsys)
    assert code == 0 and "No chunk matched above the --min-similarity threshold." in out


def write_eval_set(folder: Path) -> Path:
    """BEIR queries and qrels whose corpus ids are the file names of DOCS."""
    folder.mkdir(parents=True, exist_ok=True)
    queries = [{"_id": "1", "text": "how long does the warranty last"}, {"_id": "2", "text": "when do invoices arrive"},
               {"_id": "3", "text": "what does the orange light mean"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\twarranty.txt\t1\n2\tbilling.html\t1\n"
                                               "3\treset.md\t1\n")
    return folder


@pytest.mark.slow  # ranx compiles its numba kernels on first use in a process
def test_eval_prints_every_metric_for_every_retriever(ingested: dict, capsys) -> None:
    data = write_eval_set(ingested["root"] / "eval")
    code, out, err = run(["rag", "eval", "-c", KB, "--queries", str(data / "queries.jsonl"),
                          "--qrels", str(data / "qrels" / "test.tsv"), "--workspace", ingested["ws"]], capsys)
    assert code == 0, err
    header, *rows = out.splitlines()[1:]
    assert header.split() == ["retriever", "ndcg@10", "recall@10", "recall@100", "mrr@10"]
    assert [row.split()[0] for row in rows] == ["dense", "bm25", "hybrid"]
    assert "3 queries" in out  # (progress on stderr is polled every 0.25 s: a fast run may show none)
    code, out, _ = run(["rag", "eval", "-c", KB, "--beir", str(data), "--json", "--workspace", ingested["ws"]], capsys)
    metrics = json.loads(out)["metrics"]
    assert code == 0 and set(metrics) == {"dense", "bm25", "hybrid"}
    assert metrics["hybrid"]["recall@10"] == 1.0, "each query's document is among three"


def test_list_docs_and_delete(tmp_path: Path, capsys) -> None:
    ws = str(tmp_path / "ws")
    code, out, _ = run(["rag", "list", "--workspace", ws], capsys)
    assert code == 0 and "No knowledge bases" in out
    docs = write_docs(tmp_path / "docs", {k: DOCS[k] for k in ("reset.md", "warranty.txt")})
    assert run(["rag", "ingest", str(docs), "-c", "kb1", "--create", "--workspace", ws], capsys)[0] == 0
    code, out, _ = run(["--workspace", ws, "rag", "list"], capsys)  # the workspace flag also works before `rag`
    assert code == 0 and out.splitlines()[1].split()[:3] == ["kb1", "sentence-transformers/all-MiniLM-L6-v2", "2"]
    code, out, _ = run(["rag", "docs", "-c", "kb1", "--workspace", ws], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["document", "type", "chunks", "pages"] and "warranty.txt  txt" in out
    code, out, _ = run(["rag", "delete", "-c", "kb1", "--document", "reset.md", "--workspace", ws], capsys)
    assert code == 0 and "Removed 'reset.md'" in out
    assert "reset.md" not in run(["rag", "docs", "-c", "kb1", "--workspace", ws], capsys)[1]
    code, out, _ = run(["rag", "delete", "-c", "kb1", "--workspace", ws], capsys)
    assert code == 0 and "Deleted knowledge base 'kb1' (1 document" in out
    assert "No knowledge bases" in run(["rag", "list", "--workspace", ws], capsys)[1]


def test_ctrl_c_stops_ingestion_cleanly(ingested: dict, capsys, monkeypatch) -> None:
    from studio.core.rag import ingest

    real = ingest.load_document

    def interrupted(*args, **kwargs):  # the user presses Ctrl-C while the first file is read
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "load_document", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    code, out, err = run(["rag", "ingest", str(ingested["docs"]), "-c", "stopped", "--create",
                          "--workspace", ingested["ws"]], capsys)
    assert code == 130 and "[cancelled]" in err
    assert "3 cancelled" in out and "0 chunks embedded" in out
    assert signal.getsignal(signal.SIGINT) is handler, "the Ctrl-C handler is put back"
    assert "no documents yet" in run(["rag", "docs", "-c", "stopped", "--workspace", ingested["ws"]], capsys)[1]


@pytest.mark.parametrize("argv, expected", [
    (["query", "hi", "-c", "nope"], "no knowledge base named 'nope'"),
    (["query", "hi", "-c", KB, "--top-k", "0"], "--top-k: `top_k` should be a number between 1 and 1000, got 0"),
    (["query", "hi", "-c", KB, "--document", "missing.pdf"], "no document named 'missing.pdf'"),
    (["query", "hi", "-c", KB, "--answer"], "No model to answer with"),
    (["query", "hi", "-c", KB, "--mode", "hybrid", "--dense-weight", "0", "--bm25-weight", "0"], "Both fusion weights are 0"),
    (["eval", "-c", KB, "--queries", "{root}/eval-missing/queries.jsonl", "--qrels", "{root}/eval-missing/none.tsv"],
     "does not exist"),
    (["eval", "-c", KB], "--queries QUERIES.jsonl --qrels QRELS.tsv"),
    (["eval", "-c", KB, "--beir", "{root}"], "No qrels for split 'test'"),
    (["ingest", "{root}/docs", "-c", "typo"], "add --create"),
    (["ingest", "{root}/docs", "-c", KB, "--chunk-tokens", "128"], "was created with chunk_tokens=64"),
    (["ingest", "{root}/docs", "-c", "new-kb", "--create", "--chunk-tokens", "64", "--overlap-tokens", "64"],
     "`overlap_tokens` (64) should be smaller than `chunk_tokens` (64)"),
    (["ingest", "{root}/no-such-folder", "-c", KB], "does not exist"),
    (["ingest", "-c", KB], "Give either files and folders to ingest or --beir DIR"),
    (["ingest", "{root}/docs", "-c", "x", "--create"], "Knowledge base name 'x' is not usable"),
    (["delete", "-c", KB, "--document", "missing.pdf"], "no document named 'missing.pdf'"),
])
def test_user_errors_exit_2_with_a_fix(argv: list[str], expected: str, ingested: dict, capsys, monkeypatch) -> None:
    monkeypatch.delenv("STUDIO_MODEL", raising=False)
    root = str(ingested["root"])
    if "eval-missing" in " ".join(argv):
        write_eval_set(ingested["root"] / "eval-missing")
    code, out, err = run(["rag", *[a.replace("{root}", root) for a in argv], "--workspace", ingested["ws"]], capsys)
    assert code == 2, (out, err)
    assert expected in err and "\nfix: " in err, err
    assert "new-kb" not in run(["rag", "list", "--workspace", ingested["ws"]], capsys)[1], "a refused create makes nothing"
