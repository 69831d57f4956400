"""The demo model's corpus (deterministic, decontaminated), its build command, and the committed model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import threading
from pathlib import Path

from types import SimpleNamespace

import pytest

from studio.cli import main
from studio.core.demo_model import circuit, corpus
from studio.core.demo_model.build import DEFAULT_OUT, build
from studio.core.demo_model.train import CIRCUIT, DemoParams
from studio.core.tiny_model import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"vocab_size": 1000, "hidden_size": 64, "layers": 2, "heads": 4, "intermediate_size": 128, "chats_per_step": 2,
         "warmup_steps": 1, "copy_steps": 1}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus.tokenizer_texts(0, 200), vocab_size=1000)


@pytest.fixture(scope="module")
def sample(tokenizer) -> list[list[dict[str, str]]]:
    return list(corpus.chats(1, tokenizer, 1500))


@pytest.fixture(scope="module")
def rich_sample(tokenizer) -> list[list[dict[str, str]]]:
    return list(corpus.chats(1, tokenizer, 600, corpus.Mix(rich=1.0)))


@pytest.fixture(scope="module")
def english_sample(tokenizer) -> list[list[dict[str, str]]]:
    return list(corpus.chats(1, tokenizer, 400, corpus.Mix(scrambled=1.0, rate=0.5, rich=0.5, english=True)))


def _ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_corpus_is_deterministic_per_seed(tokenizer, sample) -> None:
    assert list(corpus.chats(1, tokenizer, 50)) == sample[:50]
    assert list(corpus.chats(2, tokenizer, 50)) != sample[:50]


def test_corpus_has_every_kind_of_chat(sample) -> None:
    users = [c[-2]["content"] for c in sample]
    replies = [c[-1]["content"] for c in sample]
    grounded = [r for u, r in zip(users, replies) if u.startswith("Context:\n[1]")]
    assert len(grounded) > len(sample) / 2
    assert all(r.endswith("[1]") or r.startswith("{") for r in grounded)
    assert any(r.startswith("{") for r in replies) and any(c[0]["role"] == "system" for c in sample)
    assert sum(len(r) < 150 for u, r in zip(users, replies) if not u.startswith("Context:")) > 100


def test_grounded_sets_the_share_of_rag_prompt_chats_and_its_json_part(tokenizer, sample) -> None:
    def shares(chats: list) -> tuple[float, float]:
        grounded = [c[-1]["content"] for c in chats if c[-2]["content"].startswith("Context:\n")]
        return len(grounded) / len(chats), sum(r.startswith("{") for r in grounded) / len(chats)

    default, half = shares(sample), shares(list(corpus.chats(1, tokenizer, 1500, corpus.Mix(grounded=0.5))))
    assert 0.6 < default[0] < 0.8 and 0.07 < default[1] < 0.13  # 0.75, of which 0.1 JSON (some are dropped as unclean)
    assert 0.3 < half[0] < 0.55 and 0.04 < half[1] < 0.09  # 0.5, of which 2 in 15 JSON
    assert shares(list(corpus.chats(1, tokenizer, 100, corpus.Mix(grounded=0.0))))[0] == 0.0
    grounded, as_json = shares(list(corpus.chats(1, tokenizer, 1500, corpus.Mix(grounded=0.5, json_share=0.5))))
    assert 0.4 < as_json / grounded < 0.6  # json_share: of the grounded chats, those asking for JSON


def test_json_unnamed_asks_for_json_without_keys_and_gets_the_default_ones(tokenizer, sample) -> None:
    def replies(chats: list) -> list[tuple[str, dict]]:
        return [(c[-2]["content"], json.loads(c[-1]["content"])) for c in chats if c[-1]["content"].startswith("{")]

    assert not any(tuple(r) == corpus.DEFAULT_KEYS for _, r in replies(sample))  # off by default
    mixed = replies(list(corpus.chats(1, tokenizer, 1500, corpus.Mix(unnamed=0.5))))
    unnamed = [(q, r) for q, r in mixed if tuple(r) == corpus.DEFAULT_KEYS]
    assert 0.35 < len(unnamed) / len(mixed) < 0.65, (len(unnamed), len(mixed))
    for question, reply in unnamed:
        assert any(request in question for request in corpus.UNNAMED_REQUESTS)
        assert "todo" not in question and "urgent" not in question  # ("reply" is also a word of the RAG instruction)
        assert isinstance(reply["todo"], list) and isinstance(reply["urgent"], bool)
    assert any(q.startswith("Context:\n") for q, _ in unnamed) and any(not q.startswith("Context:") for q, _ in unnamed)
    assert DemoParams(json_unnamed=0.5).json_unnamed == 0.5


def test_escape_tokens_make_each_json_escape_one_token_like_the_character_it_stands_for() -> None:
    from studio.core.demo_model.build import JSON_ESCAPES, make_tokenizer

    small = {"vocab_size": 1000, "hidden_size": 64, "layers": 2, "heads": 4, "intermediate_size": 128}
    plain, escaped = make_tokenizer(DemoParams(**small)), make_tokenizer(DemoParams(**small, escape_tokens=True))
    text = 'The app shows "Ready" when it is.\nThen press "OK" and wait.\n\n- Done'
    quoted = json.dumps(text, ensure_ascii=False)[1:-1]  # the same text inside a JSON string
    count = lambda tok, t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert count(escaped, quoted) == count(escaped, text) < count(plain, quoted)
    assert all(count(escaped, e) == 1 for e in JSON_ESCAPES) and len(escaped) == len(plain) + len(JSON_ESCAPES)
    assert escaped.decode(escaped(quoted, add_special_tokens=False)["input_ids"]) == quoted


@pytest.mark.parametrize("kind", ["sample", "rich_sample", "english_sample"])
def test_corpus_never_holds_eval_questions_facts_docs_or_house_keys(kind: str, request: pytest.FixtureRequest) -> None:
    sample = request.getfixturevalue(kind)
    examples = [json.loads(line) for line in (ROOT / "sample_data" / "eval.jsonl").read_text().splitlines() if line.strip()]
    pattern = corpus.fact_pattern(corpus.eval_facts())
    assert pattern is not None and len(corpus.eval_facts()) > 100
    question_grams = set().union(*(_ngrams(e["question"]) for e in examples))
    # The PDF and DOCX are rendered from sources/*.md, so the text files cover every document.
    texts = [*(ROOT / "sample_data" / "docs").glob("*.[mth]*"), *(ROOT / "sample_data" / "sources").glob("*.md")]
    doc_grams = set().union(*(_ngrams(p.read_text(errors="ignore")) for p in texts))
    assert len(doc_grams) > 5000
    for chat in sample:
        text = "\n".join(m["content"] for m in chat)
        assert pattern.search(text) is None, text
        assert not _ngrams(text) & question_grams, text
        assert not _ngrams(text) & doc_grams, text
        assert not re.search(r"halden|brindlecote|gridshare|linkbox", text, re.IGNORECASE)
        assert all(f'"{key}":' not in text for key in corpus.HOUSE_KEYS)


def test_rich_passages_are_laid_out_like_real_chunks_and_zero_leaves_the_plain_corpus(tokenizer, sample, rich_sample) -> None:
    contexts = [c[-2]["content"] for c in rich_sample if c[-2]["content"].startswith("Context:")]
    assert sum("**" in c and ":** " in c for c in contexts) > len(contexts) / 3  # bold labelled paragraphs
    assert any("Owner's Manual - " in c and "· page " in c for c in contexts)  # PDF pages
    assert any(" – " in c.split("\n")[1] for c in contexts)  # headings like real ones: "A: b > C-1 – D"
    assert list(corpus.chats(1, tokenizer, 50, corpus.Mix(rich=0.0))) == sample[:50]


def test_english_scrambling_swaps_in_everyday_words_keeping_capitals(english_sample) -> None:
    words = set(corpus.english_words())
    assert len(words) > 15_000 and {"battery", "between", "install"} <= words
    assert not words & {"halden", "brindlecote", "gridshare", "linkbox"}
    contexts = "\n".join(c[-2]["content"] for c in english_sample if c[-2]["content"].startswith("Context:"))
    seen = {w.lower() for w in re.findall(r"[A-Za-z]+", contexts)}
    assert len(seen & words - set(map(str.lower, corpus._WORDS))) > 2000  # far beyond the corpus's own words
    assert re.search(r"(?:^|\. )[A-Z][a-z]+", contexts)  # a swapped sentence start stays capitalised
    plain, english = list(corpus.tokenizer_texts(0, 10)), list(corpus.tokenizer_texts(0, 10, english=True))
    assert english[:len(plain)] == plain and set(" ".join(english[len(plain):]).split()) == words


def test_fact_pattern_matches_whole_phrases_only() -> None:
    pattern = corpus.fact_pattern(["5%", "24 hours", "CC-"])
    assert pattern.search("about 5% more") and pattern.search("for 24 Hours.") and pattern.search("code CC-12")
    assert not pattern.search("about 15% more") and not pattern.search("124 hours") and not pattern.search("2.5% more")


def test_build_command_writes_a_loadable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "demo"
    assert main(["demo-model", "build", "--small", "--steps", "2", "--copy-steps", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "step 2/2" in err and "copy phase: 1 steps" in err and "loss" in err and "ETA" in err
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id and model.generation_config.pad_token_id == tok.pad_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True, return_tensors="pt")
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] <= ids.shape[1] + 3
    readme = (out / "README.md").read_text()
    assert "not a useful assistant" in readme and "--steps 2" in readme
    assert json.loads((out / "build.json").read_text())["steps_done"] == 3


def test_a_circuit_build_boosts_its_copy_heads_and_says_so(tmp_path: Path) -> None:
    params = DemoParams(**{**CIRCUIT, "steps": 1, "chats_per_step": 2, "vocab_size": 2000, "layers": 2})
    result = build(tmp_path / "demo", params, log=lambda _: None)
    assert result is not None and json.loads((result.path / "build.json").read_text())["params"]["copy_boost"] == 4.0
    assert "copy heads' output was scaled by 4" in (result.path / "README.md").read_text()


def test_build_is_deterministic(tmp_path: Path) -> None:
    import safetensors.torch

    params = DemoParams(steps=2, **SMALL)
    a, b = build(tmp_path / "a", params, log=lambda _: None), build(tmp_path / "b", params, log=lambda _: None)
    wa = safetensors.torch.load_file(a.path / "model.safetensors")
    wb = safetensors.torch.load_file(b.path / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_bf16_builds_train_under_autocast_and_stay_deterministic(tmp_path: Path) -> None:
    import safetensors.torch
    import torch

    load = lambda r: safetensors.torch.load_file(r.path / "model.safetensors")  # noqa: E731
    bf16 = [load(build(tmp_path / name, DemoParams(steps=2, bf16=True, **SMALL), log=lambda _: None)) for name in "ab"]
    fp32 = load(build(tmp_path / "c", DemoParams(steps=2, **SMALL), log=lambda _: None))
    assert all((bf16[0][k] == bf16[1][k]).all() and bf16[0][k].dtype == torch.float32 for k in fp32)
    assert all(torch.isfinite(w).all() for w in bf16[0].values())
    assert any(not torch.equal(bf16[0][k], fp32[k]) for k in fp32)  # the passes really ran in bfloat16


def test_cancelled_build_leaves_the_old_folder_alone(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("old model")
    cancel = threading.Event()
    cancel.set()
    assert build(out, DemoParams(steps=2, **SMALL), log=lambda _: None, cancel=cancel) is None
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".demo*"))


@pytest.mark.parametrize(("argv", "message"), [(["--steps", "0"], "--steps should be at least 1, got 0."),
                                               (["--minutes", "-1"], "--minutes should be above 0, got -1.0."),
                                               (["--copy-steps", "-1"], "--copy-steps should be 0 or more, got -1.")])
def test_build_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["demo-model", "build", "--out", str(tmp_path / "x"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_scaling_the_stream_keeps_every_logit_and_shrinks_the_stream(tokenizer, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from studio.core.demo_model.build import make_model, save, scale_stream

    model, _pins = make_model(tokenizer, DemoParams(**SMALL))
    ids = torch.tensor([tokenizer("How do I update my card details?")["input_ids"]])
    with torch.no_grad():
        before = model(ids, output_hidden_states=True)
        scale_stream(model, 0.01)
        after = model(ids, output_hidden_states=True)
    assert torch.allclose(before.logits, after.logits, atol=1e-4)
    for old, new in zip(before.hidden_states[:-1], after.hidden_states[:-1]):  # the last one is after the final norm
        assert torch.allclose(new, old * 0.01, atol=1e-6)
    reloaded = AutoModelForCausalLM.from_pretrained(save(model, tokenizer, tmp_path / "scaled"))  # the eps travels in the config
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, before.logits, atol=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [({"steps": 0}, "`steps` should be a number between 1"),
                                                 ({"learning_rate": 0.5}, "`learning_rate` should be a number between"),
                                                 ({"stream_scale": 0}, "`stream_scale` should be a number between"),
                                                 ({"threads": 1.5}, "`threads` should be a whole number"),
                                                 ({"hidden_size": 96, "heads": 5}, "not a multiple of `heads`"),
                                                 ({"minutes": 0}, "`minutes` should be a positive number"),
                                                 ({"head_gain": 10.0}, "`head_gain` change the copying circuit"),
                                                 ({**CIRCUIT, "head_gain": 0.1}, "`head_gain` should be a number between"),
                                                 ({**CIRCUIT, "layers": 1}, "copying circuit needs 2 layers or more"),
                                                 ({**CIRCUIT, "head_dim": 32, "rope_theta": 10000.0}, "slow frequency pairs")])
def test_params_out_of_range_are_refused_before_building(kwargs: dict, message: str) -> None:
    from studio.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        DemoParams(**kwargs)


def test_committed_model_is_small_and_loads() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = sum(f.stat().st_size for f in DEFAULT_OUT.glob("*.safetensors"))
    assert 0 < weights <= 40 * 1024 * 1024
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_OUT)
    tok = AutoTokenizer.from_pretrained(DEFAULT_OUT)
    assert model.config.model_type == "llama" and 5e6 <= model.num_parameters() <= 20e6
    assert tok.chat_template and "not a useful assistant" in (DEFAULT_OUT / "README.md").read_text()


def _demo_parser() -> argparse.ArgumentParser:
    """The studio's command line with only the demo-model command."""
    from studio.core.demo_model.command import add_demo_model_parser

    parser = argparse.ArgumentParser()
    add_demo_model_parser(parser.add_subparsers(dest="command"))
    return parser


