"""Turn chat examples into training features through the model's own chat template.

Training must see exactly what inference sends, so nothing here formats text itself: the whole
conversation is rendered with `apply_chat_template`, tokenized the way `generation.render_prompt`
tokenizes a prompt, and each assistant turn is located by rendering the conversation prefix by
prefix (messages[:i] with the generation prompt = where reply i starts; messages[:i+1] = where it
ends). Every rendered prefix must be the start of the whole rendering: a template that rewrites
earlier turns is refused with a clear error rather than trained on misplaced labels. Where a prefix
also tokenizes to the start of the whole token sequence (the usual case), the whole text is tokenized
once; where a cut falls inside a BPE merge, each piece is tokenized on its own, as inference does.

Each assistant turn is trained up to and including its end-of-turn token (the EOS, or the template's
own end-of-turn token such as <|im_end|> or <|eot_id|>), so the model learns to stop. A template
that does not close assistant turns with one gets the tokenizer's EOS appended to each reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core.datasets.params import DataParams
    from studio.core.datasets.report import Example, Issue

Message = dict[str, str]
IGNORE_INDEX = -100  # the label value the cross-entropy loss skips
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


class ChatTemplateError(StudioError):
    """The tokenizer cannot render training examples (no template, not prefix-stable, no EOS): no example can be used."""


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where the loss is not computed
    attention_mask: list[int]
    full_length: int  # tokens before truncation
    trained_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per assistant turn, before truncation
    template_eos: list[bool] = field(default_factory=list)  # per assistant turn: the template itself ended it with EOS
    line: int | None = None

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def features(self) -> dict[str, list[int]]:
        """The three columns a Trainer / data collator takes."""
        return {"input_ids": self.input_ids, "labels": self.labels, "attention_mask": self.attention_mask}


def require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(f"The tokenizer of {_name(tokenizer)} has no chat template, so chat examples cannot be "
                                "rendered the way the model will see them at inference.",
                                "fine-tune a chat/instruct model that ships a chat template (e.g. Qwen/Qwen2.5-0.5B-Instruct).")


def render(tokenizer: Any, messages: Sequence[Message], generation_prompt: bool = False) -> str:
    """The conversation as the chat template writes it. Raises StudioError when the template rejects it."""
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as err:  # noqa: BLE001  (jinja's raise_exception: e.g. roles must alternate)
        raise StudioError(f"the chat template of {_name(tokenizer)} rejected this conversation: {err}",
                          "reshape the conversation the way this model expects (e.g. alternate user/assistant).") from None


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text, exactly as generation.render_prompt encodes a prompt."""
    return encode_many(tokenizer, [text])[0]


def encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    # Same rule as generation.render_prompt: a template that writes the BOS itself must not get a second one.
    bos = getattr(tokenizer, "bos_token", None)
    out: list[list[int]] = [[] for _ in texts]
    for add_special in (False, True):
        picked = [i for i, t in enumerate(texts) if (not (bos and t.startswith(bos))) == add_special]
        if picked:
            ids = tokenizer([texts[i] for i in picked], add_special_tokens=add_special)["input_ids"]
            for i, row in zip(picked, ids):
                out[i] = list(row)
    return out


def tokenize_example(messages: Sequence[Message], tokenizer: Any, max_length: int | None = None,
                     train_on_prompt: bool = False) -> TokenizedExample:
    """input_ids, labels and attention_mask of one conversation, rendered by the model's chat template.

    Labels are IGNORE_INDEX everywhere except the assistant replies and their end-of-turn token (all
    tokens with `train_on_prompt`). Longer than `max_length` → the first `max_length` tokens (`truncated`).
    Raises ChatTemplateError for a tokenizer that cannot be trained through its template, and
    StudioError when the template rejects this conversation.
    """
    require_chat_template(tokenizer)
    ids, spans = _layout(messages, tokenizer)
    input_ids, trained, trained_spans, template_eos = _close_turns(ids, spans, tokenizer)
    labels = [tok if (keep or train_on_prompt) else IGNORE_INDEX for tok, keep in zip(input_ids, trained)]
    full_length = len(input_ids)
    if max_length is not None and full_length > max_length:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids, labels, [1] * len(input_ids), full_length, trained_spans, template_eos)


