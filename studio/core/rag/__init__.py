"""Retrieval-augmented generation: what the model knows right now, from the user's own documents.

loaders     read PDF / DOCX / Markdown / HTML / TXT into sections (heading path, page, offsets)
chunking    structure-aware chunks sized in the embedder's tokens, ids derived from content
embeddings  sentence-transformers embedders (MiniLM ships offline), cached per process
catalog     local SQLite mirror of a collection: documents table, change detection, BM25 terms
bm25        bm25s keyword index, rebuilt only when the catalog changed, never per query
index       knowledge bases = Chroma collections (local or server) + their catalog and BM25 files
ingest      add/update files (idempotent, no stale chunks, per-file errors, cancel) and re-embed
retrieval   dense, BM25, hybrid (reciprocal rank fusion), reranking, filters, threshold
answer      context budget, grounded prompt with [n] citations, streaming, cited sources
evaluation  BEIR loaders and ranx metrics per retriever
params      IndexParams, RetrievalParams, AnswerParams (defaults, help, ranges, validation)
"""
