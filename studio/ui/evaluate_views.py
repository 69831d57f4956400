"""Pure renderers for the Evaluate tab: data summary, scorecard table, verdict, per-metric bars, drill-down, probe.

Inputs are the evaluation core's dataclasses (duck-typed: EvaluationRun, EvalExample, ForgettingReport);
outputs are Markdown, HTML, table dicts or plotly figures. Numbers are formatted as `studio eval` prints them.
"""

from __future__ import annotations

import html
import json
from typing import Any

from studio.core.evaluation.metrics import SCORECARD_METRICS, fact_recall
from studio.core.evaluation.metrics import format_score as cell
from studio.ui.widgets import short_name

# metric -> (label, which way is better: "up", "down", or None for descriptive numbers with no winner)
METRICS: dict[str, tuple[str, str | None]] = {
    "exact_match": ("Exact match", "up"), "rouge_l": ("ROUGE-L", "up"), "bleu": ("BLEU (sentence mean)", "up"),
    "chrf": ("chrF (sentence mean)", "up"), "fact_recall": ("Fact recall", "up"), "json_valid": ("Valid JSON", "up"),
    "schema_valid": ("Schema valid", "up"), "refusal": ("Refusal rate", None), "tokens": ("Answer tokens", None),
    "chars": ("Answer characters", None), "latency_s": ("Seconds per answer", "down"),
    "corpus_bleu": ("BLEU (corpus)", "up"), "corpus_chrf": ("chrF (corpus)", "up"),
}
FEW_EXAMPLES = 30
COLOURS = ("#6366f1", "#10b981", "#f59e0b", "#ef4444", "#0ea5e9", "#a855f7", "#84cc16", "#f97316")
PROBE_HEADERS = ["metric", "base", "tuned", "drop", "verdict"]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def data_summary(name: str, examples: list[Any], limit: int | None = None) -> str:
    """What the held-out file holds: examples, how many carry facts / a schema / earlier turns."""
    facts = sum(bool(e.facts) for e in examples)
    schema = sum(e.schema is not None for e in examples)
    turns = sum(bool(e.history) for e in examples)
    used = f" · the first **{limit}** will be evaluated" if limit and limit < len(examples) else ""
    return (f"`{name}`: **{plural(len(examples), 'example')}**{used} · {facts} with facts (fact recall) · "
            f"{schema} with a JSON schema (schema validity) · {turns} multi-turn")


def data_error(err: Any) -> str:
    return f"**Unusable file:** {html.escape(str(err))}"


def progress_markdown(done: int, total: int, elapsed: float, cancelling: bool = False) -> str:
    """'12 of 40 answers (30%) · 0.4 s per answer · about 11 s left'."""
    if cancelling:
        return f"**Cancelling…** {done} of {total} answers done; the examples every variant finished are kept."
    if not done:
        return f"**Evaluating:** 0 of {total} answers · the first batch is generating…"
    each = elapsed / done
    left = each * (total - done)
    eta = f"about {left:.0f} s left" if left < 120 else f"about {left / 60:.0f} min left"
    return f"**Evaluating:** {done} of {total} answers ({100 * done / total:.0f}%) · {each:.2f} s per answer · {eta}"


def run_status(run: Any, planned: int | None = None, saved: bool = True) -> str:
    """One line for a finished or cancelled run: what was scored, how long it took, where it is saved."""
    n = len(run.results)
    if run.cancelled:
        head = (f"**Cancelled:** the {plural(n, 'example')} every variant finished"
                + (f" (of {planned})" if planned else "") + " are scored")
    else:
        head = f"**Done:** {plural(n, 'example')} × {plural(len(run.variants), 'variant')}"
    return f"{head} in {run.elapsed_s:.1f} s" + (f" · saved as `{run.name}`." if saved else ".")


def _values(run: Any, metric: str) -> dict[str, Any]:
    return {v.name: run.aggregates[v.name].get(metric) for v in run.variants}


