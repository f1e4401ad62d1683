"""Extractive summaries: rank a document's sentences by centrality, pick the best few.

The ranking is LexRank with continuous weights: sentences are TF-IDF vectors over lower-case
word tokens, edges are their cosine similarities, and PageRank (damping 0.85) over that graph
scores each sentence by how much of the document it speaks for. An off-topic sentence shares
only common words with the rest, which TF-IDF weighs little, and ranks low.

Cost is bounded for long documents: a graph on *n* sentences costs *n²* memory, so above
:data:`MAX_GRAPH_SENTENCES` sentences only the ones closest to the document's TF-IDF centroid
(linear to compute) enter the graph; the others rank below all of them, in centroid order.

Same input, same output, to the last bit: vocabularies are numbered in order of appearance,
sorts are stable with ties broken by position, and no sum runs through BLAS, whose thread
count can change the order in which floating-point sums are added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["DAMPING", "MAX_GRAPH_SENTENCES", "rank_sentences", "select_summary"]

MAX_GRAPH_SENTENCES = 2_000
"""Most sentences in the similarity graph (its matrix is 32 MB at this size)."""

DAMPING = 0.85
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-12  # L1 change of the scores between two iterations
_NEAR_DUPLICATE = 0.9  # cosine above which a sentence repeats one already chosen
_MIN_WORDS = 4

# Kana and CJK ideographs are written without spaces: each counts as a word of its own.
_IDEOGRAPHS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_IDEOGRAPHS}]|(?:(?![{_IDEOGRAPHS}])[^\W_])+")

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


def rank_sentences(sentences: Sequence[str]) -> list[float]:
    """Centrality of each sentence: higher speaks for more of the document.

    Scores are positive for the sentences in the graph and sum to 1 over them; sentences left
    out of it (beyond :data:`MAX_GRAPH_SENTENCES`) score below every one in it.

    >>> scores = rank_sentences(["Cats purr.", "Cats purr loudly.", "Stocks fell."])
    >>> scores.index(min(scores))
    2
    """
    return [float(score) for score in _rank(_TfIdf(sentences))]


def select_summary(
    sentences: Sequence[str], limit: int, *, exclude: Collection[int] = ()
) -> list[int]:
    """Positions of the ``limit`` best-ranked sentences, in document order.

    Ties go to the earlier sentence. A sentence that repeats one already chosen (cosine
    above 0.9) is never chosen, nor one without a word; one of fewer than four words only
    when no longer one is left. Positions in ``exclude`` (sentences the caller may not show)
    are never chosen. Fewer than ``limit`` come back when fewer qualify.

    >>> select_summary(["Cats purr.", "Cats purr when they are happy.", "Stocks fell."], 1)
    [1]
    """
    if limit <= 0 or not sentences:
        return []
    vectors = _TfIdf(sentences)
    scores = _rank(vectors)
    excluded = frozenset(exclude)
    by_rank = np.lexsort((np.arange(len(sentences)), -scores))
    chosen: list[int] = []
    chosen_vectors: list[dict[int, float]] = []
    for allow_short in (False, True):
        for position in by_rank.tolist():
            if len(chosen) == limit:
                break
            if position in excluded or position in chosen:
                continue
            words = vectors.words[position]
            if words == 0 or (words < _MIN_WORDS and not allow_short):
                continue
            vector = vectors.row(position)
            if any(_cosine(vector, other) > _NEAR_DUPLICATE for other in chosen_vectors):
                continue
            chosen.append(position)
            chosen_vectors.append(vector)
    return sorted(chosen)


class _TfIdf:
    """L2-normalised TF-IDF vectors of the sentences, as sparse rows (CSR arrays)."""

    def __init__(self, sentences: Sequence[str]) -> None:
        vocabulary: dict[str, int] = {}
        terms: list[int] = []
        counts: list[int] = []
        lengths: list[int] = []
        self.words: list[int] = []
        for sentence in sentences:
            row: dict[int, int] = {}
            tokens = _TOKEN.findall(sentence.lower())
            for token in tokens:
                term = vocabulary.setdefault(token, len(vocabulary))
                row[term] = row.get(term, 0) + 1
            terms.extend(row)
            counts.extend(row.values())
            lengths.append(len(row))
            self.words.append(len(tokens))
        self.size = len(sentences)
        self.vocabulary_size = len(vocabulary)
        self.terms: IndexArray = np.asarray(terms, dtype=np.intp)
        self.rows: IndexArray = np.repeat(np.arange(self.size, dtype=np.intp), lengths)
        self.starts: IndexArray = np.concatenate(([0], np.cumsum(lengths, dtype=np.intp)))
        # Sublinear term frequency, smoothed idf: a term in every sentence still weighs 1.
        frequency = np.bincount(self.terms, minlength=self.vocabulary_size)
        idf = np.log((1.0 + self.size) / (1.0 + frequency)) + 1.0
        weights = (1.0 + np.log(np.asarray(counts, dtype=np.float64))) * idf[self.terms]
        norms = np.sqrt(np.bincount(self.rows, weights=weights * weights, minlength=self.size))
        self.weights: FloatArray = weights / norms[self.rows] if weights.size else weights

    def row(self, position: int) -> dict[int, float]:
        start, end = int(self.starts[position]), int(self.starts[position + 1])
        return dict(
            zip(self.terms[start:end].tolist(), self.weights[start:end].tolist(), strict=True)
        )

    def centrality(self) -> FloatArray:
        """Cosine of each sentence with the sum of all: cheap, and close to the graph's rank."""
        centroid = np.bincount(self.terms, weights=self.weights, minlength=self.vocabulary_size)
        similarity = self.weights * centroid[self.terms]
        return np.bincount(self.rows, weights=similarity, minlength=self.size).astype(np.float64)

    def similarities(self, positions: IndexArray) -> FloatArray:
        """Cosine similarities between the given sentences, zero on the diagonal.

        Built term by term from postings rather than by a matrix product: memory stays at
        the result's, and every sum is added in one fixed order.
        """
        local = np.full(self.size, -1, dtype=np.intp)
        local[positions] = np.arange(positions.size, dtype=np.intp)
        keep = local[self.rows] >= 0
        rows, terms, weights = local[self.rows[keep]], self.terms[keep], self.weights[keep]
        order = np.lexsort((rows, terms))
        rows, terms, weights = rows[order], terms[order], weights[order]
        bounds = np.flatnonzero(np.diff(terms)) + 1
        starts = np.concatenate(([0], bounds)).tolist()
        ends = np.concatenate((bounds, [terms.size])).tolist()
        similarity = np.zeros((positions.size, positions.size))
        for start, end in zip(starts, ends, strict=True):
            if end - start > 1:  # a term of one sentence links nothing
                members = rows[start:end]
                similarity[np.ix_(members, members)] += np.outer(
                    weights[start:end], weights[start:end]
                )
        np.fill_diagonal(similarity, 0.0)
        return similarity


