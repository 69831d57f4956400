"""A copying circuit written into the demo model's weights before training, and held there while it trains.

A model this small, trained for minutes on a CPU, never learns by itself to copy from its context:
induction heads form after far more tokens than a 30-minute build sees, and scrambled passages, random-word
copy drills and dense induction drills all failed to grow one (see the model's README). Yet RAG needs exactly
that: the answer's facts are in the retrieved passages and must be quoted. So the build starts from weights
that already copy, the textbook two-layer induction circuit, and training learns when to use it.

The residual stream is split: dimension 0 is a constant, token embeddings live in the rest of the first
half, and the second half starts empty.
- Layer 0, `SPAN` previous-token heads: query and key read the constant through RoPE's fastest frequency
  pairs, phased so that head m attends m + 1 positions back; its value writes a projection of that
  earlier token into block m of the second half.
- Layer 1, `COPY_HEADS` induction heads compare the last `SPAN` tokens (the current one and the one before)
  with the `SPAN` tokens before each earlier position, on RoPE's slowest pairs (a large RoPE base makes most
  pairs turn less than half a radian over 1,400 positions, so the match does not depend on distance). The
  position that follows an earlier occurrence of the same two tokens wins; its value, the token there, is
  written through a fixed rotation A, and the output head starts as the embeddings turned by A, so that
  token gets the logit. Comparing two tokens rather than one matters on real documents, where a token like
  "**" or "the" occurs dozens of times with different successors. When nothing matches, the heads rest on
  the first token (the chat template's <|im_start|>), whose value is zero.
- Optionally (`reply_token`), one more layer-0 head marks the model's own replies: it attends to the nearest
  chat role token (the role names after <|im_start|>, recency from a RoPE pair turning under a quarter turn
  over the longest prompt) and writes 1 into a reserved dimension when that role is the assistant's. The copy
  heads' keys read that dimension with a large negative weight, so they copy from the prompt but never from
  what the model has just said: copying its own output is how a copying model falls into a loop ("the app
  is normal, as the app is normal, as ..."), since its own last words are always the closest exact match.
  A role name that is a whole token elsewhere also reads as a turn start (the file name user-manual.pdf opens
  with the token "user"): a reply that quotes it loses its mark until the next role token.
- Optionally (`primacy`), the copy heads prefer the earlier of two equally good matches, on the same kind of
  slow RoPE pair: a RAG reply quotes passage [1], which comes first, and help-centre passages repeat phrases
  ("the first 24 hours") that a later passage continues differently.
- Every other residual branch starts at zero, so random branches do not drown the circuit.

`wire` returns `Pins`: the entries the circuit needs (the constant and the empty half of every embedding, each
token's embedding norm, layer 0, the copy heads' queries, keys and values, the input norms of layers 0 and 1),
which the build puts back after every optimizer step. It also ties the output head to the embeddings (turned
by A) until the build saves: a free output head learns never to say tokens the training text rarely shows,
and then ignores the copy heads when they point at one. The copy heads' output, the embeddings' directions and
everything else train freely, so training decides how loudly to copy, and when.
"""

from __future__ import annotations

from typing import Any

SPAN = 2  # tokens a copy head compares: the current one and the one before
COPY_GAIN = 8.0  # the copy heads' starting loudness (wire's and the build's default)
HEAD_GAIN = 3.0  # the tied output head's scale while training (wire's and the build's default)
PAUSE_GAIN = 12.0  # after a pause token the sink's score is 1 + this times its own: above any match (see wire)
PAUSE_SPAN = 3  # positions a pause lasts: the pause token's and the next two (see wire)
COPY_HEADS = 3
FAST_PAIRS = 8  # RoPE frequency pairs used for "the position before" (4 alias at some distances near 1,000)
SLOW_ANGLE = 0.5  # pairs that turn less than this over MAX_SPAN positions compare tokens
MAX_SPAN = 1400
REPLY_SPAN = 2000  # prompt and reply: the role head's recency must not wrap over this many positions
ROLE_DIMS = 4  # reserved residual dimensions for the role head: role token, assistant's, another's, "in a reply"


