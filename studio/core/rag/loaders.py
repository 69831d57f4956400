"""Read PDF, DOCX, Markdown, HTML and plain-text files into a `Document` of sections.

A section is a run of text under one heading path on one page; its `start` is the character offset
in `Document.text`, so every chunk cut from it can point back at exactly where it came from. Every
problem with one file raises `FileError` naming the file and what is wrong with it, so a batch can
report it and move on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import StudioError

SUFFIXES = {".pdf": "pdf", ".docx": "docx", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".txt": "txt"}
FILE_TYPES = ("pdf", "docx", "md", "html", "txt")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# Control characters that never occur in real text (tab, newline, form feed and CR excluded).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class FileError(StudioError):
    """One input file could not be read; `file` names it."""

    def __init__(self, file: str, message: str, fix: str | None = None):
        self.file = file
        super().__init__(f"{file}: {message}", fix)


@dataclass
class Section:
    heading_path: tuple[str, ...]
    page: int | None  # 1-based, PDFs only
    text: str
    start: int  # offset of `text` in Document.text

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class Document:
    name: str  # the source key: re-ingesting a file of the same name replaces it
    file_type: str
    text: str
    sections: list[Section]
    path: str = ""
    title: str = ""  # prepended to every chunk's embedded text (e.g. a paper title)
    file_hash: str = ""
    pages: int | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. a fallback encoding)


class _Builder:
    """Concatenates section texts with blank lines, recording where each one starts."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.sections: list[Section] = []
        self.length = 0

    def add(self, text: str, heading_path: tuple[str, ...] = (), page: int | None = None) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.sections.append(Section(heading_path, page, text, self.length))
        self.parts.append(text)
        self.length += len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def file_type_of(path: Path) -> str:
    """'pdf', 'docx', 'md', 'html' or 'txt'; raises FileError for anything else."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        supported = ", ".join(SUFFIXES)
        raise FileError(path.name, f"unsupported file type {path.suffix or '(no extension)'!r}.",
                        f"convert it to one of the supported types: {supported}.")
    return kind


def load_document(path: str | Path, max_bytes: int = 50 * 1024 * 1024) -> Document:
    """Read one file into a Document. Raises FileError (naming the file) for anything it cannot read."""
    path = Path(path)
    kind = file_type_of(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise FileError(path.name, f"cannot be opened ({err.strerror or err}).", "check that the file exists and is readable.") from None
    if size > max_bytes:
        raise FileError(path.name, f"is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit.",
                        "split the file, or raise the maximum file size of the knowledge base.")
    if size == 0:
        raise FileError(path.name, "is empty (0 bytes).", "check that the upload finished, or remove the file.")
    data = path.read_bytes()
    doc = _READERS[kind](path, data)
    if not doc.text.strip():
        raise FileError(path.name, "contains no text." + (" It may be a scanned PDF (images only)." if kind == "pdf" else ""),
                        "run OCR on it first." if kind == "pdf" else "add text to the file, or remove it.")
    doc.path, doc.file_hash = str(path), hashlib.sha256(data).hexdigest()
    return doc


def document_from_text(name: str, text: str, title: str = "", file_type: str = "txt") -> Document:
    """A Document made from text in memory (one section), e.g. a benchmark corpus record."""
    body = text.strip()
    digest = hashlib.sha256(f"{title}\x00{body}".encode()).hexdigest()
    return Document(name=name, file_type=file_type, text=body, sections=[Section((), None, body, 0)] if body else [],
                    title=title.strip(), file_hash=digest)


# Plain text and Markdown ------------------------------------------------------------------------
def decode_text(name: str, data: bytes) -> tuple[str, list[str]]:
    """Decode text bytes: UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252 if it is clearly text.

    Returns (text, notes). Raises FileError for binary data or bytes no text encoding explains.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            raise FileError(name, "starts with a UTF-16 byte-order mark but is not valid UTF-16.",
                            "re-save it as UTF-8 text.") from None
    if b"\x00" in data:
        raise FileError(name, "is a binary file, not text (it contains NUL bytes).",
                        "upload the original document (PDF, DOCX...) instead of a renamed binary file.")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as err:
        utf8_error = f"byte 0x{data[err.start]:02x} at offset {err.start}"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is None or _CONTROL.search(text):
        raise FileError(name, f"is not UTF-8 text ({utf8_error} is invalid) and no other text encoding explains it.",
                        "re-save it as UTF-8 text, or upload the original document.")
    return text, [f"{name}: not valid UTF-8 ({utf8_error}); read as Windows-1252 (Latin-1). "
                  "Check accented characters; re-save as UTF-8 to be sure."]


def _read_txt(path: Path, data: bytes) -> Document:
    text, notes = decode_text(path.name, data)
    return Document(path.name, "txt", text, [Section((), None, text, 0)], notes=notes)