def test_copy_circuit_flag_builds_the_circuit_shape_and_says_so_in_the_command() -> None:
    from studio.core.demo_model.command import command_line, params_from_args

    parser = _demo_parser()
    plain = parser.parse_args(["demo-model", "build"])
    wired = parser.parse_args(["demo-model", "build", "--copy-circuit"])
    assert not params_from_args(plain).copy_circuit and params_from_args(plain).steps == DemoParams().steps
    params = params_from_args(wired)
    assert (params.copy_circuit, params.heads, params.head_dim, params.rope_theta, params.steps) == \
        (True, CIRCUIT["heads"], CIRCUIT["head_dim"], CIRCUIT["rope_theta"], CIRCUIT["steps"])
    assert params_from_args(parser.parse_args(["demo-model", "build", "--copy-circuit", "--steps", "9"])).steps == 9
    assert command_line(wired).endswith("--copy-circuit")


def test_set_gives_any_build_parameter_over_the_preset_and_the_command_line_rebuilds_it() -> None:
    from studio.core.demo_model.command import command_line, params_from_args

    parser = _demo_parser()
    args = parser.parse_args(["demo-model", "build", "--copy-circuit", "--set", "grounded=0.4", "--set", "copy-boost=2",
                              "--set", "english_words=no", "--set", "quote=sentence"])
    params = params_from_args(args)
    assert (params.grounded, params.copy_boost, params.english_words, params.quote) == (0.4, 2.0, False, "sentence")
    assert params.heads == CIRCUIT["heads"]  # the rest of the preset stays
    again = parser.parse_args(command_line(args).split()[1:])  # the README's command gives the same parameters
    assert params_from_args(again) == params


