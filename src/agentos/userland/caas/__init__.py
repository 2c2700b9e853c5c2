"""Context as a service: a RAG pipeline over the VFS with citations and a token budget.

`chunk.py` (tiling, the token bound, fitting), `index.py` (BM25 + vectors, fusion),
`embed.py` (the `embed` device and a model-free embedder), `service.py` (the service
process, the caller's jobs, the public calls). See `docs/context-and-ledger.md`.
"""
from __future__ import annotations

from .chunk import chunk, dedup_key, fit, tokens_of, version_of
from .embed import EmbedDriver, hash_embed
from .index import CaasIndex
from .service import (
    CAAS, CaasError, CaasService, Chunk, Citation, Context, IngestReport, ingest, put_document, retrieve,
)

__all__ = ["CAAS", "CaasError", "CaasIndex", "CaasService", "Chunk", "Citation", "Context", "EmbedDriver",
           "IngestReport", "chunk", "dedup_key", "fit", "hash_embed", "ingest", "put_document", "retrieve",
           "tokens_of", "version_of"]