def check_eos(messages: Sequence[Message], tokenizer: Any) -> list[bool]:
    """Per assistant turn: does the chat template itself end it with the EOS / end-of-turn token?
    (Where it does not, `tokenize_example` appends the EOS so the model still learns to stop.)"""
    return tokenize_example(messages, tokenizer).template_eos


def preview(messages: Sequence[Message], tokenizer: Any, train_on_prompt: bool = False) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) segments, for highlighting what the loss covers."""
    example = tokenize_example(messages, tokenizer, train_on_prompt=train_on_prompt)
    ids, flags = example.input_ids, [label != IGNORE_INDEX for label in example.labels]
    segments: list[tuple[str, bool]] = []
    start, before = 0, ""
    for k in range(1, len(ids) + 1):
        if k < len(ids) and flags[k] == flags[start]:
            continue
        # Decoding the growing prefix keeps the spaces a tokenizer only writes between tokens.
        upto = _decode(tokenizer, ids[:k])
        text = upto[len(before):] if upto.startswith(before) else _decode(tokenizer, ids[start:k])
        segments.append((text, flags[start]))
        start, before = k, upto
    return segments


def tokenize_dataset(examples: Sequence[Example], tokenizer: Any, params: DataParams) -> tuple[list[TokenizedExample], list[Issue]]:
    """Features of every example under `params` (max_length, truncation policy, train_on_prompt), and a warning
    for each example left out: too long under the drop policy, rejected by the template, or nothing left to
    train after truncation. Raises ChatTemplateError when the tokenizer cannot be used at all."""
    from studio.core.datasets.report import Issue

    kept: list[TokenizedExample] = []
    issues: list[Issue] = []
    for example in examples:
        try:
            features = tokenize_example(example.messages, tokenizer, params.max_length, params.train_on_prompt)
        except ChatTemplateError:
            raise
        except StudioError as err:
            issues.append(Issue("warning", "template", err.message + " The example is left out.", err.fix or "", line=example.line))
            continue
        features.line = example.line
        if features.truncated and params.truncation == "drop":
            issues.append(Issue("warning", "too_long", f"{features.full_length} tokens, over max_length {params.max_length}: "
                                "dropped.", "raise max_length or shorten the example.", line=example.line))
        elif features.trained_tokens == 0:
            issues.append(Issue("warning", "untrainable", f"truncated to {params.max_length} of {features.full_length} tokens, "
                                "no assistant token is left to train on: dropped.", "raise max_length or shorten the prompt.",
                                line=example.line))
        else:
            kept.append(features)
    return kept, issues


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """The EOS id and the ids of the known end-of-turn tokens this tokenizer has."""
    ids = {tokenizer.eos_token_id} if getattr(tokenizer, "eos_token_id", None) is not None else set()
    unk = getattr(tokenizer, "unk_token_id", None)
    for token in END_OF_TURN_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != unk and tokenizer.convert_ids_to_tokens(token_id) == token:
            ids.add(token_id)
    return ids


def _layout(messages: Sequence[Message], tokenizer: Any) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the conversation and [start, end) of each assistant turn in them (template text after the reply
    included). Cut points come from rendering prefixes; a template whose prefixes are not the start of the whole
    rendering cannot be trained through and raises ChatTemplateError."""
    text = render(tokenizer, messages)
    cuts: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise StudioError("the conversation starts with an assistant turn; chat templates expect the user first.",
                              "add the user message the assistant is answering.")
        start = _prefix_end(tokenizer, messages[:i], True, text)
        end = _prefix_end(tokenizer, messages[:i + 1], False, text)
        if end <= start:
            raise ChatTemplateError(f"The chat template of {_name(tokenizer)} renders assistant turn {i + 1} as nothing.",
                                    "use a model whose chat template writes the assistant's replies.")
        cuts.append((start, end))
    ids = encode(tokenizer, text)
    spans = _spans_in_whole(tokenizer, text, ids, cuts)
    return (ids, spans) if spans is not None else _encode_in_pieces(tokenizer, text, cuts)


