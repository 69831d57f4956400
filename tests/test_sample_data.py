"""The sample knowledge base in sample_data/: enough documents of every type, readable PDF/DOCX, and an
evaluation set whose facts really are in the documents (so fact recall on it measures retrieval, not luck).

Fast and model-free: only file parsing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from studio.core.rag.loaders import SUFFIXES, load_document

ROOT = Path(__file__).resolve().parents[1] / "sample_data"
DOCS = ROOT / "docs"
SOURCES = ROOT / "sources"
EVAL = ROOT / "eval.jsonl"
GENERATED = {"user-manual.pdf": "user-manual.md", "service-policy.docx": "service-policy.md"}
HOUSE_KEYS = {"answer": str, "steps": list, "escalate": bool}


def _docs() -> list[Path]:
    return sorted(p for p in DOCS.iterdir() if p.is_file())


@cache
def _text(name: str) -> str:
    """A document's text as the studio's RAG loader reads it (what a knowledge base would index)."""
    return load_document(DOCS / name).text


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@cache
def _eval_rows() -> list[dict]:
    rows = []
    for number, line in enumerate(EVAL.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                pytest.fail(f"eval.jsonl line {number} is not JSON: {err}")
    return rows


# The documents ----------------------------------------------------------------------------------
def test_at_least_20_documents_of_every_type():
    docs = _docs()
    assert len(docs) >= 20, f"only {len(docs)} documents in {DOCS}"
    unsupported = [p.name for p in docs if p.suffix.lower() not in SUFFIXES]
    assert not unsupported, f"files the knowledge base cannot ingest: {unsupported}"
    kinds = Counter(p.suffix.lower() for p in docs)
    for suffix in (".md", ".txt", ".html", ".pdf", ".docx"):
        assert kinds[suffix] >= 1, f"no {suffix} document in {DOCS}"


def test_total_text_is_30_to_100_kb():
    total = sum(len(_text(p.name).encode("utf-8")) for p in _docs())
    assert 30_000 <= total <= 100_000, f"the documents hold {total} bytes of text"


def test_every_document_loads_with_real_text():
    for path in _docs():
        text = _text(path.name)
        assert len(text) >= 1000, f"{path.name} has only {len(text)} characters of text"


def test_structured_formats_have_headings():
    for path in _docs():
        raw = path.read_text(encoding="utf-8") if path.suffix in (".md", ".html") else ""
        if path.suffix == ".md":
            assert re.search(r"^# \S", raw, re.M) and re.search(r"^## \S", raw, re.M), f"{path.name} lacks #/## headings"
        elif path.suffix == ".html":
            assert "<h1>" in raw and "<h2>" in raw and "<p>" in raw, f"{path.name} lacks h1/h2/p"


def test_pdf_has_several_pages_of_extractable_text():
    from pypdf import PdfReader

    reader = PdfReader(DOCS / "user-manual.pdf")
    assert len(reader.pages) >= 3
    for number, page in enumerate(reader.pages, start=1):
        assert len((page.extract_text() or "").strip()) > 200, f"page {number} of user-manual.pdf has no extractable text"
    assert reader.outline, "user-manual.pdf has no outline (bookmarks)"


def test_docx_uses_real_heading_styles():
    import docx

    document = docx.Document(str(DOCS / "service-policy.docx"))
    styles = Counter(p.style.name for p in document.paragraphs if p.text.strip())
    assert styles["Heading 1"] >= 1 and styles["Heading 2"] >= 3, styles
    assert styles["Normal"] >= 5, styles


def test_generated_documents_have_their_sources():
    for generated, source in GENERATED.items():
        assert (DOCS / generated).is_file(), f"{generated} missing: run python sample_data/build_docs.py"
        assert (SOURCES / source).is_file(), f"source {source} of {generated} missing"


# The evaluation set -------------------------------------------------------------------------------
def test_eval_has_at_least_60_questions_spread_over_the_documents():
    rows = _eval_rows()
    assert len(rows) >= 60, f"only {len(rows)} questions"
    questions = [row["question"] for row in rows]
    assert len(set(questions)) == len(questions), "duplicate questions"
    sources = Counter(row["source"] for row in rows)
    assert len(sources) >= 20, f"questions only cover {len(sources)} documents"
    for generated in GENERATED:
        assert sources[generated] >= 3, f"too few questions about {generated}"


def test_eval_rows_are_well_formed():
    for row in _eval_rows():
        assert set(row) == {"question", "reference", "facts", "schema", "source"}, row.get("question")
        assert isinstance(row["question"], str) and row["question"].endswith("?"), row["question"]
        assert isinstance(row["facts"], list) and 1 <= len(row["facts"]) <= 3, row["question"]
        assert all(isinstance(f, str) and f.strip() == f and f for f in row["facts"]), row["question"]
        assert (DOCS / row["source"]).is_file(), f"unknown source {row['source']}"
        schema = row["schema"]
        assert schema["type"] == "object" and set(schema["required"]) == set(HOUSE_KEYS), row["question"]
        assert schema["additionalProperties"] is False, row["question"]


def test_every_fact_is_verbatim_in_its_source_document():
    for row in _eval_rows():
        name = row["source"]
        for fact in row["facts"]:
            if name in GENERATED:
                source = (SOURCES / GENERATED[name]).read_text(encoding="utf-8")
                assert fact in source, f"{fact!r} not in sources/{GENERATED[name]} ({row['question']})"
                # and the rendered file still carries it (line breaks in PDF text become spaces)
                assert _squash(fact) in _squash(_text(name)), f"{fact!r} lost when rendering {name}"
            else:
                assert fact in _text(name), f"{fact!r} not in {name} ({row['question']})"


def test_references_are_house_format_and_contain_the_facts():
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is optional
        jsonschema = None
    for row in _eval_rows():
        reference = json.loads(row["reference"])
        if jsonschema is not None:
            jsonschema.validate(reference, row["schema"])
        assert set(reference) == set(HOUSE_KEYS), row["question"]
        for key, kind in HOUSE_KEYS.items():
            assert isinstance(reference[key], kind), f"{key} of {row['question']!r} is not {kind.__name__}"
        assert all(isinstance(step, str) and step for step in reference["steps"]), row["question"]
        for fact in row["facts"]:
            assert fact in reference["answer"], f"reference answer lacks {fact!r} ({row['question']})"


def test_build_script_reproduces_the_committed_files(tmp_path, monkeypatch):
    """Rebuilding from the sources gives byte-identical files, so the committed PDF/DOCX are up to date."""
    pytest.importorskip("fpdf")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("sample_data_build_docs", ROOT / "build_docs.py")
    build_docs = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, build_docs)  # dataclasses look their module up
    spec.loader.exec_module(build_docs)
    build_docs.build_pdf(SOURCES / "user-manual.md", tmp_path / "user-manual.pdf")
    build_docs.build_docx(SOURCES / "service-policy.md", tmp_path / "service-policy.docx")
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes(), \
            f"{name} is out of date: run python sample_data/build_docs.py and commit the result"


# The training set ---------------------------------------------------------------------------------
TRAIN = ROOT / "train.jsonl"
# Names and identifiers that only the fictional docs use: none may reach the training data.
DOC_TOKENS = [r"\b[CGNTS]-\d{3}\b", r"\bH[BX]-\d+", r"\bLB-\d", r"\bATS-\d+", r"\bBAI-", r"\bRMA-", r"\bBCS-",
              r"\bVF-\d", r"\bWC-\d", r"(?i)halden", r"(?i)brindlecote", r"(?i)gridshare", r"(?i)linkbox",
              r"(?i)\bhalo\b", r"(?i)storm watch", r"(?i)tariff saver", r"\bCare (Plus|Pro|Basic)\b", "£",
              r"\b0\d{3} \d{3} \d{4}\b", r"Settings >"]


@cache
def _train_rows() -> list[dict]:
    rows = []
    for number, line in enumerate(TRAIN.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            pytest.fail(f"train.jsonl line {number} is not JSON: {err}")
    return rows


def _load_make_train():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sample_data_make_train", ROOT / "make_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _eightgrams(text: str) -> set[tuple[str, ...]]:
    tokens = _words(text)
    return {tuple(tokens[i:i + 8]) for i in range(len(tokens) - 7)}


def test_train_has_at_least_400_chat_examples_with_a_system_prompt():
    rows = _train_rows()
    assert len(rows) >= 400, f"only {len(rows)} training examples"
    systems = set()
    for number, row in enumerate(rows, start=1):
        assert set(row) == {"messages"}, f"line {number}: keys {sorted(row)}"
        messages = row["messages"]
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"].strip()
                   for m in messages), f"line {number}"
        roles = [m["role"] for m in messages]
        assert roles[0] == "system" and len(roles) in (3, 5), f"line {number}: {roles}"
        assert roles[1:] == ["user", "assistant"] * (len(roles) // 2), f"line {number}: {roles}"
        systems.add(messages[0]["content"])
    make_train = _load_make_train()
    assert systems == {make_train.SYSTEM_PROMPT, *make_train.SHORT_PROMPTS}, systems
    multi = sum(len(row["messages"]) > 3 for row in rows)
    assert multi <= len(rows) // 10, f"{multi} multi-turn examples: more than 10%"


def test_train_assistant_turns_are_house_format():
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is optional
        jsonschema = None
    schema = _eval_rows()[0]["schema"]
    escalate = Counter()
    for number, row in enumerate(_train_rows(), start=1):
        for message in row["messages"]:
            if message["role"] != "assistant":
                continue
            reply = json.loads(message["content"])  # strict JSON, nothing around it
            if jsonschema is not None:
                jsonschema.validate(reply, schema)
            assert set(reply) == set(HOUSE_KEYS), f"line {number}"
            for key, kind in HOUSE_KEYS.items():
                assert isinstance(reply[key], kind), f"line {number}: {key} is not {kind.__name__}"
            assert reply["answer"].strip() and len(reply["steps"]) <= 5, f"line {number}"
            assert all(isinstance(step, str) and step.strip() for step in reply["steps"]), f"line {number}"
            escalate[reply["escalate"]] += 1
    # both kinds of case are taught, and most cases do not need a person
    assert 0.1 < escalate[True] / sum(escalate.values()) < 0.5, escalate


def test_a_fifth_of_train_asks_product_specifics_and_the_reply_says_it_has_no_details():
    """The evaluation asks about a product's own codes, lights, prices and limits; the set has such questions
    too, answered without facts (the adapter keeps the format on them, and only retrieval brings the facts)."""
    make_train = _load_make_train()
    stems = {stem.replace("{d}", device) for topic in make_train.SPECIFICS for stem in topic["q"]
             for device in (topic["dev"] or [""])}
    plain = [row for row in _train_rows() if not row["messages"][1]["content"].startswith("Context:")]
    specific = [row for row in plain if any(row["messages"][1]["content"].endswith(stem) for stem in stems)]
    assert 0.15 <= len(specific) / len(plain) <= 0.3, f"{len(specific)} of {len(plain)}"
    for row in specific:
        reply = json.loads(row["messages"][-1]["content"])
        assert re.search(r"\b(don't|can't|not sure)\b", reply["answer"]), reply["answer"]
        assert reply["escalate"] is False and len(reply["steps"]) <= 2, reply


def test_a_third_of_train_asks_over_the_rag_prompt_and_quotes_passage_1_in_the_house_format():
    """So that the adapter keeps the house format when retrieval supplies context, and answers from it."""
    from studio.core.rag.answer import INSTRUCTION

    grounded = [row for row in _train_rows() if row["messages"][1]["content"].startswith("Context:\n[1] (")]
    assert 0.25 <= len(grounded) / len(_train_rows()) <= 0.5, f"{len(grounded)} of {len(_train_rows())}"
    for row in grounded:
        prompt, reply = row["messages"][1]["content"], json.loads(row["messages"][2]["content"])
        assert prompt.endswith(INSTRUCTION) and "\n\nQuestion: " in prompt
        context = prompt[len("Context:\n"):prompt.index("\n\nQuestion: ")]
        first = re.split(r"\n\n(?=\[2\] \()", context)[0]
        assert reply["answer"] == first + "\n\n" and reply["steps"] == [], reply
    # Like the studio's default retrieval over docs/ (about five passages of several paragraphs), and with quoted
    # app messages, whose double quotes the reply must escape.
    passages = sorted(len(re.findall(r"^\[\d+\] \(", row["messages"][1]["content"], re.M)) for row in grounded)
    assert passages[len(passages) // 2] >= 5, f"median {passages[len(passages) // 2]} passages"
    paragraphs = [json.loads(row["messages"][2]["content"])["answer"].count("\n\n") for row in grounded]
    assert sum(n >= 2 for n in paragraphs) / len(grounded) >= 0.3, "passage [1] is rarely more than one paragraph"
    quoted = [row for row in grounded if '"' in json.loads(row["messages"][2]["content"])["answer"]]
    assert 0.1 <= len(quoted) / len(grounded) <= 0.6, f"{len(quoted)} of {len(grounded)} quotes hold a double quote"


def test_train_fits_the_default_qlora_runs_time_budget():
    """The default QLoRA run on the sample set must finish in 10 minutes on a 2-core CPU (issue 6), and its time
    grows with the set's tokens. With eval-length contexts on the RAG-prompt lines (1.84 MB) it took 12.1 minutes
    on a copying-circuit build of the demo model; with the shorter ones now written (1.24 MB), 4.8 minutes. A size
    bound stands in for the timing, which a unit test cannot measure."""
    assert TRAIN.stat().st_size <= 1_400_000, f"train.jsonl is {TRAIN.stat().st_size:,} bytes; shorten its RAG contexts"


def test_train_examples_are_distinct_and_vary_in_length():
    rows = _train_rows()
    questions = [_words(row["messages"][1]["content"]) for row in rows]
    assert len({tuple(q) for q in questions}) == len(questions), "two examples ask the same question"
    lengths = sorted(sum(len(m["content"]) for m in row["messages"][1:]) for row in rows)
    assert lengths[-1] >= 3 * lengths[0], f"lengths only span {lengths[0]} to {lengths[-1]} characters"


def test_train_shares_no_question_or_8_gram_with_eval():
    eval_questions = {" ".join(_words(row["question"])) for row in _eval_rows()}
    eval_grams: set[tuple[str, ...]] = set()
    for row in _eval_rows():
        eval_grams |= _eightgrams(row["question"] + " " + row["reference"])
    for number, row in enumerate(_train_rows(), start=1):
        for message in row["messages"]:
            if message["role"] == "user":
                assert " ".join(_words(message["content"])) not in eval_questions, f"line {number} is an eval question"
        shared = _eightgrams(" ".join(m["content"] for m in row["messages"])) & eval_grams
        assert not shared, f"line {number} shares {' '.join(sorted(shared)[0])!r} with eval.jsonl"


def test_train_holds_none_of_the_docs_facts():
    text = TRAIN.read_text(encoding="utf-8")
    for pattern in DOC_TOKENS:
        match = re.search(pattern, text)
        assert match is None, f"train.jsonl contains {match.group(0)!r} (pattern {pattern})"
    for row in _eval_rows():
        for fact in row["facts"]:
            assert fact not in text, f"train.jsonl contains the eval fact {fact!r}"
    # no digits but the RAG prompt's passage numbers: no prices, dates, times, codes or phone numbers can slip in
    digit = re.search(r".{0,30}\d.{0,30}", re.sub(r"\[\d\]", "[n]", text))
    assert digit is None, f"train.jsonl contains a digit: {digit.group(0)!r}"


def test_train_file_is_what_make_train_generates(tmp_path):
    make_train = _load_make_train()
    assert make_train.write(tmp_path / "train.jsonl") >= 400
    assert (tmp_path / "train.jsonl").read_bytes() == TRAIN.read_bytes(), \
        "train.jsonl is out of date: run python sample_data/make_train.py and commit the result"


def test_most_system_prompts_leave_the_format_to_the_fine_tune():
    """The house format has to live in the adapter: the evaluation asks with no system prompt at all, and
    a set whose every line describes the format teaches a model to follow that prompt instead."""
    make_train = _load_make_train()
    prompts = Counter(row["messages"][0]["content"] for row in _train_rows())
    described = prompts[make_train.SYSTEM_PROMPT] / sum(prompts.values())
    assert 0.15 < described < 0.4, f"{described:.0%} of the examples describe the format in their system prompt"
    assert all("json" not in prompt.lower() and '"answer"' not in prompt for prompt in make_train.SHORT_PROMPTS)


def test_train_passes_the_studio_dataset_check():
    from studio.core.datasets import check_contamination, check_dataset

    report = check_dataset(TRAIN)
    assert not report.has_errors, report.text()
    assert report.format == "messages" and len(report.examples) == len(_train_rows()), report.text()
    assert report.stats.duplicates == 0 and report.stats.near_duplicates == 0, report.text()
    assert check_contamination(report.examples, EVAL).count == 0
