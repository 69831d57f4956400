"""The copying circuit the demo build starts from: a random-init model that copies a repeated span at once."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from studio.core.demo_model import circuit
from studio.core.demo_model.train import CIRCUIT, DemoParams


def _model(wired: bool, vocab: int = 3000, seed: int = 0, span: int = circuit.SPAN, **wiring):
    params = DemoParams(**CIRCUIT)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=params.hidden_size, num_hidden_layers=2,
                         num_attention_heads=params.heads, num_key_value_heads=params.heads, head_dim=params.head_dim,
                         intermediate_size=params.intermediate_size, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": params.rope_theta}, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    if wired:
        circuit.wire(model, sink_token=0, seed=seed, span=span, **wiring)
    return model


def _repeat_batch(vocab: int, length: int, rows: int = 4, seed: int = 1):
    """Random tokens after a sink token; a span of a quarter of the length is repeated later on."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (rows, length), generator=g)
    ids[:, 0] = 0
    span, start = length // 4, length // 2
    ids[:, start:start + span] = ids[:, start - span - 20:start - 20]
    return ids, torch.arange(start, start + span - 1)  # positions whose next token is a copy


@pytest.mark.parametrize("length,span", [(256, 2), (1400, 2), (1400, 3), (1400, 7)])
def test_a_wired_model_copies_a_repeated_span_before_any_training(length, span):
    ids, where = _repeat_batch(3000, length)
    with torch.no_grad():
        predicted = _model(True, span=span)(input_ids=ids).logits.argmax(-1)
    accuracy = (predicted[:, where] == ids[:, where + 1]).float().mean().item()
    assert accuracy > 0.85, f"copied {accuracy:.0%} of a repeated span over {length} tokens"


def test_the_same_model_without_the_circuit_does_not_copy():
    ids, where = _repeat_batch(3000, 256)
    with torch.no_grad():
        predicted = _model(False)(input_ids=ids).logits.argmax(-1)
    assert (predicted[:, where] == ids[:, where + 1]).float().mean().item() < 0.05


def test_where_nothing_repeats_the_copy_heads_rest_on_the_first_token():
    ids = torch.randint(10, 3000, (2, 300), generator=torch.Generator().manual_seed(3))
    ids[:, 0] = 0
    model = _model(True)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        attentions = model(input_ids=ids, output_attentions=True).attentions
    previous = attentions[0][:, 0, torch.arange(1, 300), torch.arange(0, 299)].mean().item()
    sink = attentions[1][:, :circuit.COPY_HEADS, 50:, 0].mean().item()
    assert previous > 0.9, f"layer 0's head 0 puts {previous:.0%} on the previous token"
    assert sink > 0.3, f"with nothing to copy the copy heads put only {sink:.0%} on the first token"