def _read_markdown(path: Path, data: bytes) -> Document:
    """Sections are the bodies between ATX headings (# ...), offsets into the file's own text."""
    text, notes = decode_text(path.name, data)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body_start, in_fence, offset = 0, False, 0

    def close(end: int) -> None:
        body = text[body_start:end]
        lead = len(body) - len(body.lstrip())
        if body.strip():
            sections.append(Section(tuple(h for _, h in stack), None, body.strip(), body_start + lead))

    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _ATX.match(line.rstrip("\r\n"))
        if match:
            close(offset)
            level = len(match.group(1))
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, match.group(2).strip())]
            body_start = offset + len(line)
        offset += len(line)
    close(len(text))
    return Document(path.name, "md", text, sections, notes=notes)


# HTML -----------------------------------------------------------------------------------------------
_BLOCKS = ["p", "div", "li", "pre", "blockquote", "tr", "table", "ul", "ol", "dl", "dt", "dd", "section",
           "article", "header", "footer", "figcaption", "caption", "form", "main", "aside", "nav", "hr"]
_MARK = "\x1e"  # record separator: cannot appear in parsed HTML text (stripped below)


def _read_html(path: Path, data: bytes) -> Document:
    """Headings h1-h6 become the heading path; block elements become paragraphs."""
    from bs4 import BeautifulSoup

    text, notes = decode_text(path.name, data)
    soup = BeautifulSoup(text.replace(_MARK, " "), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["head", "title", "script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_after("\n\n")
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        tag.replace_with(f"\n{_MARK}{tag.name[1]}{_MARK}{tag.get_text(' ', strip=True)}{_MARK}\n")
    flat = soup.get_text("")
    builder, stack = _Builder(), []
    pieces = flat.split(_MARK)
    builder.add(_tidy(pieces[0]))
    for i in range(1, len(pieces) - 2, 3):
        level, heading, body = int(pieces[i]), pieces[i + 1].strip(), pieces[i + 2]
        stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, heading)]
        builder.add(_tidy(body), tuple(h for _, h in stack))
    return Document(path.name, "html", builder.text, builder.sections, title=title, notes=notes)


def _tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and runs of blank lines into one paragraph break."""
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


# DOCX ---------------------------------------------------------------------------------------------------
def _heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 0
    match = re.match(r"Heading (\d)$", style_name or "")
    return int(match.group(1)) if match else None


def _read_docx(path: Path, data: bytes) -> Document:
    """Paragraph styles 'Title' and 'Heading N' become the heading path; tables become ' | '-joined rows."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except Exception as err:  # noqa: BLE001  (python-docx raises zip, XML and KeyError variants)
        raise FileError(path.name, f"is not a readable Word document ({type(err).__name__}: {err}).",
                        "open it in Word or LibreOffice and save it again as .docx.") from None
    builder, stack, paragraphs = _Builder(), [], []

    def flush() -> None:
        builder.add("\n\n".join(paragraphs), tuple(h for _, h in stack))
        paragraphs.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            paragraphs.append("\n".join(r for r in rows if r.strip(" |")))
            continue
        level = _heading_level(block.style.name if block.style is not None else "")
        if level is not None and block.text.strip():
            flush()
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, block.text.strip())]
        elif block.text.strip():
            paragraphs.append(block.text.strip())
    flush()
    return Document(path.name, "docx", builder.text, builder.sections)


# PDF ----------------------------------------------------------------------------------------------------
def _read_pdf(path: Path, data: bytes) -> Document:
    """One section per page (1-based page numbers); the PDF outline, if any, gives the heading path."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileError(path.name, "is password-protected (encrypted PDF).",
                            "remove the password (e.g. print to PDF) and upload it again.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except FileError:
        raise
    except DependencyError as err:
        raise FileError(path.name, f"is encrypted in a way this install cannot open ({err}).",
                        "remove the password (e.g. print to PDF) and upload it again.") from None
    except Exception as err:  # noqa: BLE001  (pypdf raises its own errors, but also zlib, struct, Key/Index errors)
        raise FileError(path.name, f"is not a readable PDF (corrupt or truncated: {err}).",
                        "open it in a PDF viewer and save or export it again.") from None
    headings = _outline_by_page(reader, len(pages))
    builder = _Builder()
    for number, text in enumerate(pages, start=1):
        builder.add(text, headings[number - 1], number)
    return Document(path.name, "pdf", builder.text, builder.sections, pages=len(pages))


def _outline_by_page(reader: object, page_count: int) -> list[tuple[str, ...]]:
    """Heading path in force on each page, from the PDF's bookmarks; () where there are none."""
    entries: list[tuple[int, int, str]] = []  # (page index, depth, title)

    def walk(items: list, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            page = reader.get_destination_page_number(item)  # type: ignore[attr-defined]
            if page is not None and item.title:
                entries.append((page, depth, str(item.title).strip()))

    try:
        walk(reader.outline, 0)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001  (a broken outline must not stop the text from loading)
        return [()] * page_count
    result, stack, pos = [], [], 0
    entries.sort(key=lambda e: e[0])
    for index in range(page_count):
        while pos < len(entries) and entries[pos][0] <= index:
            _, depth, title = entries[pos]
            stack = stack[:depth] + [title]
            pos += 1
        result.append(tuple(stack))
    return result


_READERS: dict[str, Callable[[Path, bytes], Document]] = {
    "pdf": _read_pdf, "docx": _read_docx, "md": _read_markdown, "html": _read_html, "txt": _read_txt,
}
