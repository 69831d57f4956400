"""Loaders: each supported type keeps its structure (headings, pages); each bad input gets its own message."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.rag.loaders import FileError, document_from_text, load_document


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A minimal valid PDF with one text page per entry (Helvetica, one line per '\\n')."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in text.split("\n")) + " ET"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream".encode())
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Router Guide", level=0)
    document.add_heading("Setup", level=1)
    document.add_paragraph("Plug the router into the wall socket.")
    document.add_heading("Lights", level=2)
    document.add_paragraph("A blinking light means the router is starting.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Colour", "Meaning"
    table.cell(1, 0).text, table.cell(1, 1).text = "Red", "No signal"
    document.add_heading("Reset", level=1)
    document.add_paragraph("Hold the reset button for ten seconds.")
    document.save(path)
    return path


def test_pdf_keeps_page_numbers_and_outline(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["Page one talks about setup.", "Page two talks about resets.", "Page three: warranty."])
    writer = PdfWriter(clone_from=plain)
    writer.add_outline_item("Resets", page_number=1)
    with open(tmp_path / "manual.pdf", "wb") as fh:
        writer.write(fh)
    doc = load_document(tmp_path / "manual.pdf")
    assert doc.file_type == "pdf" and doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "resets" in doc.sections[1].text
    assert [s.heading_path for s in doc.sections] == [(), ("Resets",), ("Resets",)]
    assert all(doc.text[s.start:s.end] == s.text for s in doc.sections)


def test_docx_headings_come_from_paragraph_styles(tmp_path: Path) -> None:
    doc = load_document(make_docx(tmp_path / "guide.docx"))
    paths = [s.heading_path for s in doc.sections]
    assert paths == [("Router Guide", "Setup"), ("Router Guide", "Setup", "Lights"), ("Router Guide", "Reset")]
    lights = doc.sections[1].text
    assert "blinking light" in lights and "Red | No signal" in lights, "tables are kept as rows"


def test_markdown_sections_point_into_the_file_text(tmp_path: Path) -> None:
    text = "# Guide\n\nIntro.\n\n## Setup\n\nPlug it in.\n\n```\n# not a heading\n```\n\n## Reset\nHold the button.\n"
    (tmp_path / "guide.md").write_text(text, encoding="utf-8")
    doc = load_document(tmp_path / "guide.md")
    assert doc.text == text
    assert [s.heading_path for s in doc.sections] == [("Guide",), ("Guide", "Setup"), ("Guide", "Reset")]
    assert "# not a heading" in doc.sections[1].text, "a # line inside a code fence is not a heading"
    assert all(text[s.start:s.end] == s.text for s in doc.sections)


def test_html_headings_become_structure_and_scripts_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head><title>Manual</title><script>var x = 1;</script></head><body>"
        "<h1>Router</h1><p>Hello <b>world</b>.</p><div><h2>Setup</h2><ul><li>Plug in</li><li>Wait</li></ul></div>"
        "<h2>Reset</h2><p>Hold the button.</p><style>p {}</style></body></html>", encoding="utf-8")
    doc = load_document(tmp_path / "page.html")
    assert doc.title == "Manual"
    assert [s.heading_path for s in doc.sections] == [("Router",), ("Router", "Setup"), ("Router", "Reset")]
    assert doc.sections[0].text == "Hello world.", "inline tags do not break the sentence"
    assert "var x" not in doc.text and "p {}" not in doc.text


def test_text_and_in_memory_documents(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("First paragraph.\n\nSecond paragraph.", encoding="utf-8")
    doc = load_document(tmp_path / "notes.txt")
    assert doc.file_type == "txt" and doc.sections[0].text == doc.text and len(doc.file_hash) == 64
    mem = document_from_text("42", "Abstract text.", title="A title")
    assert mem.title == "A title" and mem.sections[0].text == "Abstract text."


def test_windows_1252_text_is_read_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "legacy.txt").write_bytes("Café au lait — 5 €".encode("cp1252"))
    doc = load_document(tmp_path / "legacy.txt")
    assert doc.text == "Café au lait — 5 €"
    assert "not valid UTF-8" in doc.notes[0] and "Windows-1252" in doc.notes[0]


def _encrypted_pdf(tmp_path: Path) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=make_pdf(tmp_path / "open.pdf", ["Secret plans."]))
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


@pytest.mark.parametrize("name, content, expected", [
    ("sheet.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
    ("empty.txt", b"", "is empty (0 bytes)"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file, not text (it contains NUL bytes)"),
    ("garbled.md", b"abc \x81\x8d\x8f\x90 def", "is not UTF-8 text (byte 0x81 at offset 4 is invalid)"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "is not a readable PDF (corrupt or truncated"),
    ("broken.docx", b"PK\x03\x04 not really a zip", "is not a readable Word document"),
    ("blank.pdf", None, "contains no text. It may be a scanned PDF"),
])
def test_each_bad_input_gets_its_own_message(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is None:
        make_pdf(path, [""])
    else:
        path.write_bytes(content)
    with pytest.raises(FileError) as info:
        load_document(path)
    assert str(info.value).startswith(f"{name}: ")
    assert expected in str(info.value)
    assert info.value.fix and info.value.file == name


def test_encrypted_pdf_is_refused_with_its_own_message(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"locked\.pdf: is password-protected \(encrypted PDF\)"):
        load_document(_encrypted_pdf(tmp_path))


def test_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 3 * 1024 * 1024)
    with pytest.raises(FileError, match=r"big\.txt: is 3\.0 MB, over the 2 MB limit") as info:
        load_document(path, max_bytes=2 * 1024 * 1024)
    assert "raise the maximum file size" in info.value.fix


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"gone\.md: cannot be opened"):
        load_document(tmp_path / "gone.md")
