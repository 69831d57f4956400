"""Pure renderers for the Training tab: dataset report, length histogram, trained-token preview, live run view.

Inputs are the core's dataclasses and metric rows (duck-typed); outputs are Markdown, HTML, rows or plotly figures.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

STATE_LABELS = {"queued": "queued", "running": "running", "finished": "finished", "stopped": "stopped",
                "failed": "failed", "interrupted": "interrupted (resumable)"}
RUN_HEADERS = ["run", "state", "method", "model", "step", "last loss"]
ADAPTER_HEADERS = ["adapter", "source", "base model", "type", "rank", "size"]


def report_markdown(check: Any, limit: int = 15) -> str:
    """The dataset report: verdict, errors by line (with the fix), warnings, stats, contamination."""
    r = check.report
    s = r.stats
    verdict = ("**Errors found:** fix the lines below (the run refuses a dataset with errors)." if r.has_errors
               else "**Ready to train.**" + (" Warnings below are worth a look." if r.warnings else ""))
    lines = [f"`{r.path.name}`: {len(r.examples)} valid examples · format **{r.format or 'unknown'}** · "
             f"tokenizer of `{check.model}`", "", verdict]
    for title, issues in (("Errors", r.errors), ("Warnings", r.warnings)):
        if issues:
            lines += ["", f"**{title} ({len(issues)})**", ""]
            lines += [f"- {_issue(i)}" for i in issues[:limit]]
            if len(issues) > limit:
                lines.append(f"- … and {len(issues) - limit} more (`studio data check {r.path}` lists them all)")
    if s is not None:
        lines += ["", "**Stats**", "", f"- {s.examples} examples of {s.records} read; turns per example mean "
                  f"{s.turns_mean:.1f}, max {s.turns_max}; {s.system_prompts} distinct system prompt(s)",
                  f"- {s.duplicates} exact and {s.near_duplicates} near duplicates"]
        t = s.tokens
        if t is not None:
            lines.append(f"- tokens per example: p50 {t.p50}, p90 {t.p90}, p95 {t.p95}, max {t.max}; suggested max length "
                         f"**{t.suggested_max_length}**; {t.over_length} over {t.max_length} ({t.policy})")
    if check.contamination is not None:
        c = check.contamination
        lines += ["", f"**Decontamination** ({c.count} overlapping training example(s))", ""]
        lines += [f"- train line {o.line} shares “{html.escape(o.ngram)}” with eval line {o.eval_line}"
                  for o in c.overlaps[:limit]] or ["- no shared n-gram: the evaluation set is clean"]
    return "\n".join(lines)


def _issue(issue: Any) -> str:
    where = f"line {issue.line}: " if issue.line else ""
    text = f"{where}{issue.message}" + (f" *Fix:* {issue.fix}" if issue.fix else "")
    return text.replace("\n", " ")


def length_figure(check: Any) -> Any:
    """Histogram of example lengths in tokens, with the max length and the suggested max length marked."""
    import plotly.graph_objects as go

    tokens = check.report.stats.tokens if check.report.stats else None
    fig = go.Figure()
    if tokens is None or not tokens.lengths:
        fig.update_layout(title="No token lengths (no valid example)", height=260)
        return fig
    fig.add_histogram(x=tokens.lengths, nbinsx=40, name="examples", marker_color="#6366f1")
    for x, label, dash in ((tokens.max_length, "max length", "solid"), (tokens.suggested_max_length, "suggested", "dot")):
        fig.add_vline(x=x, line_dash=dash, line_color="#ef4444" if dash == "solid" else "#10b981",
                      annotation_text=f"{label} {x}", annotation_position="top")
    fig.update_layout(title="Example length in tokens", xaxis_title="tokens (chat template included)",
                      yaxis_title="examples", height=280, margin={"l": 40, "r": 10, "t": 50, "b": 40}, showlegend=False)
    return fig


def preview_html(segments: list[tuple[str, bool]], eos: list[bool], number: int, total: int) -> str:
    """The example exactly as the model is trained on it; trained tokens highlighted."""
    body = "".join(f"<span class='train-on'>{html.escape(text)}</span>" if trained else html.escape(text)
                   for text, trained in segments)
    eos_note = ("every assistant turn ends with the template's end-of-turn token" if all(eos) else
                "the template does not end some assistant turns: the EOS token is appended so the model learns to stop")
    return (f"<div class='train-preview-head'>Example {number} of {total} · highlighted = tokens the loss is computed on · "
            f"{eos_note}</div><pre class='train-preview'>{body}</pre>")


def started_markdown(run: str, config: Any) -> str:
    """What a just-started run will do, so a wrong setting shows before its curves do."""
    p = config.train
    until = f"stops after {p.max_steps} steps" if p.max_steps else f"runs {p.epochs:g} epoch{'s' if p.epochs != 1 else ''}"
    return (f"Started **{run}**: {p.method} on {Path(config.dataset).name}, {until}, "
            f"batch {p.per_device_batch_size} × {p.gradient_accumulation}.")


def estimate_markdown(counts: Any, memory: Any, fits: bool, verdict: str) -> str:
    return (f"**Trainable:** {counts.text()}  \n**Memory estimate:** {memory.text()}  \n"
            f"{'✔' if fits else '**Warning:**'} {verdict}")


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard draws it)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def loss_figure(runs: dict[str, list[dict[str, Any]]]) -> Any:
    """Training loss (raw and smoothed) and eval loss per run; the learning rate on a second axis for one run."""
    import plotly.graph_objects as go

    fig = go.Figure()
    single = len(runs) == 1
    for name, rows in runs.items():
        train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
        evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
        if train:
            steps, losses = zip(*train)
            label = "train loss" if single else f"{name} · train"
            fig.add_scatter(x=steps, y=losses, mode="lines", name=label + " (raw)", opacity=0.35, legendgroup=name)
            fig.add_scatter(x=steps, y=smooth(list(losses)), mode="lines", name=label + " (smoothed)", legendgroup=name)
        if evals:
            steps, losses = zip(*evals)
            fig.add_scatter(x=steps, y=losses, mode="lines+markers", name="eval loss" if single else f"{name} · eval",
                            legendgroup=name)
        if single:
            lr = [(r["step"], r["learning_rate"]) for r in rows if r.get("learning_rate") is not None]
            if lr:
                steps, rates = zip(*lr)
                fig.add_scatter(x=steps, y=rates, mode="lines", name="learning rate", yaxis="y2",
                                line={"dash": "dot", "color": "#9ca3af"})
    fig.update_layout(height=360, margin={"l": 50, "r": 60, "t": 30, "b": 40}, xaxis_title="step", yaxis_title="loss",
                      yaxis2={"title": "learning rate", "overlaying": "y", "side": "right", "showgrid": False,
                              "exponentformat": "e"},
                      legend={"orientation": "h", "y": -0.2})
    if not any(runs.values()):
        fig.update_layout(title="No metrics yet: the first line appears after the first logging step")
    return fig


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def status_html(name: str, status: Any, rows: list[dict[str, Any]]) -> str:
    """State, a progress bar with step/epoch, tokens/s, elapsed and ETA; the reason and fix of a failed run."""
    last = rows[-1] if rows else {}
    total = status.total_steps or 0
    step = max(status.step or 0, int(last.get("step") or 0))
    pct = min(100.0, 100.0 * step / total) if total else 0.0
    elapsed = (status.ended or time.time()) - status.started if status.started else None
    eta = last.get("eta_s") if status.state == "running" else None
    speed = last.get("tokens_per_s")
    parts = [f"step {step}" + (f" of {total}" if total else ""), f"epoch {last.get('epoch', 0):.2f}" if last else "",
             f"{speed:,.0f} tokens/s" if speed else "", f"elapsed {_duration(elapsed)}",
             f"ETA {_duration(eta)}" if eta is not None else ""]
    state = html.escape(STATE_LABELS.get(status.state, status.state))
    out = (f"<div class='run-status run-{html.escape(status.state)}'><b>{html.escape(name)}</b> · <span class='run-state'>"
           f"{state}</span><div class='run-bar'><div style='width:{pct:.1f}%'></div></div>"
           f"<div class='run-numbers'>{' · '.join(p for p in parts if p)}</div>")
    if status.reason:
        out += f"<div class='run-reason'>{html.escape(status.reason)}</div>"
    if status.suggestion:
        out += f"<div class='run-fix'>Fix: {html.escape(status.suggestion)}</div>"
    return out + "</div>"


def samples_markdown(samples: list[dict[str, Any]]) -> str:
    """The latest live samples (the worker answers fixed validation prompts at each evaluation)."""
    if not samples:
        return "_Live samples appear at the first evaluation: the model answers a few validation prompts._"
    latest = samples[-1]
    lines = [f"**Live samples at step {latest.get('step')}** (epoch {latest.get('epoch', 0):.2f})"]
    for s in latest.get("samples", []):
        lines += ["", f"> **Prompt:** {_one_line(s.get('prompt', ''))}", "",
                  f"**Model:** {_one_line(s.get('answer', ''))}", "", f"**Reference:** {_one_line(s.get('reference', ''))}"]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return html.escape(text[:limit] + ("…" if len(text) > limit else ""))


def run_rows(runs: list[Any], metrics: dict[str, list[dict[str, Any]]]) -> list[list[Any]]:
    rows = []
    for run in runs:
        losses = [r["loss"] for r in metrics.get(run.name, []) if r.get("loss") is not None]
        rows.append([run.name, STATE_LABELS.get(run.status.state, run.status.state), run.method, run.model,
                     run.status.step, round(losses[-1], 4) if losses else ""])
    return rows


def size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"


TRAINING_CSS = """
.train-preview { white-space: pre-wrap; font-size: var(--text-sm); max-height: 360px; overflow: auto; }
.train-preview .train-on { background: #bbf7d0; color: #14532d; }
.train-preview-head { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin-bottom: 4px; }
.run-status { font-size: var(--text-sm); }
.run-bar { height: 10px; background: var(--background-fill-secondary); border-radius: 5px; margin: 6px 0; overflow: hidden; }
.run-bar div { height: 100%; background: var(--color-accent); }
.run-failed .run-state { color: #dc2626; font-weight: bold; }
.run-finished .run-state { color: #16a34a; font-weight: bold; }
.run-reason { color: #dc2626; margin-top: 4px; }
.run-fix { margin-top: 2px; }
"""