def leaders(run: Any, metric: str) -> list[str]:
    """The variants with the best value of `metric` (several on a tie); [] when it has no direction or no values."""
    direction = METRICS.get(metric, ("", None))[1]
    values = {k: v for k, v in _values(run, metric).items() if v is not None}
    if direction is None or len(values) < 2:
        return []
    best = max(values.values()) if direction == "up" else min(values.values())
    return [k for k, v in values.items() if abs(v - best) < 1e-9]


def scorecard_table(run: Any) -> dict[str, Any]:
    """Metric rows × variant columns (the CLI's scorecard) plus a 'best' column naming the leader(s)."""
    names = [v.name for v in run.variants]
    rows = []
    for metric in SCORECARD_METRICS:
        values = _values(run, metric)
        if all(v is None for v in values.values()):
            continue
        best = leaders(run, metric)
        rows.append([metric, *(cell(values[n]) for n in names),
                     "tie" if len(best) == len(names) else " = ".join(best)])
    return {"headers": ["metric", *names, "best"], "data": rows}


def verdict_markdown(run: Any) -> str:
    """Who wins on what, in words, with the margin over the next best; a caution when the set is small."""
    names = [v.name for v in run.variants]
    n = len(run.results)
    if not n:
        return "Nothing was scored."
    wins: dict[str, list[str]] = {name: [] for name in names}
    ties = []
    for metric, (label, direction) in METRICS.items():
        best = leaders(run, metric)
        if not best:
            continue
        values = {k: v for k, v in _values(run, metric).items() if v is not None}
        if len(best) > 1:
            ties.append(f"{label} ({' = '.join(best)} at {cell(values[best[0]])})")
            continue
        others = [v for k, v in values.items() if k != best[0]]
        runner_up = max(others) if direction == "up" else min(others)
        wins[best[0]].append(f"{label} {cell(values[best[0]])} vs {cell(runner_up)}")
    lines = [f"**{run.name}** · `{short_name(run.model)}` · {plural(n, 'example')} · {plural(len(names), 'variant')}"
             + (" · **cancelled** (partial)" if run.cancelled else "")]
    ranked = sorted((w for w in wins.items() if w[1]), key=lambda w: -len(w[1]))
    if len(names) > 1:
        if ranked:
            top, won = ranked[0]
            counted = sum(len(w) for w in wins.values()) + len(ties)
            lines.append(f"\n**{top}** leads on {len(won)} of {counted} scored metrics.")
        lines += [f"- **{name}** is best on: " + "; ".join(won) for name, won in ranked]
        if ties:
            lines.append("- Tied: " + "; ".join(ties))
    if n < FEW_EXAMPLES:
        lines.append(f"\n_Only {plural(n, 'example')}: small differences are noise here; run the full set before deciding._")
    return "\n".join(lines)


