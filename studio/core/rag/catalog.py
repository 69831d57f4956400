"""The local catalog of one knowledge base: which chunks exist, from which document, and their BM25 terms.

It lives in the workspace next to the BM25 index (SQLite, one file per knowledge base) and mirrors
the Chroma collection, which stays the source of truth: when the two disagree (a new machine, a
Chroma server shared with another studio, a crash between the two writes), the catalog is rebuilt
from the collection. It makes the documents table, per-file change detection and BM25 rebuilds cheap
without reading every chunk back from Chroma.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, file_type TEXT NOT NULL, page INTEGER,
    file_hash TEXT NOT NULL, tokens TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class CatalogRow:
    id: str
    source: str
    file_type: str
    page: int | None
    file_hash: str
    tokens: str  # BM25 terms joined by spaces


@dataclass
class DocumentInfo:
    """One row of a knowledge base's documents table."""

    name: str
    file_type: str
    chunks: int
    pages: int | None  # highest page number with text (PDFs); None for other types
    file_hash: str


class Catalog:
    """SQLite mirror of a collection's chunk list. Thread-safe; every change bumps `generation`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        # Identifies this database file, so a BM25 index built from a deleted catalog is never reused.
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)", (uuid.uuid4().hex,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("INSERT INTO meta VALUES ('generation', ?) ON CONFLICT(key) DO UPDATE "
                                 "SET value = CAST(value AS INTEGER) + 1", ("1",))
                # Kept in meta so the per-query consistency check does not scan the table.
                self._db.execute("INSERT INTO meta VALUES ('count', (SELECT COUNT(*) FROM chunks)) "
                                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # Meta -------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str = "") -> str:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                             (key, value))

    @property
    def generation(self) -> int:
        """Bumped by every change; the BM25 index records the generation it was built from."""
        return int(self.get_meta("generation", "0"))

    @property
    def version(self) -> str:
        """This catalog file and its generation: what a BM25 index must have been built from to be reused."""
        return f"{self.get_meta('instance')}:{self.generation}"

    # Reads ------------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.get_meta("count", "0"))

    def source_ids(self, source: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE source = ?", (source,))}

    def source_hash(self, source: str) -> str | None:
        """The file hash the document was last ingested from (None if it is not in the catalog)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(file_hash), MAX(file_hash), COUNT(*) FROM chunks WHERE source = ?",
                                   (source,)).fetchone()
        return row[0] if row[2] and row[0] == row[1] else None

    def documents(self) -> list[DocumentInfo]:
        with self._lock:
            rows = self._db.execute("SELECT source, MIN(file_type), COUNT(*), MAX(page), MIN(file_hash) FROM chunks "
                                    "GROUP BY source ORDER BY source").fetchall()
        return [DocumentInfo(name=r[0], file_type=r[1], chunks=r[2], pages=r[3], file_hash=r[4]) for r in rows]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(id, source, file_type, tokens) of every chunk, in a stable order."""
        with self._lock:
            return self._db.execute("SELECT id, source, file_type, tokens FROM chunks ORDER BY rowid").fetchall()

    # Writes -------------------------------------------------------------------------------------------
    def apply(self, add: Iterable[CatalogRow] = (), remove: Iterable[str] = (),
              rehash: tuple[str, str] | None = None) -> None:
        """Add rows, remove ids and (rehash=(source, file_hash)) stamp a document's new file hash, atomically."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.id, r.source, r.file_type, r.page, r.file_hash, r.tokens) for r in add])
            db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in remove])
            if rehash:
                db.execute("UPDATE chunks SET file_hash = ? WHERE source = ?", (rehash[1], rehash[0]))

    def remove_source(self, source: str) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM chunks WHERE source = ?", (source,)).rowcount

    def reset(self, rows: Iterable[CatalogRow], collection_id: str) -> None:
        """Replace everything with `rows` (a resync from the collection)."""
        with self._transaction() as db:
            db.execute("DELETE FROM chunks")
            db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.id, r.source, r.file_type, r.page, r.file_hash, r.tokens) for r in rows])
            db.execute("INSERT INTO meta VALUES ('collection_id', ?) ON CONFLICT(key) DO UPDATE "
                       "SET value = excluded.value", (collection_id,))
