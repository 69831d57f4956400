"""Build small random-initialised Llama models with a byte-level BPE tokenizer and a chat template.

Used by the tests and benchmarks (no weights can be downloaded here) and as the starting point of
the demo model. A model built here is a real `LlamaForCausalLM` that `AutoModelForCausalLM` loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

# ChatML-style template: every assistant turn ends with <|im_end|>, which is also the EOS token,
# so a model trained through it learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

_SEED_TEXT = """The quick brown fox jumps over the lazy dog. A user asks a question and the assistant answers it.
Hello! How can I help you today? Please restart the device and try again. The warranty covers two years.
system user assistant: reset the router, check the cable, update the firmware, contact support.
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and punctuation , . ; : ! ? ( ) [ ] { } " ' - _ / \\ @ # % & * + =
"""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, chat_template: str = CHAT_TEMPLATE) -> Any:
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|pad|>", unk_token=None)
    fast.chat_template = chat_template
    return fast


def build_tiny_model(path: str | Path, *, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                     intermediate_size: int | None = None, vocab_size: int = 512, seed: int = 0,
                     texts: Iterable[str] | None = None, chat_template: str | None = CHAT_TEMPLATE,
                     max_position_embeddings: int = 2048) -> Path:
    """Write a random-init Llama model + tokenizer to `path` and return it. Seconds on a CPU."""
    path = Path(path)
    tokenizer = train_tokenizer(texts or [_SEED_TEXT] * 4, vocab_size=vocab_size, chat_template=chat_template or "")
    if chat_template is None:
        tokenizer.chat_template = None
    model = random_llama(tokenizer, hidden_size=hidden_size, layers=layers, heads=heads, intermediate_size=intermediate_size,
                         seed=seed, max_position_embeddings=max_position_embeddings)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_llama(tokenizer: Any, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, intermediate_size: int | None = None,
                 seed: int = 0, max_position_embeddings: int = 2048, **config: Any) -> Any:
    """A random-init LlamaForCausalLM sized for `tokenizer`, with its EOS and pad ids (no BOS) in the config and
    generation config. `config` overrides LlamaConfig fields (num_key_value_heads, tie_word_embeddings, a
    vocab_size above the tokenizer's, ...)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    fields = {"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": intermediate_size or hidden_size * 2,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads,
              "max_position_embeddings": max_position_embeddings, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None, "tie_word_embeddings": False}
    model = LlamaForCausalLM(LlamaConfig(**{**fields, **config}))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
