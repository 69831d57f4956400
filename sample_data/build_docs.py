"""Render the Markdown sources in sample_data/sources/ to the PDF and DOCX documents in sample_data/docs/.

    python sample_data/build_docs.py

user-manual.md -> docs/user-manual.pdf (fpdf2, built-in Helvetica, one chapter per page, PDF outline)
service-policy.md -> docs/service-policy.docx (python-docx, real Title/Heading N and list styles)

Only the Markdown this knowledge base needs is understood: ATX headings (#, ##, ###), paragraphs
(consecutive lines are joined), "- " bullets and "1. " numbered items. Both outputs are byte-for-byte
reproducible: fixed metadata dates, and for the DOCX fixed ZIP entry timestamps.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
DOCS = HERE / "docs"
BUILD_DATE = datetime(2025, 3, 3, 9, 0, 0, tzinfo=timezone.utc)  # the knowledge base's "published" date
AUTHOR = "Brindlecote Energy Ltd."


@dataclass
class Block:
    kind: str  # "heading", "para", "bullet" or "number"
    text: str
    level: int = 0  # heading level (1-3)
    label: str = ""  # "3." for numbered items


def parse_markdown(text: str) -> list[Block]:
    """The sources' Markdown subset as a flat list of blocks."""
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block("para", " ".join(para)))
            para.clear()

    for raw in text.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,3})\s+(.+?)\s*#*$", line)
        bullet = re.match(r"^[-*]\s+(.+)$", line)
        number = re.match(r"^(\d+)\.\s+(.+)$", line)
        if not line:
            flush()
        elif heading:
            flush()
            blocks.append(Block("heading", heading.group(2), level=len(heading.group(1))))
        elif bullet:
            flush()
            blocks.append(Block("bullet", bullet.group(1)))
        elif number:
            flush()
            blocks.append(Block("number", number.group(2), label=number.group(1) + "."))
        elif blocks and blocks[-1].kind in ("bullet", "number") and not para and raw.startswith((" ", "\t")):
            blocks[-1].text += " " + line  # continuation line of a list item
        else:
            para.append(line)
    flush()
    return blocks


# PDF ----------------------------------------------------------------------------------------------
def build_pdf(source: Path, target: Path) -> int:
    """Render `source` to `target`; returns the page count."""
    from fpdf import FPDF

    blocks = parse_markdown(source.read_text(encoding="utf-8"))
    title = blocks[0].text if blocks and blocks[0].kind == "heading" else source.stem
    subtitle = "Halden Owner's Manual - BE-HM-0412 rev C"

    class Manual(FPDF):
        def header(self) -> None:
            if self.page_no() == 1:
                return
            self.set_font("Helvetica", "", 8)
            self.set_text_color(120, 120, 120)
            self.cell(0, 5, subtitle, align="R")
            self.ln(9)
            self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(120, 120, 120)
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")
            self.set_text_color(0, 0, 0)

    pdf = Manual(format="A4", unit="mm")
    pdf.core_fonts_encoding = "windows-1252"  # built-in fonts: no font files to download; allows the bullet
    pdf.set_margins(22, 18, 22)
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_title(title)
    pdf.set_author(AUTHOR)
    pdf.set_subject("Owner's manual for the Halden HB-6400 and HB-9600 Plus home batteries (fictional sample data)")
    pdf.set_creator("sample_data/build_docs.py")
    pdf.set_producer("fpdf2")
    pdf.set_creation_date(BUILD_DATE)
    pdf.add_page()

    line_h = 5.6
    first_heading = True
    previous = ""
    for block in blocks:
        text = _pdf_text(block.text)
        if previous in ("bullet", "number") and block.kind not in ("bullet", "number"):
            pdf.ln(1.5)  # a little air after a list
        previous = block.kind
        if block.kind == "heading":
            if block.level == 1 and first_heading:
                pdf.start_section(text, level=0)
                pdf.set_font("Helvetica", "B", 22)
                pdf.multi_cell(0, 10, text)
                pdf.ln(4)
            elif block.level == 1:
                pdf.add_page()
                pdf.start_section(text, level=0)
                pdf.set_font("Helvetica", "B", 17)
                pdf.multi_cell(0, 8, text)
                pdf.ln(3)
            else:
                if pdf.get_y() > pdf.h - 50:  # keep a heading with at least a few lines of its body
                    pdf.add_page()
                pdf.start_section(text, level=min(block.level - 1, 1))
                pdf.set_font("Helvetica", "B", 13 if block.level == 2 else 11)
                pdf.ln(2)
                pdf.multi_cell(0, 7, text)
                pdf.ln(1)
            first_heading = False
        elif block.kind == "para":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(0, line_h, text)
            pdf.ln(2.5)
        else:  # bullet or numbered item: hanging indent
            pdf.set_font("Helvetica", "", 10.5)
            pdf.set_x(pdf.l_margin + 3)
            pdf.cell(6, line_h, "\u2022" if block.kind == "bullet" else block.label)
            pdf.multi_cell(0, line_h, text)
            pdf.ln(1.2)
    pdf.output(str(target))
    return pdf.page_no()


def _pdf_text(text: str) -> str:
    """Built-in PDF fonts only cover Windows-1252: fail loudly instead of writing '?' into the manual."""
    try:
        text.encode("windows-1252")
    except UnicodeEncodeError as err:
        raise SystemExit(f"user-manual.md: character {text[err.start]!r} cannot be drawn with the built-in PDF fonts; "
                         "use plain ASCII in this source.") from None
    return text


# DOCX ---------------------------------------------------------------------------------------------
def build_docx(source: Path, target: Path) -> int:
    """Render `source` to `target`; returns the number of headings written."""
    import docx
    from docx.shared import Pt

    blocks = parse_markdown(source.read_text(encoding="utf-8"))
    document = docx.Document()
    document.styles["Normal"].font.name = "Calibri"
    document.styles["Normal"].font.size = Pt(11)
    headings = 0
    for block in blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=block.level)
            headings += 1
        elif block.kind == "para":
            document.add_paragraph(block.text)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        else:
            document.add_paragraph(block.text, style="List Number")

    props = document.core_properties
    props.title = blocks[0].text if blocks and blocks[0].kind == "heading" else source.stem
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.subject = "Service levels, visit charges and complaints for Halden batteries (fictional sample data)"
    props.comments = "Generated from sample_data/sources/service-policy.md by sample_data/build_docs.py"
    props.created = props.modified = props.last_printed = BUILD_DATE.replace(tzinfo=None)
    props.revision = 1

    buffer = io.BytesIO()
    document.save(buffer)
    target.write_bytes(_fixed_zip_dates(buffer.getvalue()))
    return headings


def _fixed_zip_dates(data: bytes) -> bytes:
    """Rewrite a ZIP with every entry dated BUILD_DATE, so the DOCX is identical on every rebuild."""
    stamp = BUILD_DATE.timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=stamp)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, src.read(info.filename))
    return out.getvalue()


def main() -> int:
    DOCS.mkdir(parents=True, exist_ok=True)
    pages = build_pdf(SOURCES / "user-manual.md", DOCS / "user-manual.pdf")
    print(f"wrote {DOCS / 'user-manual.pdf'} ({pages} pages)")
    headings = build_docx(SOURCES / "service-policy.md", DOCS / "service-policy.docx")
    print(f"wrote {DOCS / 'service-policy.docx'} ({headings} headings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
