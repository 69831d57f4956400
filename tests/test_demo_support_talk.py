"""The demo model's generic support bank: deterministic, clean, broad, and never copied from the sample data."""

from __future__ import annotations

import itertools
import json
import random
import re
import string
from pathlib import Path

from studio.core.demo_model import corpus, support_talk
from studio.core.demo_model.lexicon import Lexicon

ROOT = Path(__file__).resolve().parents[1]


def _ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _sample_texts() -> list[str]:
    texts = []
    for line in (ROOT / "sample_data" / "train.jsonl").read_text().splitlines():
        if line.strip():
            texts += [m["content"] for m in json.loads(line)["messages"] if m["role"] != "system"]
    for line in (ROOT / "sample_data" / "eval.jsonl").read_text().splitlines():
        if line.strip():
            example = json.loads(line)
            texts += [example["question"], example.get("reference") or ""]
    return texts


def test_bank_is_deterministic_per_seed() -> None:
    first = [support_talk.exchange(random.Random(3)) for _ in range(1)] + support_talk.texts(random.Random(3), 50)
    again = [support_talk.exchange(random.Random(3)) for _ in range(1)] + support_talk.texts(random.Random(3), 50)
    other = support_talk.texts(random.Random(4), 50)
    assert first == again and first[1:] != other
    lex, lex2 = Lexicon(random.Random(5)), Lexicon(random.Random(5))
    assert [corpus.support_chat(lex) for _ in range(100)] == [corpus.support_chat(lex2) for _ in range(100)]


def test_bank_covers_many_topics_with_varied_wording() -> None:
    assert len(support_talk.topics()) >= 25
    for name, topic in support_talk.TOPICS.items():
        assert len(topic.questions) >= 3 and len(topic.replies) >= 3, name
    assert support_talk.TOPICS["complaint"].escalate and support_talk.TOPICS["cable_damage"].escalate
    assert not support_talk.TOPICS["password"].escalate
    rng = random.Random(0)
    seen = {support_talk.exchange(rng).topic for _ in range(2000)}
    assert seen == set(support_talk.topics())


def test_support_chats_are_clean_and_carry_steps_and_flag_in_json() -> None:
    pattern = corpus.fact_pattern(corpus.eval_facts())
    lex = Lexicon(random.Random(1))
    chats = [corpus.support_chat(lex) for _ in range(1500)]
    assert all(corpus.is_clean(c, pattern) for c in chats)
    assert all(c[-2]["role"] == "user" and c[-1]["role"] == "assistant" for c in chats)
    objects = [json.loads(c[-1]["content"]) for c in chats if c[-1]["content"].startswith("{")]
    assert len(objects) > 100
    assert any(True in o.values() for o in objects) and any(any(isinstance(v, list) and v for v in o.values()) for o in objects)
    assert all(not set(o) & set(corpus.HOUSE_KEYS) for o in objects)
    bank = {r for t in support_talk.TOPICS.values() for r in t.replies}
    assert sum(any(c[-1]["content"].startswith(r[:25]) or r[:25] in c[-1]["content"] for r in bank) for c in chats) > 700


def _expand(template: str) -> list[str]:
    """`template` with every combination of its slots' values."""
    pools = {"thing": support_talk.THINGS, "item": support_talk.ITEMS, "when": support_talk.WHEN, "person": support_talk.PEOPLE}
    names = sorted({field for _, field, _, _ in string.Formatter().parse(template) if field})
    return [template.format(**dict(zip(names, combo))) for combo in itertools.product(*(pools[n] for n in names))]


def test_bank_shares_no_8_word_sequence_with_the_sample_data() -> None:
    sample_grams = set().union(*(_ngrams(t) for t in _sample_texts()))
    assert len(sample_grams) > 5000
    for topic in support_talk.TOPICS.values():  # every template with every slot value (and opener)
        openers = ("",) if topic.escalate else support_talk.OPENERS
        texts = [*topic.questions, *topic.steps, *(o + r for o in openers for r in topic.replies)]
        for text in (t for template in texts for t in _expand(template)):
            assert not _ngrams(text) & sample_grams, text
    rng = random.Random(7)
    for _ in range(2000):
        e = support_talk.exchange(rng)
        for text in (e.question, e.reply, *e.steps):
            assert not _ngrams(text) & sample_grams, text