def metrics_figure(run: Any) -> Any:
    """One bar chart per metric (a grid of panels), one bar per variant, the leader outlined."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [v.name for v in run.variants]
    metrics = [m for m in METRICS if any(v is not None for v in _values(run, m).values())]
    cols = 4
    rows = max(1, -(-len(metrics) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[METRICS[m][0] for m in metrics],
                        vertical_spacing=0.5 / rows, horizontal_spacing=0.06)
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
    for i, metric in enumerate(metrics):
        values = _values(run, metric)
        shown = [n for n in names if values[n] is not None]
        best = set(leaders(run, metric))
        fig.add_bar(x=shown, y=[values[n] for n in shown], text=[cell(values[n]) for n in shown], textposition="auto",
                    marker={"color": [colours[n] for n in shown],
                            "line": {"width": [3 if n in best else 0 for n in shown], "color": "#111827"}},
                    showlegend=False, hovertemplate="%{x}: %{y:.3f}<extra>" + METRICS[metric][0] + "</extra>",
                    row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=230 * rows + 60, margin={"l": 30, "r": 10, "t": 60, "b": 30}, bargap=0.25,
                      uniformtext={"minsize": 9, "mode": "hide"})
    fig.update_xaxes(tickfont={"size": 10})
    fig.update_yaxes(rangemode="tozero")
    return fig


def empty_figure(message: str = "Run an evaluation, or pick a saved one") -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=message, height=200, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def example_choices(run: Any) -> list[tuple[str, int]]:
    """Drill-down picker entries: '3 · line 3 · How long is the warranty…' -> index into run.results."""
    out = []
    for i, result in enumerate(run.results):
        question = " ".join(result.example.question.split())
        out.append((f"{i + 1} · line {result.example.line} · {question[:80]}{'…' if len(question) > 80 else ''}", i))
    return out


def _badge(variant: Any) -> str:
    parts = [f"adapter {variant.adapter}" if variant.adapter else "no adapter"]
    if variant.prompt is not None:
        parts.append(f"prompt: {variant.prompt.technique}")
    if variant.knowledge_base:
        parts.append(f"RAG: {variant.knowledge_base}")
    return " · ".join(parts)


def _scores_line(scores: Any) -> str:
    s = scores
    parts = [f"EM {cell(s.exact_match)}", f"ROUGE-L {cell(s.rouge_l)}", f"BLEU {s.bleu:.1f}", f"chrF {s.chrf:.1f}"]
    if s.fact_recall is not None:
        parts.append(f"facts {cell(s.fact_recall)}")
    parts.append("JSON ✓" if s.json_valid else "JSON ✗")
    if s.schema_valid is not None:
        parts.append("schema ✓" if s.schema_valid else "schema ✗")
    if s.refusal:
        parts.append("refused")
    parts.append(f"{s.tokens} tokens · {s.latency_s:.2f} s")
    return " · ".join(parts)


def example_html(run: Any, index: int | None) -> str:
    """One example: question, reference, facts and schema, then every variant's answer side by side with its scores."""
    if index is None or not (0 <= int(index) < len(run.results)):
        return "<p class='eval-muted'>Pick an example to see every variant's answer side by side.</p>"
    result = run.results[int(index)]
    ex = result.example
    esc = html.escape
    head = [f"<div class='eval-example-head'>Example {int(index) + 1} of {len(run.results)} · line {ex.line}</div>"]
    if ex.system:
        head.append(f"<div><b>System:</b> {esc(ex.system)}</div>")
    if ex.history:
        head.append(f"<div class='eval-muted'>{len(ex.history)} earlier turn(s) precede the question.</div>")
    head.append(f"<div class='eval-q'><b>Question</b><pre>{esc(ex.question)}</pre></div>")
    head.append(f"<div class='eval-ref'><b>Reference</b><pre>{esc(_pretty(ex.reference))}</pre></div>")
    if ex.facts:
        head.append("<div><b>Facts:</b> " + " ".join(f"<span class='eval-fact'>{esc(f)}</span>" for f in ex.facts) + "</div>")
    if ex.schema is not None:
        required = ex.schema.get("required") or []
        head.append(f"<div class='eval-muted'>The answer should be JSON matching a schema"
                    f"{' (required: ' + esc(', '.join(map(str, required))) + ')' if required else ''}.</div>")
    best = set(_example_leaders(result))
    cards = []
    variants = {v.name: v for v in run.variants}
    for name, answer in result.answers.items():
        facts = "".join(f"<span class='eval-fact {'eval-hit' if fact_recall(answer.answer, [f]) else 'eval-miss'}'>"
                        f"{'✓' if fact_recall(answer.answer, [f]) else '✗'} {esc(f)}</span>" for f in ex.facts)
        sources = (f"<div class='eval-muted'>Sources: {esc(', '.join(dict.fromkeys(answer.sources)))}</div>"
                   if answer.sources else "")
        badge = esc(_badge(variants[name])) if name in variants else ""
        cards.append(f"<div class='eval-card{' eval-best' if name in best else ''}'>"
                     f"<div class='eval-card-head'><b>{esc(name)}</b> <span class='eval-muted'>{badge}</span></div>"
                     f"<pre class='eval-answer'>{esc(answer.answer) or '<i>(empty answer)</i>'}</pre>"
                     f"<div class='eval-scores'>{esc(_scores_line(answer.scores))}</div>"
                     f"{'<div>' + facts + '</div>' if facts else ''}{sources}</div>")
    return (f"<div class='eval-example'>{''.join(head)}</div><div class='eval-answers'>{''.join(cards)}</div>"
            "<div class='eval-muted'>Outlined: the best ROUGE-L on this example.</div>")


