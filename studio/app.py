"""The web studio: build the services once, build the UI, launch."""

from __future__ import annotations

import gradio as gr

from studio.config import DEFAULT_MODEL, DEMO_MODEL, Settings
from studio.services import Services
from studio.ui.advisor_tab import build_advisor_tab
from studio.ui.compare_tab import build_compare_tab
from studio.ui.compare_views import COMPARE_CSS
from studio.ui.evaluate_tab import build_evaluate_tab
from studio.ui.evaluate_views import EVALUATE_CSS
from studio.ui.models_tab import build_models_tab
from studio.ui.playground_tab import build_playground_tab
from studio.ui.rag_tab import build_rag_tab
from studio.ui.rag_views import RAG_CSS
from studio.ui.training_tab import build_training_tab
from studio.ui.training_views import TRAINING_CSS
from studio.ui.widgets import HIDDEN, header_markdown

TITLE = "LLM Adaptation Studio"
TABS = (build_playground_tab, build_rag_tab, build_training_tab, build_compare_tab, build_evaluate_tab, build_advisor_tab, build_models_tab)  # adding a tab = adding its builder here
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
#studio-header { align-items: baseline; }
#studio-header h1 { margin: 0; }
#generation-stats, #rag-stats { color: var(--body-text-color-subdued); font-size: var(--text-sm); min-height: 1.5em; }
""" + RAG_CSS + TRAINING_CSS + EVALUATE_CSS + COMPARE_CSS


def build_app(services: Services) -> gr.Blocks:
    """The Blocks app: a header saying which model is loaded, then one tab per builder in TABS."""
    with gr.Blocks(title=TITLE) as app:
        with gr.Row(elem_id="studio-header"):
            gr.Markdown(f"# {TITLE}")
            header = gr.Markdown(header_markdown(services.runtime.state), elem_id="model-header")
        with gr.Tabs():
            for build_tab in TABS:
                build_tab(services)
        timer = gr.Timer(2.0)
        refresh = {"fn": lambda: header_markdown(services.runtime.state), "outputs": header, "show_progress": "hidden"}
        timer.tick(**refresh, **HIDDEN)
        app.load(**refresh, **HIDDEN)
    return app


def _auth(auth: str) -> tuple[str, str] | None:
    if not auth:
        return None
    user, password = auth.split(":", 1)
    return user, password


def launch(services: Services, *, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Build the app and serve it on the settings' host/port/share/auth (blocking unless `prevent_thread_lock`).

    Exposure checks (public host or share link without auth) happen in the CLI before this is called.
    """
    settings = services.settings
    app = build_app(services)
    app.queue()
    app.launch(server_name=settings.host, server_port=settings.port, share=settings.share, auth=_auth(settings.auth),
               prevent_thread_lock=prevent_thread_lock, show_error=True,
               allowed_paths=[str(services.workspace.exports_dir)], theme=THEME, css=CSS)
    return app


def main(settings: Settings) -> None:
    """Build the services, start loading the model in the background, and serve the UI (blocks).

    The model is `settings.model`, or DEFAULT_MODEL when none is configured; when it cannot be loaded
    (offline and not cached, say), the bundled offline demo model stands in and the header says so.
    """
    services = Services.build(settings)
    services.runtime.load_in_background(settings.load_params(settings.model or DEFAULT_MODEL), fallback=DEMO_MODEL,
                                        on_loaded=lambda info: services.workspace.remember_model(info.name))
    launch(services)