@pytest.mark.parametrize(("item", "says"), [
    ("grounded", "is not NAME=VALUE"), ("groundd=0.4", "no build parameter 'groundd'"),
    ("steps=9", "use --steps"), ("grounded=lots", "should be a number"), ("english_words=maybe", "true or false"),
    ("heads=2.5", "a whole number"), ("grounded=1.5", "between 0.0 and 1.0"),
])
def test_set_names_the_item_that_is_wrong(item: str, says: str) -> None:
    from studio.core.demo_model.command import params_from_args
    from studio.errors import StudioError

    parser = _demo_parser()
    with pytest.raises(StudioError, match=re.escape(says)):
        params_from_args(parser.parse_args(["demo-model", "build", "--set", item]))


def test_copy_circuit_help_describes_the_preset_it_builds(capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-written description once went stale when the preset changed: it is now made from CIRCUIT."""
    from studio.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo-model", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{CIRCUIT['heads']} heads of width {CIRCUIT['head_dim']}" in text
    assert f"compare {CIRCUIT['copy_span']} tokens" in text and f"{CIRCUIT['steps']} steps" in text
    assert f"{round(CIRCUIT['grounded'] * 100)}% of chats" in text


def test_marking_replies_teaches_the_tokenizer_each_role_name_as_one_token_and_wires_the_role_head() -> None:
    from studio.core.demo_model.build import ROLES, make_model, make_tokenizer

    params = DemoParams(**{**CIRCUIT, "skip_own_reply": True, "vocab_size": 2000, "layers": 2})
    tokenizer = make_tokenizer(params)
    assert all(len(tokenizer(role, add_special_tokens=False)["input_ids"]) == 1 for role in ROLES)
    model, pins = make_model(tokenizer, params)
    head = params.copy_span * params.head_dim  # layer 0's role head comes after the previous-token heads
    assert model.model.layers[0].self_attn.v_proj.weight[head].abs().sum() > 0 and pins is not None
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                                        tokenize=True, return_dict=True)["input_ids"]
    import torch

    with torch.no_grad():
        stream = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
    mark = (stream[:, circuit.role_dims(params.hidden_size)[-1]] / stream[:, 0]).round().tolist()
    reply = ids.index(tokenizer.convert_tokens_to_ids("assistant"))
    assert mark == [0.0] * reply + [1.0] * (len(ids) - reply)


def test_muting_passage_ends_mutes_every_bracket_token_and_question_and_refuses_stop_at_brackets_too() -> None:
    from studio.core.demo_model.build import make_model, make_tokenizer

    params = DemoParams(**{**CIRCUIT, "mute_passage_ends": True, "vocab_size": 2000, "layers": 2})
    tokenizer = make_tokenizer(params)
    _model, pins = make_model(tokenizer, params)
    (_, muted, _, _), = pins.within
    words = [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.convert_ids_to_tokens(muted.tolist())]
    assert "Question" in words and "[" in words and all("[" in w for w in words if w != "Question"), words
    with pytest.raises(Exception, match="choose one"):
        DemoParams(**{**CIRCUIT, "skip_own_reply": True, "stop_at_brackets": True, "mute_passage_ends": True})
    with pytest.raises(Exception, match="copying circuit"):
        DemoParams(mute_passage_ends=True)


def test_symbol_tokens_make_each_symbol_of_the_docs_one_token_alone_and_after_a_space() -> None:
    from studio.core.demo_model.build import SYMBOLS, make_tokenizer

    def pieces(tokenizer, text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    plain = make_tokenizer(DemoParams())
    assert any(pieces(plain, s) > 1 for s in SYMBOLS)  # what the setting is for: "·" alone is bytes
    tokenizer = make_tokenizer(DemoParams(symbol_tokens=True))
    assert all(pieces(tokenizer, s) == 1 and pieces(tokenizer, f" {s}") == 1 for s in SYMBOLS)
    assert tokenizer.decode(tokenizer("Care Plus costs £4.50 a month, 2–3 days at −5 °C")["input_ids"]) == \
        "Care Plus costs £4.50 a month, 2–3 days at −5 °C"


def test_symbol_tokens_put_the_pound_and_the_minus_into_the_corpus_so_their_tokens_are_trained() -> None:
    import itertools

    from studio.core.demo_model.build import make_tokenizer

    def token_counts(params: DemoParams, tokenizer) -> dict[str, int]:
        chats = itertools.islice(corpus.chats(1, tokenizer, 300, params.mix()), 300)
        ids = [i for chat in chats for m in chat for i in tokenizer(m["content"], add_special_tokens=False)["input_ids"]]
        return {s: ids.count(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s)[0])) for s in (" £", " −")}

    params = DemoParams(**{**CIRCUIT, "symbol_tokens": True, "grounded": 0.35})
    tokenizer = make_tokenizer(params)
    assert all(n > 10 for n in token_counts(params, tokenizer).values())  # an untrained " £" once became a JSON key
    off = dataclasses.replace(params, symbol_tokens=False)
    assert token_counts(off, tokenizer) == {" £": 0, " −": 0}  # the default build's corpus is unchanged


def test_pausing_after_json_marks_the_tokens_a_key_follows_and_nothing_else() -> None:
    from studio.core.demo_model.build import make_model, make_tokenizer

    params = DemoParams(**{**CIRCUIT, "pause_after_json": True, "escape_tokens": True, "layers": 2})
    tokenizer = make_tokenizer(params)
    model, _pins = make_model(tokenizer, params)
    pause_dim = circuit.role_dims(params.hidden_size)[0] - 1  # below the role head's dimensions
    marked = model.model.embed_tokens.weight[:, pause_dim].nonzero().flatten().tolist()
    words = [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.convert_ids_to_tokens(marked)]
    assert "{\"" in words and "\"," in words, words
    assert all(w.lstrip() == "{\"" or w.endswith(("\",", "],")) for w in words), words
    house = '{"answer": "Sorry.\\n\\n", "steps": [], "escalate": false}'
    pieces = [tokenizer.decode([i]) for i in tokenizer(house, add_special_tokens=False)["input_ids"]]
    keys_after = ["".join(pieces[i + 1:i + circuit.PAUSE_SPAN]) for i, p in enumerate(pieces) if p in words]
    assert [k.strip(' ":') for k in keys_after] == ["answer", "steps", "escalate"], pieces  # each in a pause
    with pytest.raises(Exception, match="copying circuit"):
        DemoParams(pause_after_json=True)


def test_copying_from_the_context_only_marks_everything_but_the_retrieved_passages() -> None:
    from studio.core.demo_model.build import MARKERS, ROLES, make_model, make_tokenizer
    from studio.core.rag.answer import build_prompt
    from studio.core.rag.params import AnswerParams

    params = DemoParams(**{**CIRCUIT, "copy_from": "context", "vocab_size": 2000, "layers": 2})
    tokenizer = make_tokenizer(params)
    assert all(len(tokenizer(name, add_special_tokens=False)["input_ids"]) == 1 for name in ROLES + MARKERS)
    model, _ = make_model(tokenizer, params)
    passage = corpus.Passage("The Halo glows teal.", "What does teal mean?", "a.md", ("Lights",), None)
    prompt = build_prompt("What does teal mean?", [corpus._retrieved(passage, 1)], tokenizer, AnswerParams())
    text = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."}, *prompt.messages,
                                          {"role": "assistant", "content": "It is fine."}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    import torch

    with torch.no_grad():
        stream = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
    mark = (stream[:, circuit.role_dims(params.hidden_size)[-1]] / stream[:, 0]).round().tolist()
    opened, closed = ids.index(tokenizer.convert_tokens_to_ids("Context")), ids.index(tokenizer.convert_tokens_to_ids("Question"))
    assert mark[opened:closed] == [0.0] * (closed - opened), "the retrieved passages are open to copying"
    assert mark[1:opened] == [1.0] * (opened - 1) and mark[closed:] == [1.0] * (len(ids) - closed)  # 0: the sink
    with pytest.raises(Exception, match="skip_own_reply"):
        DemoParams(**{**CIRCUIT, "copy_from": "context", "skip_own_reply": False})
    with pytest.raises(Exception, match="copy_boost"):
        DemoParams(copy_boost=4.0)


def test_sentence_quotes_quote_the_answering_sentence_and_change_nothing_else(tokenizer) -> None:
    plain = list(corpus.chats(1, tokenizer, 300))
    short = list(corpus.chats(1, tokenizer, 300, corpus.Mix(quote="sentence")))
    shorter = 0
    for a, b in zip(plain, short):
        assert [m["content"] for m in a[:-1]] == [m["content"] for m in b[:-1]], "the prompts are the same chats"
        if a[-1]["content"] != b[-1]["content"]:  # a grounded reply: a shorter quote from passage [1], still cited
            quote = b[-1]["content"]
            if quote.startswith("{"):
                quote = next(v for v in json.loads(quote).values() if isinstance(v, str))
            assert quote.endswith(" [1]") and quote[:-4] in a[-1]["content"] and quote[:-4] in b[-2]["content"]
            shorter += len(quote) < len(a[-1]["content"])
    assert shorter > 100
    # The answer holds the sentence the question was made from: "How often should I descale" -> "descaled every".
    lex = corpus.Lexicon(random.Random(5))
    for _ in range(200):
        p = corpus.passage(lex, mark=True)
        question = next(q for s, q in corpus.FACTS if _template_matches(q, p.question))
        sentence = next(s for s, q in corpus.FACTS if q == question)
        assert re.match(_template_pattern(sentence), p.answer), (p.question, p.answer)


def _template_pattern(template: str) -> str:
    return "".join(".+?" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{\w+\})", template))


def _template_matches(template: str, text: str) -> bool:
    return re.fullmatch(_template_pattern(template), text) is not None


def test_block_quotes_start_with_passage_ones_header_as_the_prompt_shows_it(tokenizer) -> None:
    chats = list(corpus.chats(1, tokenizer, 200, corpus.Mix(quote="block")))
    grounded = [c for c in chats if c[-1]["content"].startswith("[1] (")]
    assert len(grounded) > 100
    for c in grounded:
        block = c[-1]["content"]
        assert f"Context:\n{block}\n\n" in c[-2]["content"], "the reply is passage [1]'s block, word for word"
    with pytest.raises(Exception, match="quote"):
        DemoParams(quote="paragraph")
    with pytest.raises(Exception, match="skip_own_reply"):
        DemoParams(skip_own_reply=True)


def test_the_builds_head_gain_reaches_the_tied_output_head() -> None:
    import torch

    from studio.core.demo_model.build import make_model, make_tokenizer

    params = DemoParams(**{**CIRCUIT, "vocab_size": 2000, "layers": 2})
    tokenizer = make_tokenizer(params)
    rows = {gain: make_model(tokenizer, DemoParams(**{**params.to_dict(), "head_gain": gain}))[0].lm_head.weight.detach()
            .norm(dim=1) for gain in (3.0, 10.0)}
    assert torch.allclose(rows[10.0], rows[3.0] * 10 / 3, rtol=1e-4)