def _rank(vectors: _TfIdf) -> FloatArray:
    """PageRank scores of every sentence (see :func:`rank_sentences`)."""
    if vectors.size == 0:
        return np.zeros(0)
    if vectors.size <= MAX_GRAPH_SENTENCES:
        return _pagerank(vectors.similarities(np.arange(vectors.size, dtype=np.intp)))
    centrality = vectors.centrality()
    by_centrality = np.lexsort((np.arange(vectors.size), -centrality))
    in_graph = np.sort(by_centrality[:MAX_GRAPH_SENTENCES])
    graph_scores = _pagerank(vectors.similarities(in_graph))
    # Below the smallest possible graph score, (1 - d) / m, and in centrality order.
    floor = (1.0 - DAMPING) / MAX_GRAPH_SENTENCES
    top = float(centrality.max())
    scores = 0.5 * floor * np.clip(centrality, 0.0, None) / (top if top > 0 else 1.0)
    scores[in_graph] = graph_scores
    return scores


def _pagerank(similarity: FloatArray) -> FloatArray:
    """Stationary scores of a random walk along similarity, teleporting with 1 - damping."""
    size = similarity.shape[0]
    totals = similarity.sum(axis=1)
    dangling = totals == 0
    transition = similarity / np.where(dangling, 1.0, totals)[:, None]
    scores = np.full(size, 1.0 / size)
    for _ in range(_MAX_ITERATIONS):
        # A sentence linked to none spreads its score evenly, as if linked to all.
        spread = float(scores[dangling].sum()) / size
        # einsum without `optimize` runs numpy's own loop (no BLAS, no threads).
        flow = np.einsum("i,ij->j", scores, transition)
        updated = (1.0 - DAMPING) / size + DAMPING * (flow + spread)
        change = float(np.abs(updated - scores).sum())
        scores = updated
        if change < _TOLERANCE:
            break
    return scores


def _cosine(left: dict[int, float], right: dict[int, float]) -> float:
    if len(left) > len(right):
        left, right = right, left
    return math.fsum(weight * right.get(term, 0.0) for term, weight in left.items())