def _prefix_end(tokenizer: Any, prefix: Sequence[Message], generation_prompt: bool, text: str) -> int:
    rendered = render(tokenizer, prefix, generation_prompt)
    if not text.startswith(rendered):
        what = " with the generation prompt" if generation_prompt else ""
        raise ChatTemplateError(
            f"The chat template of {_name(tokenizer)} is not prefix-stable: the first {len(prefix)} message(s) rendered "
            f"on their own{what} are not the start of the whole conversation, so the assistant replies cannot be "
            "located for training.",
            "use a model whose template renders earlier turns unchanged (templates that rewrite history, e.g. drop "
            "<think> blocks from earlier replies, are not supported), or train on single-turn examples.")
    return len(rendered)


def _spans_in_whole(tokenizer: Any, text: str, ids: list[int], cuts: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """Token boundaries of the cuts when every prefix tokenizes to the start of the whole text (the usual case:
    cuts fall next to special tokens or newlines), else None."""
    lengths: dict[int, int] = {}
    for cut in {c for pair in cuts for c in pair}:
        prefix_ids = encode(tokenizer, text[:cut])
        if ids[:len(prefix_ids)] != prefix_ids:
            return None
        lengths[cut] = len(prefix_ids)
    return [(lengths[a], lengths[b]) for a, b in cuts]


def _encode_in_pieces(tokenizer: Any, text: str, cuts: list[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    # A cut inside a BPE merge (a prompt ending in a space, say): tokenize each piece on its own, which is also
    # what inference does, since the prompt ends at the cut and the reply's tokens are generated after it.
    bounds = [0, *(c for pair in cuts for c in pair), len(text)]
    ids: list[int] = []
    positions = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if k > 0:
            positions.append(len(ids))
        piece = text[a:b]
        if piece:
            ids += encode(tokenizer, piece) if k == 0 else list(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return ids, list(zip(positions[::2], positions[1::2]))


def _close_turns(ids: list[int], spans: list[tuple[int, int]], tokenizer: Any
                 ) -> tuple[list[int], list[bool], list[tuple[int, int]], list[bool]]:
    """Mark each assistant span trained up to its last end-of-turn token (appending the EOS where the template
    wrote none); text the template adds after that token (a newline) stays untrained."""
    stop_ids = end_of_turn_ids(tokenizer)
    out: list[int] = []
    trained: list[bool] = []
    trained_spans, template_eos = [], []
    pos = 0
    for start, end in spans:
        out += ids[pos:start]
        trained += [False] * (start - pos)
        stops = [k for k in range(start, end) if ids[k] in stop_ids]
        template_eos.append(bool(stops))
        reply = ids[start:stops[-1] + 1] if stops else ids[start:end] + [_eos_id(tokenizer)]
        trained_spans.append((len(out), len(out) + len(reply)))
        out += reply
        trained += [True] * len(reply)
        tail = ids[stops[-1] + 1:end] if stops else []
        out += tail
        trained += [False] * len(tail)
        pos = end
    out += ids[pos:]
    trained += [False] * (len(ids) - pos)
    return out, trained, trained_spans, template_eos


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ChatTemplateError(f"The chat template of {_name(tokenizer)} does not end assistant turns with an end-of-turn "
                                "token and the tokenizer has no EOS token, so the model could not learn to stop.",
                                "use a model whose tokenizer defines an EOS token.")
    return int(eos)


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "this model")
