"""A copying circuit written into the demo model's weights before training, and held there while it trains.

A model this small, trained for minutes on a CPU, never learns by itself to copy from its context:
induction heads form after far more tokens than a 30-minute build sees, and scrambled passages, random-word
copy drills and dense induction drills all failed to grow one (see the model's README). Yet RAG needs exactly
that: the answer's facts are in the retrieved passages and must be quoted. So the build starts from weights
that already copy, the textbook two-layer induction circuit, and training learns when to use it.

The residual stream is split: dimension 0 is a constant, token embeddings live in the rest of the first
half, and the second half starts empty.
- Layer 0, `PREV_HEADS` previous-token head(s): query and key read the constant through RoPE's fastest
  frequency pairs, phased so that each position attends to the one before it; the value copies that
  previous token's embedding into the second half of the stream.
- Layer 1, `COPY_HEADS` induction heads: the query is the current token, the key is the previous token
  that layer 0 wrote, compared on RoPE's slowest pairs (a large RoPE base makes most pairs turn less than
  half a radian over 1,400 positions, so the match does not depend on distance). A position whose previous
  token is the current one wins; its value, the token that came next there, is written through a fixed
  rotation A, and the output head starts as the embeddings turned by A, so the copied token gets the logit.
  When nothing matches, the heads rest on the first token (the chat template's <|im_start|>), whose value
  is zero.
- Every other residual branch starts at zero, so random branches do not drown the circuit.

`wire` returns `Pins`: the entries the circuit needs (the constant, the previous-token head, the copy heads'
queries, keys and values), which the build puts back after every optimizer step. The copy heads' output,
the output head and everything else train freely, so training decides how loudly to copy, and when.
"""

from __future__ import annotations

from typing import Any

PREV_HEADS = 1
COPY_HEADS = 3
FAST_PAIRS = 4  # RoPE frequency pairs used for "the position before"
SLOW_ANGLE = 0.5  # pairs that turn less than this over MAX_SPAN positions compare tokens
MAX_SPAN = 1400


def _orthonormal(n: int, dims: list[int], d: int, generator: Any) -> Any:
    """n orthonormal vectors of dimension d that live only in `dims`."""
    import torch

    basis = torch.linalg.qr(torch.randn(len(dims), n, generator=generator))[0].T
    out = torch.zeros(n, d)
    out[:, dims] = basis
    return out