def test_pinned_entries_come_back_after_an_optimizer_step_and_the_rest_trains():
    model = _model(False)
    pins = circuit.wire(model, sink_token=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head_before = model.lm_head.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids, _ = _repeat_batch(3000, 128, rows=2)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    pins.restore()
    for parameter, mask, values in pins.entries:
        assert torch.equal(parameter.data[mask], values)
    for matrix, columns, norms in pins.norms:  # each token keeps its embedding norm; its direction trains
        assert torch.allclose(matrix.data[:, columns].norm(dim=1, keepdim=True), norms, rtol=1e-5)
    tokens = model.model.embed_tokens.weight[:, 1:model.config.hidden_size // 2]
    assert not torch.equal(tokens, before["model.embed_tokens.weight"][:, 1:model.config.hidden_size // 2])
    layer1 = model.model.layers[1].self_attn
    assert torch.equal(layer1.q_proj.weight[: circuit.COPY_HEADS * model.config.head_dim],
                       before["model.layers.1.self_attn.q_proj.weight"][: circuit.COPY_HEADS * model.config.head_dim])
    assert not torch.equal(layer1.o_proj.weight, before["model.layers.1.self_attn.o_proj.weight"]), "copy output is free"
    # The output head is the embeddings turned by a fixed matrix, so it moves with them (one shared weight).
    assert not torch.equal(model.lm_head.weight, head_before)
    turn = model.lm_head.parametrizations.weight[0].turn
    assert torch.allclose(model.lm_head.weight, model.model.embed_tokens.weight @ turn)
    circuit.untie_head(model)
    assert "lm_head.weight" in dict(model.named_parameters())
    assert pins.count() > 0


def test_a_shape_that_cannot_hold_the_circuit_is_named():
    assert circuit.problem(1, 4, 128, 1e14) == "the copying circuit needs 2 layers or more, not 1"
    assert "needs 3 heads" in circuit.problem(4, 2, 128, 1e14)
    assert "slow frequency pairs" in circuit.problem(4, 4, 32, 1e4)
    assert circuit.problem(4, 4, 128, 1e14) is None


def test_a_common_token_is_continued_from_where_the_two_last_tokens_occurred_together():
    """'X' occurs many times with different successors; only one earlier 'Y X' says what comes next."""
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(10, 3000, (1, 400), generator=g)
    ids[0, 0] = 0
    common, before, after = 7, 8, 9
    ids[0, 20:300:10] = common  # 28 earlier "X", each followed by a random token
    ids[0, 151], ids[0, 152], ids[0, 153] = before, common, after  # the one earlier "Y X Z"
    ids[0, 398], ids[0, 399] = before, common
    margins = {}
    for span in (1, 2):
        model = _model(False)
        circuit.wire(model, sink_token=0, span=span)
        with torch.no_grad():
            top = model(input_ids=ids).logits[0, -1].topk(2)
        assert top.indices[0].item() == after
        margins[span] = (top.values[0] - top.values[1]).item()
    # One token matches all 28 places "X" occurred, so the right successor barely wins; two tokens pick it out.
    assert margins[2] > 3 > margins[1], margins


def test_three_tokens_pick_out_a_common_pair_and_two_still_start_a_quote():
    """'Y X' occurs many times with different successors (like "if the"); only one earlier 'W Y X' says what
    comes next. With three tokens compared that one wins clearly; with two it is one of 28."""
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(10, 3000, (1, 400), generator=g)
    ids[0, 0] = 0
    w, y, x, z = 6, 7, 8, 9
    ids[0, 20:300:10], ids[0, 21:300:10] = y, x  # 28 earlier "Y X", each followed by a random token
    ids[0, 150], ids[0, 151], ids[0, 152] = w, y, x
    ids[0, 153] = z
    ids[0, 397], ids[0, 398], ids[0, 399] = w, y, x
    margins = {}
    for span in (2, 3):
        with torch.no_grad():
            logits = _model(True, span=span)(input_ids=ids).logits[0, -1]
        margins[span] = (logits[z] - logits[torch.arange(len(logits)) != z].max()).item()
    assert margins[3] > 3 and margins[3] > margins[2] + 2, margins
    # A quote's second token: only the current token and the one before match, and span 3 still copies it.
    ids[0, 398], ids[0, 399] = ids[0, 305], ids[0, 306]
    with torch.no_grad():
        assert _model(True, span=3)(input_ids=ids).logits[0, -1].argmax().item() == ids[0, 307].item()


def test_of_two_equal_matches_primacy_copies_the_earlier_one():
    """'P Q R' occurs twice, followed by X the first time and Y the second; the end repeats 'P Q R'. Without
    primacy both score alike and the model cannot tell X from Y; with it, the earlier X wins clearly, however
    near the later one is (a reply quotes passage [1], which comes first)."""
    g = torch.Generator().manual_seed(8)
    ids = torch.randint(10, 3000, (1, 1200), generator=g)
    ids[0, 0] = 0
    phrase, first, second = [4, 5, 6], 8, 9
    ids[0, 100:103], ids[0, 103] = torch.tensor(phrase), first
    ids[0, 1100:1103], ids[0, 1103] = torch.tensor(phrase), second
    ids[0, 1197:1200] = torch.tensor(phrase)
    gaps = {}
    for primacy in (0.0, 12.0):
        with torch.no_grad():
            logits = _model(True, span=3, primacy=primacy)(input_ids=ids).logits[0, -1]
        top = logits.topk(2).indices.tolist()
        assert top[0] == first if primacy else set(top) == {first, second}
        gaps[primacy] = (logits[first] - logits[second]).item()
    assert abs(gaps[0.0]) < 1 and gaps[12.0] > 3, gaps
    # A better match still beats an earlier worse one: primacy only breaks ties.
    ids[0, 100] = 11  # the first occurrence now matches two tokens, the second all three
    with torch.no_grad():
        assert _model(True, span=3, primacy=12.0)(input_ids=ids).logits[0, -1].argmax().item() == second


SYSTEM, USER, ASSISTANT = 1, 2, 3  # role tokens in the synthetic chats below (0 is <|im_start|>, the sink)


def _chat(turns: list[tuple[int, int]], seed: int = 7):
    """A chat of (role, length) turns of random tokens, each after <|im_start|> and its role token; returns the
    ids and, per position, whether it lies in an assistant turn: from its role token up to the next one (the
    <|im_start|> that ends a reply still reads as part of it)."""
    g = torch.Generator().manual_seed(seed)
    ids, mine = [], []
    for role, length in turns:
        ids += [0, role, *torch.randint(10, 3000, (length,), generator=g).tolist()]
        mine += [bool(mine) and mine[-1], role == ASSISTANT, *[role == ASSISTANT] * length]
    return torch.tensor([ids]), torch.tensor(mine)


def _wired_with_roles(skip: bool, span: int = circuit.SPAN):
    model = _model(False)
    roles = {"reply_token": ASSISTANT, "role_tokens": (SYSTEM, USER, ASSISTANT)} if skip else {}
    pins = circuit.wire(model, sink_token=0, span=span, **roles)
    model.config._attn_implementation = "eager"
    return model, pins


def _reply_mark(model, ids):
    """The reply mark entering layer 1, as a share of the constant dimension (1 in a reply, 0 elsewhere)."""
    with torch.no_grad():
        stream = model(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
    return stream[:, circuit.role_dims(model.config.hidden_size)[-1]] / stream[:, 0]


def test_the_role_head_marks_every_position_of_an_assistant_turn_and_nothing_else():
    # A long RAG-like user turn, a reply, a 3-token user turn right after it, and a second reply.
    ids, mine = _chat([(SYSTEM, 12), (USER, 1100), (ASSISTANT, 150), (USER, 3), (ASSISTANT, 120)])
    model, _ = _wired_with_roles(True)
    mark = _reply_mark(model, ids)
    assert mark[mine].min().item() > 0.95, "a position in a reply is not marked"
    assert mark[~mine].abs().max().item() < 0.05, "a position outside the replies is marked"


def test_the_copy_heads_quote_the_prompt_but_never_the_models_own_reply():
    """The reply quotes a prompt span (copied), then repeats a phrase of its own (copied only without the mark)."""
    ids, _ = _chat([(USER, 300), (ASSISTANT, 200)])
    start = 2 + 300 + 2  # the reply's first token
    ids[0, start:start + 40] = ids[0, 100:140]  # a quote of the prompt
    ids[0, start + 120:start + 160] = ids[0, start + 60:start + 100]  # the reply repeating its own words
    quote, own = torch.arange(start + 1, start + 39), torch.arange(start + 121, start + 159)

    def copied(model, where):
        with torch.no_grad():
            predicted = model(input_ids=ids).logits.argmax(-1)
        return (predicted[0, where] == ids[0, where + 1]).float().mean().item()

    plain, _ = _wired_with_roles(False)
    marked, _ = _wired_with_roles(True)
    assert copied(plain, quote) > 0.85 and copied(plain, own) > 0.85  # without the mark both are copied
    assert copied(marked, quote) > 0.85, "with the reply mark the prompt is still quoted"
    assert copied(marked, own) < 0.1, "the reply mark should keep the copy heads off the model's own words"
    with torch.no_grad():
        attentions = marked(input_ids=ids, output_attentions=True).attentions[1][0, :circuit.COPY_HEADS]
    assert attentions[:, own][:, :, start - 1:].sum(-1).max().item() < 0.01, "a copy head looked at the reply"


def test_a_never_copied_token_ends_a_quote_and_the_rest_is_still_quoted():
    """The reply quotes a prompt span up to a bracket token: without nocopy_tokens the bracket is copied next; with
    it the copy heads look away from it, and a quote elsewhere in the prompt is copied as before."""
    bracket = 9  # random tokens are drawn from 10 up, so 9 only occurs where placed
    ids, _ = _chat([(USER, 300), (ASSISTANT, 100)])
    ids[0, 150] = bracket
    start = 2 + 300 + 2
    ids[0, start:start + 40] = ids[0, 110:150]  # quotes up to the bracket, which is next in the prompt
    ids[0, start + 50:start + 90] = ids[0, 200:240]  # a quote with no bracket in it
    end, plain_quote = start + 39, torch.arange(start + 51, start + 89)

    def run(nocopy):
        model = _model(False)
        circuit.wire(model, sink_token=0, reply_token=ASSISTANT, role_tokens=(SYSTEM, USER, ASSISTANT), nocopy_tokens=nocopy)
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
        return out.logits.argmax(-1)[0], out.attentions[1][0, :circuit.COPY_HEADS, end, 150]

    predicted, attention = run(())
    assert predicted[end].item() == bracket and attention.mean().item() > 0.5
    predicted, attention = run((bracket,))
    assert predicted[end].item() != bracket and attention.max().item() < 0.01, "a copy head looked at the bracket"
    assert (predicted[plain_quote] == ids[0, plain_quote + 1]).float().mean().item() > 0.85
    with pytest.raises(ValueError, match="reply mark"):
        circuit.wire(_model(False), sink_token=0, nocopy_tokens=(bracket,))
    with pytest.raises(Exception, match="stop_at_brackets"):
        DemoParams(**{**CIRCUIT, "skip_own_reply": False, "stop_at_brackets": True})


def test_a_muted_token_is_found_by_the_copy_heads_but_copied_as_nothing_even_after_training_steps():
    """A quote runs up to a muted token: the copy heads still land on it (it is the true continuation) but write
    nothing there, so it is not predicted; a quote elsewhere is copied as before, and Pins.restore puts a muted
    embedding that training moved back where no copy head's value reads it."""
    bracket = 9  # random tokens are drawn from 10 up, so 9 only occurs where placed
    ids = torch.randint(10, 3000, (1, 500), generator=torch.Generator().manual_seed(5))
    ids[0, 0], ids[0, 150] = 0, bracket
    ids[0, 300:340] = ids[0, 110:150]  # a quote that reaches the bracket
    ids[0, 400:440] = ids[0, 200:240]  # a quote with no bracket in it
    end, plain_quote = 339, torch.arange(401, 439)

    def run(model):
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
        return out.logits.argmax(-1)[0], out.attentions[1][0, :circuit.COPY_HEADS, end, 150]

    predicted, attention = run(_model(True))
    assert predicted[end].item() == bracket and attention.mean().item() > 0.5
    model = _model(False)
    pins = circuit.wire(model, sink_token=0, mute_tokens=(bracket,))
    predicted, attention = run(model)
    assert attention.mean().item() > 0.5, "the copy heads no longer find the quote's true continuation"
    assert predicted[end].item() != bracket, "the muted token was copied"
    assert (predicted[plain_quote] == ids[0, plain_quote + 1]).float().mean().item() > 0.85

    values = model.model.layers[1].self_attn.v_proj.weight[: circuit.COPY_HEADS * model.config.head_dim]
    with torch.no_grad():
        model.model.embed_tokens.weight[bracket] += torch.randn(model.config.hidden_size)  # what a training step may do
    assert (values @ model.model.embed_tokens.weight[bracket]).abs().max().item() > 0.1
    pins.restore()
    assert (values @ model.model.embed_tokens.weight[bracket]).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="not both"):
        circuit.wire(_model(False), sink_token=0, reply_token=ASSISTANT, role_tokens=(SYSTEM, USER, ASSISTANT),
                     nocopy_tokens=(bracket,), mute_tokens=(bracket,))


def test_at_a_pause_token_and_the_next_two_the_copy_heads_rest_on_the_sink_and_then_quote_on():
    """A quote with a pause token in it: at the pause token and the two after it the copy heads put their weight on
    the first token (copying nothing) even though the quote goes on there; from the next token on they quote as
    before. Without the pause the same model copies the quote on there too. (Seven-token heads, as the preset's: with
    two, the blocks fill the second half and leave no dimension for the mark.)"""
    pause = 9  # random tokens are drawn from 10 up, so 9 only occurs where placed
    ids = torch.randint(10, 3000, (1, 400), generator=torch.Generator().manual_seed(6))
    ids[0, 0], ids[0, 120] = 0, pause
    ids[0, 300:360] = ids[0, 100:160]  # a quote with the pause token at 320
    at, after = 320, torch.arange(320 + circuit.PAUSE_SPAN, 359)

    def run(model):
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
        sink = out.attentions[1][0, :circuit.COPY_HEADS, at:at + circuit.PAUSE_SPAN, 0].mean(0).tolist()
        return out.logits.argmax(-1)[0], sink

    predicted, sink = run(_model(True, span=7))
    paused = torch.arange(at, at + circuit.PAUSE_SPAN)
    assert (predicted[paused] == ids[0, paused + 1]).all() and max(sink) < 0.5
    predicted, sink = run(_model(True, span=7, pause_tokens=(pause,)))
    assert min(sink) > 0.9, f"at the pause token and the next two the copy heads put only {sink} on the first token"
    assert (predicted[paused] != ids[0, paused + 1]).all(), "the quote went on during the pause"
    assert (predicted[after] == ids[0, after + 1]).float().mean().item() > 0.85


def test_boost_makes_the_copy_heads_louder_and_touches_nothing_else():
    ids, where = _repeat_batch(3000, 256, rows=1)
    model = _model(True, span=3)
    o_proj = model.model.layers[1].self_attn.o_proj.weight
    before = o_proj.detach().clone()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, where]
    circuit.boost(model, 4.0)
    width = circuit.COPY_HEADS * model.config.head_dim
    assert torch.equal(o_proj[:, :width], before[:, :width] * 4) and torch.equal(o_proj[:, width:], before[:, width:])
    with torch.no_grad():
        louder = model(input_ids=ids).logits[0, where]
    target = ids[0, where + 1]

    def margin(values):
        picked = values.gather(1, target[:, None])[:, 0]
        return (picked - values.scatter(1, target[:, None], -1e9).max(-1).values).median().item()

    assert margin(louder) > margin(logits) + 0.3  # the final RMSNorm keeps it from growing 4 times


def test_head_gain_scales_the_tied_output_head_and_the_copy_still_wins():
    """The output head is the embeddings times head_gain: a larger gain widens every logit gap (what the model says
    without copying needs that room), and the copy heads, read through the same head, still pick the copied token."""
    ids, where = _repeat_batch(3000, 256, rows=1)
    rows = {}
    for gain in (3.0, 10.0):
        model = _model(True, span=3, head_gain=gain)
        rows[gain] = model.lm_head.weight.detach().norm(dim=1)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, where]
        assert (logits.argmax(-1) == ids[0, where + 1]).float().mean() > 0.9
    assert torch.allclose(rows[10.0], rows[3.0] * 10 / 3, rtol=1e-4)


CONTEXT, QUESTION = 4, 5  # the RAG prompt's markers in the chat below


def test_closed_tokens_leave_only_the_context_to_copy():
    """A user turn 'Context <passage> Question <question>' then a reply that quotes both: with the user's turn and
    "Question" closed, the passage is quoted and the question is not; with the user's turn open, both are."""
    g = torch.Generator().manual_seed(9)
    words = lambda n: torch.randint(10, 3000, (n,), generator=g).tolist()  # noqa: E731
    passage, question = words(300), words(60)
    reply = [*passage[100:140], *words(30), *question[10:50], *words(10)]
    ids = torch.tensor([[0, SYSTEM, *words(20), 0, USER, 7, CONTEXT, *passage, QUESTION, *question, 0, ASSISTANT, *reply]])
    start = ids.shape[1] - len(reply)
    quote, asked = torch.arange(start + 1, start + 39), torch.arange(start + 71, start + 109)
    roles = (SYSTEM, USER, ASSISTANT, CONTEXT, QUESTION)

    def copied(closed, where):
        model = _model(False)
        circuit.wire(model, sink_token=0, span=3, reply_token=ASSISTANT, role_tokens=roles, closed_tokens=closed)
        with torch.no_grad():
            predicted = model(input_ids=ids).logits.argmax(-1)
        return (predicted[0, where] == ids[0, where + 1]).float().mean().item()

    assert copied((), quote) > 0.85 and copied((), asked) > 0.85
    assert copied((SYSTEM, USER, QUESTION), quote) > 0.85, "the passage after Context should still be quoted"
    assert copied((SYSTEM, USER, QUESTION), asked) < 0.1, "the question after Question should not be copied"
    with pytest.raises(ValueError, match="closed ones"):
        circuit.wire(_model(False), sink_token=0, reply_token=ASSISTANT, role_tokens=roles[:3], closed_tokens=(QUESTION,))


def test_the_reply_mark_and_the_role_head_stay_as_wired_while_training():
    model, pins = _wired_with_roles(True, span=3)
    ids, mine = _chat([(USER, 100), (ASSISTANT, 60)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    pins.restore()
    mark = _reply_mark(model, ids)
    assert mark[mine].min().item() > 0.95 and mark[~mine].abs().max().item() < 0.05


def test_marking_replies_needs_a_head_more_and_a_recency_pair():
    assert "needs 4 heads" in circuit.problem(4, 3, 128, 1e14, span=3, skip_reply=True)
    assert circuit.problem(4, 4, 128, 1e14, span=3, skip_reply=True) is None
    assert "no frequency pair" in circuit.problem(4, 4, 128, 1e3, span=2, skip_reply=True)
    assert "preferring the earlier of two matches" in circuit.problem(4, 4, 128, 1e3, span=2, primacy=True)
    assert circuit.problem(4, 8, 64, 1e14, span=7, skip_reply=True, primacy=True) is None
    with pytest.raises(ValueError, match="role_tokens"):
        circuit.wire(_model(False), sink_token=0, reply_token=ASSISTANT, role_tokens=(SYSTEM, USER))
