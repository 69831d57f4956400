"""Structure-aware chunking measured in the embedder's own tokens.

A chunk never crosses a section (heading or PDF page). Inside a section, paragraphs that fit are
kept whole; longer ones are split into sentences, and a sentence longer than a chunk into token
windows. Units are packed greedily up to the target size; a new chunk repeats the previous chunk's
trailing units up to the overlap budget (so overlap happens between sentences, never mid-word).

Chunk ids are derived from the source name and the chunk's content, so re-ingesting an unchanged
file produces the same ids (nothing is added) and an edited file changes only the ids of what changed.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from studio.core.rag.loaders import Document, Section
from studio.core.rag.params import IndexParams

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+(?=\S)|\n+")
HEADING_SEP = " > "


@dataclass
class Chunk:
    """One retrievable piece of a document, with everything needed to cite it."""

    id: str
    text: str  # exactly Document.text[start:end]
    source: str  # the document's name (file name)
    file_type: str
    heading_path: tuple[str, ...]
    page: int | None
    number: int  # 0-based position within its document
    start: int
    end: int
    content_hash: str
    embedder: str
    file_hash: str = ""
    path: str = ""
    title: str = ""
    tokens: int = 0

    @property
    def heading(self) -> str:
        return HEADING_SEP.join(self.heading_path)

    def embedding_text(self) -> str:
        """What is embedded and indexed for BM25: title and heading path give the chunk its context."""
        return embedding_text(self.text, self.title, self.heading_path)

    def metadata(self) -> dict[str, Any]:
        """Chroma-storable metadata (no None values, no lists)."""
        meta: dict[str, Any] = {
            "source": self.source, "file_type": self.file_type, "headings": json.dumps(list(self.heading_path)),
            "number": self.number, "start": self.start, "end": self.end, "content_hash": self.content_hash,
            "embedder": self.embedder, "file_hash": self.file_hash, "path": self.path, "title": self.title,
            "tokens": self.tokens,
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta

    @classmethod
    def from_metadata(cls, id: str, text: str, meta: dict[str, Any]) -> Chunk:
        return cls(id=id, text=text or "", source=meta.get("source", ""), file_type=meta.get("file_type", ""),
                   heading_path=tuple(json.loads(meta.get("headings") or "[]")), page=meta.get("page"),
                   number=int(meta.get("number", 0)), start=int(meta.get("start", 0)), end=int(meta.get("end", 0)),
                   content_hash=meta.get("content_hash", ""), embedder=meta.get("embedder", ""),
                   file_hash=meta.get("file_hash", ""), path=meta.get("path", ""), title=meta.get("title", ""),
                   tokens=int(meta.get("tokens", 0)))


def embedding_text(text: str, title: str = "", heading_path: tuple[str, ...] = ()) -> str:
    context = [part for part in (title, HEADING_SEP.join(heading_path)) if part]
    return "\n".join([*context, text])


def chunk_id(source: str, content_hash: str, occurrence: int) -> str:
    return hashlib.sha256(f"{source}\x00{content_hash}\x00{occurrence}".encode()).hexdigest()[:32]


class TokenCounter:
    """Token positions of one text under the embedder's tokenizer, for counting any span in O(log n)."""

    def __init__(self, tokenizer: Any, text: str) -> None:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        self.starts = [s for s, _ in offsets]
        self.ends = [e for _, e in offsets]

    def count(self, start: int, end: int) -> int:
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def windows(self, start: int, end: int, size: int) -> list[tuple[int, int]]:
        """Split [start, end) into spans of at most `size` tokens, cut between tokens."""
        first, last = bisect.bisect_left(self.starts, start), bisect.bisect_left(self.starts, end)
        spans = []
        for i in range(first, last, size):
            j = min(i + size, last) - 1
            spans.append((self.starts[i] if i > first else start, self.ends[j] if j < last - 1 else end))
        return spans or [(start, end)]


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches of `pattern`, as absolute offsets."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        out.append((pos, match.start()))
        pos = match.end()
    out.append((pos, end))
    return [(a, b) for a, b in out if text[a:b].strip()]


def _units(text: str, counter: TokenCounter, budget: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of paragraphs that fit, else their sentences, else token windows."""
    units = []
    for p_start, p_end in _spans(_PARAGRAPH, text, 0, len(text)):
        n = counter.count(p_start, p_end)
        if n <= budget:
            units.append((p_start, p_end, n))
            continue
        for s_start, s_end in _spans(_SENTENCE, text, p_start, p_end):
            n = counter.count(s_start, s_end)
            if n <= budget:
                units.append((s_start, s_end, n))
            else:
                units.extend((a, b, counter.count(a, b)) for a, b in counter.windows(s_start, s_end, budget))
    return units


def _pack(units: list[tuple[int, int, int]], budget: int, overlap: int) -> list[tuple[int, int, int]]:
    """Greedily pack units into (start, end, tokens) chunks, repeating trailing units up to `overlap`."""
    chunks, current = [], []
    for unit in units:
        if current and sum(u[2] for u in current) + unit[2] > budget:
            chunks.append(current)
            tail: list[tuple[int, int, int]] = []
            for prev in reversed(current):
                if sum(u[2] for u in tail) + prev[2] > overlap or len(tail) + 1 == len(current):
                    break
                tail.insert(0, prev)
            current = tail if sum(u[2] for u in tail) + unit[2] <= budget else []
        current.append(unit)
    if current:
        chunks.append(current)
    return [(c[0][0], c[-1][1], sum(u[2] for u in c)) for c in chunks]


def chunk_document(doc: Document, tokenizer: Any, params: IndexParams, embedder: str) -> list[Chunk]:
    """Cut `doc` into chunks of at most `params.chunk_tokens` embedder tokens (title/heading prefix included)."""
    chunks: list[Chunk] = []
    seen: Counter[str] = Counter()
    for section in doc.sections:
        for start, end, tokens in _section_spans(doc, section, tokenizer, params):
            text = doc.text[start:end]
            digest = hashlib.sha256(embedding_text(text, doc.title, section.heading_path).encode()).hexdigest()[:32]
            occurrence = seen[digest]
            seen[digest] += 1
            chunks.append(Chunk(id=chunk_id(doc.name, digest, occurrence), text=text, source=doc.name,
                                file_type=doc.file_type, heading_path=section.heading_path, page=section.page,
                                number=len(chunks), start=start, end=end, content_hash=digest, embedder=embedder,
                                file_hash=doc.file_hash, path=doc.path, title=doc.title, tokens=tokens))
    return chunks


def _section_spans(doc: Document, section: Section, tokenizer: Any, params: IndexParams) -> list[tuple[int, int, int]]:
    prefix = embedding_text("", doc.title, section.heading_path)
    prefix_tokens = len(tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"]) if prefix else 0
    # A long heading path must not squeeze the body to nothing: keep at least half the target.
    budget = max(params.chunk_tokens - prefix_tokens, params.chunk_tokens // 2)
    overlap = min(params.overlap_tokens, budget // 2)
    counter = TokenCounter(tokenizer, section.text)
    spans = _pack(_units(section.text, counter, budget), budget, overlap)
    return [(section.start + a, section.start + b, n + prefix_tokens) for a, b, n in spans]
