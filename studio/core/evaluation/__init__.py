"""Evaluation: held-out examples × variants (prompting, RAG, adapters) → per-example answers and scores."""