def problem(layers: int, heads: int, head_dim: int, rope_theta: float) -> str | None:
    """Why a model of this shape cannot hold the circuit, or None when it can."""
    slow = sum(1 for i in range(head_dim // 2) if rope_theta ** (-2 * i / head_dim) * MAX_SPAN < SLOW_ANGLE)
    if layers < 2:
        return f"the copying circuit needs 2 layers or more, not {layers}"
    if heads < max(PREV_HEADS, COPY_HEADS):
        return f"the copying circuit needs {max(PREV_HEADS, COPY_HEADS)} heads or more, not {heads}"
    if slow < 8:
        return (f"heads of width {head_dim} with RoPE base {rope_theta:g} have {slow} slow frequency pairs; the copying "
                "circuit compares tokens on at least 8 (raise head_dim or rope_theta)")
    return None


class Pins:
    """Weight entries held at their wired values while the rest of the model trains (see `wire`)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any, Any]] = []  # (parameter, mask, values)

    def add(self, parameter: Any, mask: Any) -> None:
        self.entries.append((parameter, mask, parameter.data[mask].clone()))

    def restore(self) -> None:
        """Put every pinned entry back (call after each optimizer step)."""
        for parameter, mask, values in self.entries:
            parameter.data[mask] = values

    def count(self) -> int:
        return sum(int(mask.sum()) for _, mask, _ in self.entries)


def wire(model: Any, sink_token: int, seed: int = 0, constant: float = 0.3, prev_sharp: float = 50.0,
         match_score: float = 30.0, sink_score: float = 14.0, copy_gain: float = 8.0, head_gain: float = 3.0) -> Pins:
    """Overwrite `model`'s random-init embeddings, output head and first two attention layers with the circuit.

    Returns the entries that must stay as wired for the circuit to keep working: the constant dimension, the
    previous-token heads, and the copy heads' queries, keys and values. Left free to train: the copy heads'
    output (how loudly to copy), the output head and everything else, so training learns when copying pays.

    The residual stream is split: dimension 0 is constant, the token embeddings live in the first half,
    and layer 0 writes the previous token into the second half.
    """
    import math

    import torch

    cfg = model.config
    d, hd, heads = cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads
    half = hd // 2
    theta = cfg.rope_parameters["rope_theta"]
    freqs = [theta ** (-2 * i / hd) for i in range(half)]
    slow = [i for i in range(half) if freqs[i] * MAX_SPAN < SLOW_ANGLE]
    reason = problem(cfg.num_hidden_layers, heads, hd, theta)
    if reason:
        raise ValueError(reason)
    g = torch.Generator().manual_seed(seed + 7919)
    emb = model.model.embed_tokens.weight.data
    layer0, layer1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
    token_dims, prev_dims = list(range(1, d // 2)), list(range(d // 2, d))

    with torch.no_grad():
        # Every residual branch outside the circuit starts at zero (training grows them), so random branches,
        # much louder than the embeddings at this width, do not drown the circuit's signal.
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb[:, d // 2:] = 0
        emb[:, 0] = constant
        z = _orthonormal(1, token_dims, d, g)[0]  # the sink's direction
        emb[:, token_dims] -= (emb @ z)[:, None] * z[token_dims][None, :]
        emb[sink_token, token_dims] = z[token_dims] * float(emb[:, token_dims].norm(dim=1).mean())
        rms = float(emb.pow(2).mean(dim=1).sqrt().mean())
        n0 = constant / rms  # dimension 0 after RMSNorm

        # Output head: the embeddings turned by a rotation A, so writing A·e_s raises token s's logit.
        a = torch.eye(d)
        a[1:, 1:] = torch.linalg.qr(torch.randn(d - 1, d - 1, generator=g))[0]
        model.lm_head.weight.data.copy_(head_gain * emb @ a.T)

        # Layer 0: previous-token heads, writing the previous token into the second half of the stream.
        q, k = torch.zeros(hd), torch.zeros(hd)
        for i in range(FAST_PAIRS):
            q[i] = 1.0
            k[i], k[i + half] = math.cos(freqs[i]), math.sin(freqs[i])
        scale = math.sqrt(prev_sharp * math.sqrt(hd) / FAST_PAIRS) / n0
        token_basis = torch.eye(d)[token_dims]  # (d/2 - 1) x d
        move = torch.zeros(d, d)
        move[prev_dims[:len(token_dims)], token_dims] = 1.0  # token dim i -> prev dim i + d/2 - 1
        for h in range(PREV_HEADS):
            rows = slice(h * hd, (h + 1) * hd)
            reads = _orthonormal(hd, token_dims, d, g) if hd < len(token_dims) else token_basis
            layer0.q_proj.weight[rows] = 0
            layer0.k_proj.weight[rows] = 0
            layer0.v_proj.weight[rows] = 0
            layer0.q_proj.weight[rows, 0] = q * scale
            layer0.k_proj.weight[rows, 0] = k * scale
            layer0.v_proj.weight[rows][: reads.shape[0]] = reads
            layer0.o_proj.weight[:, rows] = 0
            layer0.o_proj.weight[:, rows][:, : reads.shape[0]] = rms * (move @ reads.T) / PREV_HEADS

        # Layer 1: induction heads on the slow pairs; one slow slot compares "constant" with z (the sink).
        slots = slow + [i + half for i in slow]
        sink_slot, match_slots = slots[0], slots[1:len(token_dims)]  # no more slots than token directions
        for h in range(COPY_HEADS):
            rows = slice(h * hd, (h + 1) * hd)
            c = _orthonormal(len(match_slots), token_dims, d, g)
            c = c - (c @ z)[:, None] * z[None, :]
            for w in (layer1.q_proj.weight, layer1.k_proj.weight, layer1.v_proj.weight):
                w[rows] = 0
            qw, kw, vw = layer1.q_proj.weight[rows], layer1.k_proj.weight[rows], layer1.v_proj.weight[rows]
            gain = math.sqrt(match_score * math.sqrt(hd) / len(match_slots))
            for j, slot in enumerate(match_slots):
                qw[slot] = c[j] * gain
                kw[slot] = (move @ c[j]) * gain
            qw[sink_slot, 0] = 1.0 / n0
            kw[sink_slot] = z * sink_score * math.sqrt(hd) / math.sqrt(d)
            values = _orthonormal(min(hd, len(token_dims) - 1), token_dims, d, g)
            values = values - (values @ z)[:, None] * z[None, :]
            vw[: values.shape[0]] = values
            layer1.o_proj.weight[:, rows] = 0
            layer1.o_proj.weight[:, rows][:, : values.shape[0]] = copy_gain * rms * (a @ values.T) / COPY_HEADS

    pins = Pins()
    column0 = torch.zeros_like(emb, dtype=torch.bool)
    column0[:, 0] = True
    pins.add(model.model.embed_tokens.weight, column0)
    for layer, count in ((layer0, PREV_HEADS), (layer1, COPY_HEADS)):
        rows = torch.zeros_like(layer.q_proj.weight, dtype=torch.bool)
        rows[: count * hd] = True
        for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
            pins.add(proj.weight, rows)
    columns = torch.zeros_like(layer0.o_proj.weight, dtype=torch.bool)
    columns[:, : PREV_HEADS * hd] = True
    pins.add(layer0.o_proj.weight, columns)
    return pins