def role_dims(hidden_size: int) -> list[int]:
    """The residual dimensions the role head reserves (the last of the first half); the last is the reply mark."""
    return list(range(hidden_size // 2 - ROLE_DIMS, hidden_size // 2))


def _recency_pair(head_dim: int, rope_theta: float) -> int | None:
    """The fastest RoPE pair that turns at most a quarter turn over REPLY_SPAN positions (sin is monotone there),
    if it turns at least a tenth of one (else nearby role tokens are not told apart)."""
    import math

    for i in range(head_dim // 2):
        turn = rope_theta ** (-2 * i / head_dim) * REPLY_SPAN
        if turn <= math.pi / 2:
            return i if turn >= math.pi / 20 else None
    return None


def _orthonormal(n: int, dims: list[int], d: int, generator: Any) -> Any:
    """n orthonormal vectors of dimension d that live only in `dims`."""
    import torch

    basis = torch.linalg.qr(torch.randn(len(dims), n, generator=generator))[0].T
    out = torch.zeros(n, d)
    out[:, dims] = basis
    return out


def problem(layers: int, heads: int, head_dim: int, rope_theta: float, span: int = SPAN, skip_reply: bool = False,
            primacy: bool = False) -> str | None:
    """Why a model of this shape cannot hold the circuit, or None when it can."""
    slow = sum(1 for i in range(head_dim // 2) if rope_theta ** (-2 * i / head_dim) * MAX_SPAN < SLOW_ANGLE)
    need = max(span + skip_reply, COPY_HEADS)
    if layers < 2:
        return f"the copying circuit needs 2 layers or more, not {layers}"
    if heads < need:
        return f"the copying circuit needs {need} heads or more, not {heads}"
    if (skip_reply or primacy) and _recency_pair(head_dim, rope_theta) is None:
        needs = "marking the model's own reply" if skip_reply else "preferring the earlier of two matches"
        return (f"heads of width {head_dim} with RoPE base {rope_theta:g} have no frequency pair that turns between a "
                f"tenth and a quarter turn over {REPLY_SPAN} positions, which {needs} needs")
    if slow < 8:
        return (f"heads of width {head_dim} with RoPE base {rope_theta:g} have {slow} slow frequency pairs; the copying "
                "circuit compares tokens on at least 8 (raise head_dim or rope_theta)")
    return None


def _role_head(model: Any, reserved: list[int], token_dims: list[int], head: int, freqs: list[float],
               reply_token: int, role_tokens: tuple[int, ...], role_gap: float, constant: float, n0: float,
               closed_tokens: tuple[int, ...] = ()) -> int:
    """Wire layer 0's head `head` to mark positions in an assistant turn (and in turns `closed_tokens` open);
    returns the dimension it writes.

    Reserved dimensions: every role token has c in `role` (the key); the assistant's has c in `mine` (the
    value), the others c in `theirs`, and all get the same token-part norm, so every role token has the same
    RMS and reads the same after RMSNorm. A role token d positions back scores B - Q sin(w d) on the recency
    pair (w: under a quarter turn over REPLY_SPAN, so the nearer of two role tokens wins by Q w per position)
    and every other token 0, so the head reads the role of the turn it is in and writes `constant` (what
    dimension 0 holds) into the `reply` dimension in an assistant turn, 0 elsewhere."""
    import math

    import torch

    cfg = model.config
    d, hd, half = cfg.hidden_size, cfg.head_dim, cfg.head_dim // 2
    role_dim, mine_dim, theirs_dim, reply_dim = reserved
    layer0 = model.model.layers[0].self_attn
    emb = model.model.embed_tokens.weight.data
    c = constant / 2
    roles = list(role_tokens)
    emb[roles, role_dim] = c
    emb[roles, theirs_dim] = c
    for token in (reply_token, *closed_tokens):
        emb[token, theirs_dim] = 0
        emb[token, mine_dim] = c
    part = emb[roles][:, token_dims]
    norm = float(part.norm(dim=1).mean())
    emb[torch.tensor(roles)[:, None], torch.tensor(token_dims)] = part * (norm / part.norm(dim=1, keepdim=True))
    n_role = 1.0 / math.sqrt((constant ** 2 + 3 * c ** 2 + norm ** 2) / d)  # RMSNorm's factor on a role token
    pair = _recency_pair(hd, cfg.rope_parameters["rope_theta"])
    assert pair is not None  # checked by problem()
    slope = role_gap / (6 * freqs[pair])  # Q
    base = slope + role_gap  # B: the farthest role token still beats every other token
    steady = half - 1  # the slowest pair: does not turn
    rows = slice(head * hd, (head + 1) * hd)
    for w in (layer0.q_proj.weight, layer0.k_proj.weight, layer0.v_proj.weight):
        w.data[rows] = 0
    q, k, v = layer0.q_proj.weight.data[rows], layer0.k_proj.weight.data[rows], layer0.v_proj.weight.data[rows]
    root = math.sqrt(math.sqrt(hd))  # q·k is divided by sqrt(hd)
    q[steady, 0] = math.sqrt(base) * root / n0
    k[steady, role_dim] = math.sqrt(base) * root / (c * n_role)
    # RoPE turns q (at t) and k (at s) on the pair: q_i k_{i+half} scores as sin(w (t - s)).
    q[pair, 0] = math.sqrt(slope) * root / n0
    k[pair + half, role_dim] = -math.sqrt(slope) * root / (c * n_role)
    v[0, mine_dim] = 1.0 / (c * n_role)
    layer0.o_proj.weight.data[:, rows] = 0
    layer0.o_proj.weight.data[reply_dim, head * hd] = constant
    return reply_dim


def boost(model: Any, factor: float) -> None:
    """Scale the copy heads' output (layer 1's o_proj columns of the first COPY_HEADS heads) by `factor`.

    Training lets the trained layers outvote the copy heads here and there, and one wrong token derails a quote;
    after training, louder copy heads hold the quote (the build's `copy_boost`; measured in the README)."""
    import torch

    width = COPY_HEADS * model.config.head_dim
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight[:, :width] *= factor


class _Rotated:
    """The output head as the embeddings turned by a fixed matrix (a parametrization: one shared weight)."""

    def __new__(cls, embedding: Any, turn: Any) -> Any:
        import torch

        class Rotated(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embedding = embedding
                self.register_buffer("turn", turn)

            def forward(self, _weight: Any) -> Any:
                return self.embedding.weight @ self.turn

        return Rotated()


def tie_head(model: Any, turn: Any) -> None:
    """Make the output head the embeddings times `turn` while training: a token the training text rarely shows
    then keeps an output row that its copied embedding still scores, where a free head learns never to say it."""
    from torch.nn.utils import parametrize

    parametrize.register_parametrization(model.lm_head, "weight", _Rotated(model.model.embed_tokens, turn))


def untie_head(model: Any) -> None:
    """Freeze the tied output head into a plain weight (before saving)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(model.lm_head, "weight"):
        parametrize.remove_parametrizations(model.lm_head, "weight", leave_parametrized=True)


class Pins:
    """Weight entries held at their wired values while the rest of the model trains (see `wire`)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any, Any]] = []  # (parameter, mask, values)
        self.norms: list[tuple[Any, Any, Any]] = []  # (matrix, columns, row norms)
        self.within: list[tuple[Any, Any, Any, Any]] = []  # (matrix, rows, columns, orthonormal basis of the allowed part)

    def add(self, parameter: Any, mask: Any) -> None:
        self.entries.append((parameter, mask, parameter.data[mask].clone()))

    def hold_norms(self, matrix: Any, columns: Any) -> None:
        """Keep each row's norm over `columns` as it is now (its direction still trains)."""
        self.norms.append((matrix, columns, matrix.data[:, columns].norm(dim=1, keepdim=True).clone()))

    def hold_within(self, matrix: Any, rows: Any, columns: Any, basis: Any) -> None:
        """Keep `rows` of `matrix`, over `columns`, in the span of `basis` (k x len(columns), orthonormal rows)."""
        self.within.append((matrix, rows, columns, basis))

    def restore(self) -> None:
        """Put every pinned entry back (call after each optimizer step)."""
        for parameter, mask, values in self.entries:
            parameter.data[mask] = values
        for matrix, rows, columns, basis in self.within:
            part = matrix.data[rows[:, None], columns]
            matrix.data[rows[:, None], columns] = (part @ basis.T) @ basis
        for matrix, columns, norms in self.norms:
            block = matrix.data[:, columns]
            matrix.data[:, columns] = block * (norms / block.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def count(self) -> int:
        return sum(int(mask.sum()) for _, mask, _ in self.entries)


MUTE_DIMS = 16  # the subspace of the token dimensions that muted tokens live in and the copy heads' values never read


def _mute_basis(token_dims: list[int], d: int, z: Any, seed: int) -> Any:
    """MUTE_DIMS orthonormal directions in `token_dims`, orthogonal to the sink's direction `z` (drawn from their own
    generator, so a build without muted tokens draws everything else as before)."""
    import torch

    g = torch.Generator().manual_seed(seed + 104729)
    raw = torch.randn(MUTE_DIMS, len(token_dims), generator=g)
    zt = z[token_dims]
    raw = raw - (raw @ zt)[:, None] * zt[None, :] / float(zt @ zt)
    basis = torch.linalg.qr(raw.T)[0].T  # MUTE_DIMS x len(token_dims)
    out = torch.zeros(MUTE_DIMS, d)
    out[:, token_dims] = basis
    return out


def wire(model: Any, sink_token: int, seed: int = 0, span: int = SPAN, constant: float = 0.3, prev_sharp: float = 110.0,
         match_score: float = 30.0, sink_at: float | None = None, copy_gain: float = COPY_GAIN, head_gain: float = HEAD_GAIN,
         reply_token: int | None = None, role_tokens: tuple[int, ...] = (), role_gap: float = 12.0,
         reply_penalty: float = 60.0, primacy: float = 0.0, closed_tokens: tuple[int, ...] = (),
         nocopy_tokens: tuple[int, ...] = (), mute_tokens: tuple[int, ...] = (), pause_tokens: tuple[int, ...] = (),
         pause_gain: float = PAUSE_GAIN) -> Pins:
    """Overwrite `model`'s random-init embeddings, output head and first two attention layers with the circuit.

    `span`: how many tokens a copy head compares (1 = the current token; 2 = it and the one before, which
    tells apart the many places a common token such as "the" or "**" occurs; 3 also tells apart the many
    places a common pair such as "if the" occurs). `sink_at`: the first token's score as a share of a full
    match (default: halfway between a one-token and a two-token match, half a match for span 1, so that a
    match of the last two tokens always copies: with span 3 also where no three-token one exists, as at the
    start of a quote). `reply_token` (the assistant's role token) and `role_tokens` (every role token, the
    assistant's too): wire the role head, so the copy heads score a position in an assistant turn
    `reply_penalty` lower (about two thirds of it in practice, as the stream entering layer 1 is louder than
    the embeddings) and never copy the model's own words; `role_gap` is how much more the role head scores a
    role token 6 positions nearer. `closed_tokens` (role tokens too): the segments they open are skipped like
    a reply, e.g. the user's and system's turns and the RAG prompt's "Question", so that only what follows
    "Context" (the retrieved passages) is copied. `primacy`: of two equally good matches the earlier scores
    this much more per REPLY_SPAN positions between them (primacy·sin(w·d) / (w·REPLY_SPAN) on the recency pair w, about
    primacy·d / REPLY_SPAN for a distance d; like reply_penalty, somewhat less in practice), so a quote of
    passage [1], which comes first, is continued there and not where a later passage repeats the same words.
    Between near positions it only breaks ties; across a long prompt it can outweigh one matching token
    (match_score / span: about 4 of 30 with span 7, while primacy 12 adds up to about 6 over 1,000 positions).
    `copy_gain`: the copy heads' starting loudness (their output trains). `head_gain`: the output head's scale
    while it is tied to the embeddings, whose norms are held: it caps how far apart the logits of the model's own
    words can be (at 3, a build's free text learns little beyond token frequencies; see the README).
    `nocopy_tokens` (with the role head): tokens the copy heads never copy, as their embeddings carry the reply
    mark; e.g. "[", so that a quote of passage [1] stops where the next passage's "[2] (" header begins and the
    model itself decides how to go on.
    `mute_tokens`: tokens the copy heads may land on but copy as nothing: their embeddings live in MUTE_DIMS
    directions that no copy head's value reads (held there while training). Unlike `nocopy_tokens`, which the
    heads avoid and so look for the next best match elsewhere (a stray token from another paragraph), a quote
    that reaches one finds its true place and falls silent, and the trained layers alone say what comes next:
    the closing quote of a JSON string, or the end of the answer.
    `pause_tokens`: at one of these and at the PAUSE_SPAN - 1 tokens after it the copy heads copy nothing: the
    token's embedding carries a mark in a reserved dimension (held while training; the token's norm is kept), which
    layer 0's first previous-token heads also carry to the next positions (into the dimension after their blocks),
    and the copy heads' queries read both into the sink's score, `pause_gain` times its own weight, so the sink
    outscores any match. E.g. JSON's `{"` and `",`, after which a key follows that the model writes itself (`",
    "steps":` is four tokens): without the pause, the copy heads paste in what follows the same tokens in the
    prompt (a key named in the question, the next passage's number after a quote that ends, or what follows the
    word "steps" in a passage).

    Returns the entries that must stay as wired for the circuit to keep working: the constant dimension, the
    previous-token heads, and the copy heads' queries, keys and values. Left free to train: the copy heads'
    output (how loudly to copy), the output head and everything else, so training learns when copying pays.
    """
    import math

    import torch

    cfg = model.config
    d, hd, heads = cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads
    half = hd // 2
    theta = cfg.rope_parameters["rope_theta"]
    freqs = [theta ** (-2 * i / hd) for i in range(half)]
    slow = [i for i in range(half) if freqs[i] * MAX_SPAN < SLOW_ANGLE]
    skip_reply = reply_token is not None
    reason = problem(cfg.num_hidden_layers, heads, hd, theta, span, skip_reply, primacy > 0)
    if reason:
        raise ValueError(reason)
    if nocopy_tokens and mute_tokens:
        raise ValueError("give nocopy_tokens or mute_tokens, not both: the copy heads either avoid a token or land on it silently")
    if len(set(mute_tokens)) > MUTE_DIMS:
        raise ValueError(f"at most {MUTE_DIMS} mute_tokens (they share {MUTE_DIMS} dimensions), not {len(set(mute_tokens))}")
    if nocopy_tokens and not skip_reply:
        raise ValueError("nocopy_tokens need the role head's reply mark: give reply_token and role_tokens too")
    if skip_reply and not {reply_token, *closed_tokens} <= set(role_tokens):
        raise ValueError("role_tokens must hold every chat role token, the assistant's (reply_token) and the closed ones too")
    sink_at = min(span - 0.5, 1.5) / span if sink_at is None else sink_at
    g = torch.Generator().manual_seed(seed + 7919)
    emb = model.model.embed_tokens.weight.data
    layer0, layer1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
    role_part = role_dims(d) if skip_reply else []
    pause_dim = d // 2 - len(role_part) - 1  # with pause_tokens: one more reserved dimension, below the role head's
    reserved = [pause_dim, *role_part] if pause_tokens else role_part
    token_dims = list(range(1, d // 2 - len(reserved)))
    block = min(d // 2 // span, len(token_dims), hd)  # width of one earlier token's copy in the second half
    blocks = [list(range(d // 2 + m * block, d // 2 + (m + 1) * block)) for m in range(span)]
    follow = d // 2 + span * block  # with pause_tokens: marks the token after a pause token
    mark = constant / 3  # a pause token's mark, in its reserved dimension
    if pause_tokens and (follow >= d or block >= hd or span < PAUSE_SPAN - 1):
        raise ValueError(f"pause_tokens need a residual dimension after the {span} blocks of {block}, a spare value row in "
                         f"layer 0's previous-token heads and at least {PAUSE_SPAN - 1} of them; a width of {d} with heads of "
                         f"{hd} and copy_span {span} has not")

    with torch.no_grad():
        # Every residual branch outside the circuit starts at zero (training grows them), so random branches,
        # much louder than the embeddings at this width, do not drown the circuit's signal.
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb[:, d // 2:] = 0
        emb[:, reserved] = 0
        emb[:, 0] = constant
        z = _orthonormal(1, token_dims, d, g)[0]  # the sink's direction
        emb[:, token_dims] -= (emb @ z)[:, None] * z[token_dims][None, :]
        emb[sink_token, token_dims] = z[token_dims] * float(emb[:, token_dims].norm(dim=1).mean())
        mute = _mute_basis(token_dims, d, z, seed) if mute_tokens else None
        if mute is not None:  # muted tokens keep their norm, in the mute directions
            muted = torch.tensor(sorted(set(mute_tokens)))
            part = emb[muted][:, token_dims]
            inside = (part @ mute[:, token_dims].T) @ mute[:, token_dims]
            emb[muted[:, None], torch.tensor(token_dims)] = inside * (part.norm(dim=1, keepdim=True) / inside.norm(dim=1, keepdim=True))
        rms = float(emb.pow(2).mean(dim=1).sqrt().mean())
        n0 = constant / rms  # dimension 0 after RMSNorm

        # Output head: the embeddings turned by a rotation A, so writing A·e_s raises token s's logit.
        a = torch.eye(d)
        a[1:, 1:] = torch.linalg.qr(torch.randn(d - 1, d - 1, generator=g))[0]
        model.lm_head.weight.data.copy_(head_gain * emb @ a.T)
        turn = head_gain * a.T

        # Layer 0: head m attends m + 1 positions back and writes a projection of that token into block m.
        project = _orthonormal(block, token_dims, d, g) if block < len(token_dims) else torch.eye(d)[token_dims]
        project = project - (project @ z)[:, None] * z[None, :]
        scale = math.sqrt(prev_sharp * math.sqrt(hd) / FAST_PAIRS) / n0
        for m in range(span):
            q, k = torch.zeros(hd), torch.zeros(hd)
            for i in range(FAST_PAIRS):
                q[i] = 1.0
                k[i], k[i + half] = math.cos((m + 1) * freqs[i]), math.sin((m + 1) * freqs[i])
            rows = slice(m * hd, (m + 1) * hd)
            for w in (layer0.q_proj.weight, layer0.k_proj.weight, layer0.v_proj.weight):
                w[rows] = 0
            layer0.q_proj.weight[rows, 0] = q * scale
            layer0.k_proj.weight[rows, 0] = k * scale
            layer0.v_proj.weight[rows][:block] = project
            out = torch.zeros(d, hd)
            out[blocks[m], torch.arange(block)] = rms
            if pause_tokens and m < PAUSE_SPAN - 1:  # a pause token m + 1 back: a mark in the dimension after the blocks
                layer0.v_proj.weight[rows][block, pause_dim] = constant / mark
                out[follow, block] = rms
            layer0.o_proj.weight[:, rows] = out

        if pause_tokens:  # the mark, with the token part shortened to keep the token's norm (so its RMS, which
            # sets how loudly the previous-token heads read it as a key, is as before)
            paused = torch.tensor(sorted(set(pause_tokens)))
            part = emb[paused[:, None], torch.tensor(token_dims)]
            norms = part.norm(dim=1, keepdim=True)
            emb[paused[:, None], torch.tensor(token_dims)] = part * ((norms ** 2 - mark ** 2).clamp_min(0).sqrt() / norms)
            emb[paused, pause_dim] = mark
        if skip_reply:
            reply_dim = _role_head(model, role_part, token_dims, span, freqs, reply_token, role_tokens, role_gap,
                                   constant, n0, closed_tokens)
            # A never-copied token reads, as a key, like a position in a reply (what the role head writes there);
            # the embeddings' reserved dimensions are held, so it stays that way.
            emb[list(nocopy_tokens), reply_dim] = constant

        # Layer 1: copy heads. Term 0 compares the current token with block 0 (the token before s); term m
        # compares block m-1 (m tokens before the current one) with block m. One slow slot is the sink.
        slots = slow + [i + half for i in slow]
        # The slowest pair does not turn at all over a prompt: the reply mark's slot (no cross-talk with its partner).
        reply_slot = slow[-1] if skip_reply else None
        early = _recency_pair(hd, theta) if primacy else None
        taken = {reply_slot} | ({early, early + half} if early is not None else set())
        free = [i for i in slots if i not in taken]
        sink_slot, match_slots = free[0], free[1:]
        per_term = min(len(match_slots) // span, block - 1)
        gain = math.sqrt(match_score / span * math.sqrt(hd) / per_term)
        for h in range(COPY_HEADS):
            rows = slice(h * hd, (h + 1) * hd)
            for w in (layer1.q_proj.weight, layer1.k_proj.weight, layer1.v_proj.weight):
                w[rows] = 0
            qw, kw, vw = layer1.q_proj.weight[rows], layer1.k_proj.weight[rows], layer1.v_proj.weight[rows]
            for m in range(span):
                w = torch.linalg.qr(torch.randn(block, per_term, generator=g))[0].T  # per_term x block
                for j in range(per_term):
                    slot = match_slots[m * per_term + j]
                    if m == 0:
                        qw[slot] = (w[j] @ project) * gain  # reads the current token as block 0 stores it
                    else:
                        qw[slot, blocks[m - 1]] = w[j] * gain
                    kw[slot, blocks[m]] = w[j] * gain
            qw[sink_slot, 0] = 1.0 / n0
            if pause_tokens:  # during a pause (see PAUSE_SPAN) the sink scores 1 + pause_gain times as much
                qw[sink_slot, pause_dim] = pause_gain / n0 * constant / mark
                qw[sink_slot, follow] = pause_gain / n0
            kw[sink_slot] = z * sink_at * match_score * math.sqrt(hd) / math.sqrt(d)
            if skip_reply:  # a position in a reply scores reply_penalty lower (the key reads 1 / n0 there, see below)
                qw[reply_slot, 0] = 1.0 / n0
                kw[reply_slot, reply_dim] = -reply_penalty * math.sqrt(hd) / n0
            if early is not None:  # + primacy sin(w d) / (w REPLY_SPAN): of two equal matches, the earlier wins
                root = math.sqrt(math.sqrt(hd))
                qw[early, 0] = math.sqrt(primacy / freqs[early] / REPLY_SPAN) * root / n0
                kw[early + half, 0] = math.sqrt(primacy / freqs[early] / REPLY_SPAN) * root / n0
            values = _orthonormal(min(hd, len(token_dims) - 1), token_dims, d, g)
            values = values - (values @ z)[:, None] * z[None, :]
            if mute is not None:  # no value reads the mute directions: a muted token is copied as nothing
                values = values - (values @ mute.T) @ mute
            vw[: values.shape[0]] = values
            layer1.o_proj.weight[:, rows] = 0
            layer1.o_proj.weight[:, rows][:, : values.shape[0]] = copy_gain * rms * (a @ values.T) / COPY_HEADS

    # Held: the constant and the empty second half of every embedding, each token's embedding norm (a token
    # grown large in training would outscore true matches as a key), and layer 0 apart from the circuit (its
    # other branches stay zero), so that a copy head compares tokens and nothing else.
    pins = Pins()
    held = torch.zeros_like(emb, dtype=torch.bool)
    held[:, 0] = True
    held[:, d // 2:] = True
    held[:, reserved] = True
    pins.add(model.model.embed_tokens.weight, held)
    if mute is not None:
        pins.hold_within(model.model.embed_tokens.weight, muted, torch.tensor(token_dims), mute[:, token_dims])
    pins.hold_norms(model.model.embed_tokens.weight, torch.tensor(token_dims))
    pins.add(model.model.layers[0].mlp.down_proj.weight, torch.ones_like(model.model.layers[0].mlp.down_proj.weight, dtype=torch.bool))
    for layer, count in ((layer0, span + skip_reply), (layer1, COPY_HEADS)):
        rows = torch.zeros_like(layer.q_proj.weight, dtype=torch.bool)
        rows[: count * hd] = True
        for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
            pins.add(proj.weight, rows)
    for index in (0, 1):  # their input norms set how sharp the heads are
        norm = model.model.layers[index].input_layernorm.weight
        pins.add(norm, torch.ones_like(norm, dtype=torch.bool))
    pins.add(layer0.o_proj.weight, torch.ones_like(layer0.o_proj.weight, dtype=torch.bool))
    tie_head(model, turn)
    return pins
