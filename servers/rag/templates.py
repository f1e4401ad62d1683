"""Purpose templates: what a purpose keeps, masks and drops, its summary length, its exports.

A request names its purpose (and optionally a version; the current one
otherwise), and everything the request sends back is shaped by that template.
Templates are versioned and immutable: a change is a new version, and the
purpose and version go into every manifest, so an output can always be traced
to the rules it was produced under. Unknown purposes and versions are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.errors import ErrorReason, InvalidArgument
from servers.rag.pii import KINDS

KEEP, MASK, DROP = "keep", "mask", "drop"
SUMMARY_MARKDOWN, CHUNKS_JSONL, MANIFEST_JSON = "summary_markdown", "chunks_jsonl", "manifest_json"


@dataclass(frozen=True)
class PurposeTemplate:
    """One version of a purpose's rules.

    Attributes:
        id: The purpose, as requests name it ("legal-review").
        version: Increases with every change of the rules.
        actions: What happens to each PII kind (`KEEP`, `MASK`, `DROP`); kinds
            left out are masked.
        max_sentences: Sentences in a summary.
        exports: Export formats the purpose may download.
    """

    id: str
    version: int
    name: str
    description: str
    max_sentences: int
    actions: Mapping[str, str] = field(default_factory=dict)
    exports: tuple[str, ...] = (SUMMARY_MARKDOWN, MANIFEST_JSON)

    def action(self, kind: str) -> str:
        """What happens to `kind` under this template."""
        return self.actions.get(kind, MASK)

    def rules(self) -> dict[str, str]:
        """The action of every PII kind."""
        return {kind: self.action(kind) for kind in KINDS}

    def screened_kinds(self) -> tuple[str, ...]:
        """Kinds that must not appear in an output (every kind not kept)."""
        return tuple(kind for kind in KINDS if self.action(kind) != KEEP)

    def dropped_kinds(self) -> frozenset[str]:
        """Kinds whose sentences a summary never picks."""
        return frozenset(kind for kind in KINDS if self.action(kind) == DROP)


def _all(action: str) -> Mapping[str, str]:
    return dict.fromkeys(KINDS, action)


#: Every version of every template, oldest first per purpose.
TEMPLATES: tuple[PurposeTemplate, ...] = (
    PurposeTemplate(
        id="legal-review",
        version=1,
        name="Legal review",
        description="Counsel reviewing a document: the parties' names stay, every other "
        "kind of personal data is masked; summaries, chunks and the manifest may be exported.",
        max_sentences=8,
        actions=MappingProxyType({**_all(MASK), "person": KEEP}),
        exports=(SUMMARY_MARKDOWN, CHUNKS_JSONL, MANIFEST_JSON),
    ),
    PurposeTemplate(
        id="analytics",
        version=1,
        name="Analytics",
        description="Aggregate analysis: personal data of every kind is dropped, and no "
        "summary sentence that held any is used; the summary and the manifest may be exported.",
        max_sentences=5,
        actions=MappingProxyType(_all(DROP)),
        exports=(SUMMARY_MARKDOWN, MANIFEST_JSON),
    ),
    PurposeTemplate(
        id="support",
        version=1,
        name="Support",
        description="Support agents: everything personal masked, a three-sentence summary.",
        max_sentences=3,
        actions=MappingProxyType(_all(MASK)),
        exports=(SUMMARY_MARKDOWN, CHUNKS_JSONL, MANIFEST_JSON),
    ),
    PurposeTemplate(
        id="support",
        version=2,
        name="Support",
        description="Support agents: everything personal masked, secrets and payment cards "
        "dropped (their sentences never summarised), a five-sentence summary.",
        max_sentences=5,
        actions=MappingProxyType({**_all(MASK), "secret": DROP, "payment_card": DROP}),
        exports=(SUMMARY_MARKDOWN, CHUNKS_JSONL, MANIFEST_JSON),
    ),
)


def current_versions() -> dict[str, int]:
    """The current (latest) version of each purpose."""
    latest: dict[str, int] = {}
    for template in TEMPLATES:
        latest[template.id] = max(latest.get(template.id, 0), template.version)
    return latest


def template(purpose: str, version: int = 0) -> PurposeTemplate:
    """The template a request names: `purpose` at `version`, or its current version when 0.

    Raises:
        InvalidArgument: No purpose named, or no such purpose or version
            (reason PURPOSE_UNKNOWN, metadata naming the known ones).
    """
    versions = [t for t in TEMPLATES if t.id == purpose.strip()]
    known = ", ".join(sorted(current_versions()))
    if not versions:
        message = (
            f"unknown purpose {purpose!r}; choose one of {known}"
            if purpose.strip()
            else f"name the purpose of the request: one of {known}"
        )
        raise InvalidArgument(
            message,
            field="purpose",
            reason=ErrorReason.ERROR_REASON_PURPOSE_UNKNOWN,
            metadata={"known": known},
        )
    if version == 0:
        return max(versions, key=lambda t: t.version)
    for candidate in versions:
        if candidate.version == version:
            return candidate
    raise InvalidArgument(
        f"purpose {purpose!r} has no version {version}; versions: "
        + ", ".join(str(t.version) for t in versions),
        field="purpose_version",
        reason=ErrorReason.ERROR_REASON_PURPOSE_UNKNOWN,
    )
