"""Server mode: a real local Chroma server; BM25 files stay in the workspace, keyed by server and collection."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from studio.core.rag import bm25 as bm25_module
from studio.core.rag.index import KnowledgeBases
from studio.core.rag.ingest import ingest
from studio.core.rag.retrieval import search
from studio.storage.workspace import Workspace

CHROMA = Path(sys.executable).parent / "chroma"


@pytest.fixture
def chroma_url(tmp_path: Path):
    if not CHROMA.exists():
        pytest.skip("the chroma command (chromadb's server) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(CHROMA), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("the Chroma server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_server_mode_keeps_bm25_locally_and_rebuilds_it_when_missing(chroma_url: str, tmp_path: Path) -> None:
    kbs = KnowledgeBases(Workspace(tmp_path / "ws"), chroma_url=chroma_url)
    kbs.create("manuals")
    (tmp_path / "warranty.txt").write_text("The warranty covers two years. Water damage is not covered.")
    (tmp_path / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds.")
    *_, report = ingest(kbs, "manuals", [tmp_path / "warranty.txt", tmp_path / "reset.md"])
    assert [f.status for f in report.files] == ["added", "added"]
    folder = kbs.bm25_root / "manuals"
    assert folder.parent.name == f"http_127_0_0_1_{chroma_url.rsplit(':', 1)[1]}" and (folder / "state.json").is_file()
    hit = search(kbs, "manuals", "water damage").chunks[0]
    assert hit.chunk.source == "warranty.txt" and hit.dense_rank == 1 and hit.bm25_rank == 1

    bm25_module._memory.clear()
    shutil.rmtree(kbs.bm25_root)  # another machine, same server: nothing local yet
    elsewhere = KnowledgeBases(Workspace(tmp_path / "other-ws"), chroma_url=chroma_url)
    assert [d.name for d in elsewhere.documents("manuals")] == ["reset.md", "warranty.txt"]
    hit = search(elsewhere, "manuals", "reset button").chunks[0]
    assert hit.chunk.source == "reset.md" and hit.bm25_rank == 1
