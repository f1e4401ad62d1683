"""A whole-graph ranking as stored with its revision: every entity, best first, and its score.

Encoded once by the worker that computed it (numpy arrays in an uncompressed
`.npz`: the ranked ids as UTF-8 bytes, their scores, and for communities each
one's community), decoded once per process into an LRU, and paged by slicing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, NamedTuple, NotRequired, TypedDict

import numpy as np


class Materialized(NamedTuple):
    """One whole-graph pack's ranking at a revision, encoded, and what to say about it.

    Made by a worker and sent to the server: a plain tuple of plain values, so the
    server unpickles it without loading the algorithms.
    """

    pack_id: str
    payload: bytes
    summary: dict[str, Any]


class Scored(TypedDict):
    """One entity of a ranked answer (communities add the entity's community)."""

    entity_id: str
    score: float
    community: NotRequired[int]


@dataclass(frozen=True)
class Ranked:
    """Entities best first, with their scores (and communities, for community packs)."""

    ids: np.ndarray  # numpy "S": UTF-8 bytes
    scores: np.ndarray  # float64
    communities: np.ndarray | None = None  # int32

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Memory its arrays take."""
        extra = 0 if self.communities is None else int(self.communities.nbytes)
        return int(self.ids.nbytes) + int(self.scores.nbytes) + extra

    def page(self, offset: int, size: int) -> list[Scored]:
        """Entities `offset` to `offset + size` of the ranking."""
        end = min(len(self), offset + size)
        page: list[Scored] = []
        for position in range(offset, end):
            entity: Scored = {
                "entity_id": bytes(self.ids[position]).decode(),
                "score": float(self.scores[position]),
            }
            if self.communities is not None:
                entity["community"] = int(self.communities[position])
            page.append(entity)
        return page

    def encode(self) -> bytes:
        """The bytes stored with the revision."""
        buffer = io.BytesIO()
        arrays = {"ids": self.ids, "scores": self.scores}
        if self.communities is not None:
            arrays["communities"] = self.communities
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def decode(cls, payload: bytes) -> Ranked:
        """Read stored bytes back."""
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            communities = arrays["communities"] if "communities" in arrays.files else None
            return cls(arrays["ids"], arrays["scores"], communities)


def ranked(ids: np.ndarray, scores: np.ndarray, communities: np.ndarray | None = None) -> Ranked:
    """Every entity ranked by score, highest first; ties in id order.

    Args:
        ids: Entity ids ("S", sorted), one per node.
        scores: One per node.
        communities: One per node, or None.
    """
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    return Ranked(
        np.asarray(ids)[order],
        np.asarray(scores, dtype=np.float64)[order],
        None if communities is None else np.asarray(communities, dtype=np.int32)[order],
    )
