"""Rag metrics: the seed's "RAG summary counts", resumed uploads, redactions, refused outputs."""

from prometheus_client import Counter

SUMMARIES = Counter("rag_summaries_total", "Summaries written, per purpose template.", ["purpose"])
UPLOADS_RESUMED = Counter(
    "rag_uploads_resumed_total",
    "Resumptions of unfinished uploads: a client asked where one stands (GetUploadStatus, "
    "tus HEAD) to go on from its committed offset.",
)
UPLOADS_COMPLETED = Counter("rag_uploads_completed_total", "Uploads completed into documents.")
UPLOADS_EXPIRED = Counter(
    "rag_uploads_expired_total", "Unfinished uploads abandoned past their expiry and freed."
)
INGESTED_BYTES = Counter("rag_ingested_bytes_total", "Bytes of documents read and chunked.")
REDACTIONS = Counter(
    "rag_redactions_total", "Spans of personal data replaced in outputs, per kind.", ["kind"]
)
OUTPUTS_REFUSED = Counter(
    "rag_outputs_refused_total",
    "Outputs the second screen found personal data in, refused instead of sent, per output.",
    ["output"],
)