def _example_leaders(result: Any) -> list[str]:
    values = {name: a.scores.rouge_l for name, a in result.answers.items()}
    if len(values) < 2:
        return []
    top = max(values.values())
    best = [n for n, v in values.items() if abs(v - top) < 1e-9]
    return best if len(best) < len(values) else []


def _pretty(text: str) -> str:
    """A JSON reference indented for reading; any other text as is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def probe_table(report: Any) -> dict[str, Any]:
    flagged = {c.metric for c in report.regressions}
    rows = [[c.metric, f"{c.base:.3f}", f"{c.tuned:.3f}", f"{c.drop:+.3f}",
             "REGRESSION" if c.metric in flagged else "ok"] for c in report.changes]
    return {"headers": PROBE_HEADERS, "data": rows}


def probe_markdown(report: Any, adapter: str) -> str:
    """The verdict first, then the probe questions whose facts the base knew and the adapter lost."""
    run = report.run
    verdict = (f"**Regression:** `{adapter}` scores lower than the base on "
               + ", ".join(f"{c.metric} (−{c.drop:.3f})" for c in report.regressions)
               + f", more than the {report.threshold:.2f} allowed." if report.regressed
               else f"**No forgetting detected:** `{adapter}` stays within {report.threshold:.2f} of the base on every probe metric.")
    lines = [verdict, "", report.summary() + (" · cancelled (partial)" if run.cancelled else "")]
    if report.lost:
        by_line = {r.example.line: r for r in run.results}
        lines += ["", f"**Facts lost on {plural(len(report.lost), 'question')}:**"]
        for line in report.lost[:15]:
            r = by_line[line]
            lines.append(f"- {html.escape(r.example.question)} — base: “{html.escape(_short(r.answers['base'].answer))}”, "
                         f"tuned: “{html.escape(_short(r.answers['tuned'].answer))}”")
    return "\n".join(lines)


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width] + "…"


EVALUATE_CSS = """
.eval-muted { color: var(--body-text-color-subdued); font-size: var(--text-sm); }
.eval-example { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px; margin-bottom: 8px; }
.eval-example pre, .eval-answer { white-space: pre-wrap; word-break: break-word; font-size: var(--text-sm); margin: 4px 0; }
.eval-example-head { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin-bottom: 4px; }
.eval-answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 8px; }
.eval-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; }
.eval-best { border-color: var(--color-accent); box-shadow: 0 0 0 1px var(--color-accent); }
.eval-answer { max-height: 260px; overflow: auto; background: var(--background-fill-secondary); padding: 6px; border-radius: 4px; }
.eval-scores { font-family: var(--font-mono); font-size: var(--text-xs); margin: 4px 0; }
.eval-fact { display: inline-block; border-radius: 4px; padding: 0 6px; margin: 2px 4px 2px 0; font-size: var(--text-xs);
             background: var(--background-fill-secondary); }
.eval-hit { background: #bbf7d0; color: #14532d; }
.eval-miss { background: #fee2e2; color: #7f1d1d; }
#eval-progress { min-height: 1.5em; }
"""
