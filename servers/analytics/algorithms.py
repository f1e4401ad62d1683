"""The whole-graph and seeded algorithms of the analytics packs, on arrays.

They run inside the pack worker processes: no database and no gRPC here, only
numpy arrays (possibly read-only memory maps, which nothing here writes into) and
the libraries that do the heavy lifting (scipy's sparse kernels, igraph, networkit).

Each answer says how good it is: PageRank and personalised PageRank report a
certified bound on their L1 distance to the exact vector, betweenness says whether
it is exact (Brandes) or an estimate within epsilon of it for every entity at once
with probability 1 - delta (KADABRA).

Measured on this project's 2-core reference machine, `heavy_tailed(250_000,
1_200_000, seed=7)`, from the arrays: PageRank 88 ms with two threads (144 ms with
one; 46 iterations, bound 8.9e-8, 6.6e-8 from the converged vector); personalised
PageRank 21 ms per seed (p95 25 ms; bound 0.18 when its work budget runs out);
betweenness 2.2 to 2.4 s (KADABRA, epsilon 0.005; exact Brandes at the exact_limit
takes 2.4 to 3.2 s); communities 2.1 to 2.25 s (Leiden, modularity 0.6956).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import igraph
import numpy as np
import scipy.sparse  # type: ignore[import-untyped]  # ships no type information
import scipy.sparse.csgraph  # type: ignore[import-untyped]

# The C kernels behind scipy's `matrix @ vector`, called directly because they add
# into an existing vector where the public `@` allocates the product and another pass
# adds it (see `_add_product`).
from scipy.sparse import _sparsetools

#: PageRank stops here even if the bound is still above the tolerance (with damping
#: 0.85 the bound shrinks by at least 0.85 per iteration, so only a tolerance below
#: what float64 can certify gets here; the bound reported says so).
PAGERANK_MAX_ITERATIONS = 1_000
#: Below this many edges one thread does PageRank's products: handing half of a
#: smaller product to a second thread costs more than it saves (measured: 5.6 ms with
#: one thread and 6.8 with two at 100k edges, 12.1 and 11.4 at 200k).
PARALLEL_MIN_EDGES = 200_000
#: A forward push goes over to whole-graph sweeps once one round would scan at least
#: this share of a sweep's work: numpy's gather/scatter push costs 12 to 18 ns per
#: edge, scipy's sparse kernel about 2.5 ns over every edge.
PUSH_SWEEP_SHARE = 1 / 5
#: A sweep pushes the rows block by block (Gauss-Seidel): mass pushed into a later
#: block is pushed again in the same sweep. Measured on the reference graph, 32 blocks
#: shrink the residual by 0.74 per sweep where one block (Jacobi) gets 0.85; going
#: backwards every other sweep was worse (the block pushed last is pushed first).
PUSH_BLOCKS = 32
#: ...but a block has at least this many edges (a block costs ~15 us of Python).
PUSH_BLOCK_MIN_EDGES = 16_384
#: KADABRA's `startFactor` (networkit's default): its warm-up draws omega / 100 samples.
KADABRA_START_FACTOR = 100

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Csr:
    """Compressed sparse rows: row v's entries are `neighbours[offsets[v]:offsets[v + 1]]`.

    A row holds either a node's out-edges (neighbours are the heads) or its in-edges
    (neighbours are the tails), as the function taking it says.

    >>> rows = Csr.of(3, np.array([0, 2, 0]), np.array([1, 0, 2]), np.array([1.0, 2.0, 3.0]))
    >>> rows.nodes, rows.offsets.tolist(), rows.neighbours.tolist(), rows.weights.tolist()
    (3, [0, 2, 2, 3], [1, 2, 0], [1.0, 3.0, 2.0])
    """

    offsets: np.ndarray  # int64, nodes + 1
    neighbours: np.ndarray  # int32
    weights: np.ndarray  # float64, aligned with neighbours

    @property
    def nodes(self) -> int:
        """Number of rows."""
        return len(self.offsets) - 1

    @classmethod
    def of(cls, nodes: int, tails: np.ndarray, heads: np.ndarray, weights: np.ndarray) -> Csr:
        """The rows of the edges `tails[i] -> heads[i]` (row order keeps edge order)."""
        order = np.argsort(tails, kind="stable")
        offsets = np.zeros(nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(tails, minlength=nodes), out=offsets[1:])
        return cls(
            offsets,
            np.asarray(heads)[order].astype(np.int32, copy=False),
            np.asarray(weights, dtype=np.float64)[order],
        )


@dataclass(frozen=True)
class Ranking:
    """A score per node and how it was obtained.

    `exact` means not sampled: the scores are the algorithm's answer, within
    `l1_error_bound` for an iteration stopped at a certified tolerance. A sampled
    estimate (`exact` False) is within `epsilon` of the exact score for every node at
    once, with probability at least 1 - `delta`.
    """

    scores: np.ndarray  # float64, one per node
    exact: bool
    method: str
    iterations: int = 0
    l1_error_bound: float = 0.0
    epsilon: float = 0.0
    delta: float = 0.0


@dataclass(frozen=True)
class Seeded:
    """A personalised PageRank: the nodes it reached and their scores.

    Each score is a lower bound of the node's exact score, and the exact vector is
    at L1 distance `l1_error_bound` from these (exactly: the mass not yet placed).
    """

    nodes: np.ndarray  # int64, the nodes with a positive score, ascending
    scores: np.ndarray  # float64, aligned with nodes
    l1_error_bound: float
    rounds: int
    edges_scanned: int


@dataclass(frozen=True)
class Partition:
    """Communities: each node's community (0 .. count - 1) and the partition's modularity."""

    membership: np.ndarray  # int64, one per node
    modularity: float
    count: int


# -- PageRank ---------------------------------------------------------------------------


def _add_product(matrix: scipy.sparse.csr_matrix, vector: np.ndarray, into: np.ndarray) -> None:
    """`into += matrix @ vector`, in place.

    scipy's own kernel, without the allocation and the extra pass of `@`: 0.1 ms of
    a PageRank iteration's 1.8 at the reference size, and 0.25 ms of each of a
    forward-push sweep's 32 block products.
    """
    rows, columns = matrix.shape
    _sparsetools.csr_matvec(rows, columns, matrix.indptr, matrix.indices, matrix.data, vector, into)


def _add_transposed_product(
    matrix: scipy.sparse.csr_matrix, vector: np.ndarray, into: np.ndarray
) -> None:
    """`into += matrix.T @ vector`, in place (the CSC kernel on the same arrays)."""
    rows, columns = matrix.shape
    _sparsetools.csc_matvec(columns, rows, matrix.indptr, matrix.indices, matrix.data, vector, into)


@dataclass(frozen=True)
class _RowBlock:
    """Rows first..last of damping * P^T, its dangling nodes, a buffer for its change."""

    first: int
    last: int
    matrix: scipy.sparse.csr_matrix
    dangling: np.ndarray
    change: np.ndarray


def pagerank(
    incoming: Csr,
    out_strength: np.ndarray,
    *,
    damping: float = 0.85,
    tolerance: float = 1e-7,
    start: np.ndarray | None = None,
    threads: int = 2,
) -> Ranking:
    """Weighted PageRank by power iteration, to a certified L1 tolerance.

    The same vector as `networkx.pagerank(G, alpha=damping, weight="weight")`:
    parallel edges add up, a self-loop is an ordinary edge, and the rank of dangling
    nodes and the teleport are spread uniformly. Each iteration is
    x' = M x + (1 - sum(M x)) / n with M = damping * P^T, built once from the rows;
    it stops when damping / (1 - damping) * |x' - x|_1, a bound on |x' - pi|_1 (the
    iteration is a damping-contraction in L1), is at most `tolerance`.

    Args:
        incoming: Each node's in-edges: row v holds the edges u -> v (the tails u and
            the weights).
        out_strength: Each node's total out-edge weight (0: dangling).
        damping: The probability of following an edge.
        tolerance: The L1 error to certify.
        start: A vector to start from, such as the previous revision's PageRank
            (negative entries count as 0; it is normalised; all zero: uniform).
        threads: Threads for the products, each taking rows holding about the same
            number of edges (scipy's kernel releases the GIL).

    Returns:
        The vector, with the iterations and the certified L1 bound.

    Raises:
        ValueError: The damping is not in [0, 1), or an array has the wrong length.

    >>> rows = Csr.of(3, np.array([1, 2, 0]), np.array([0, 1, 2]), np.ones(3))  # a cycle
    >>> found = pagerank(rows, np.ones(3))
    >>> found.scores.round(6).tolist(), found.l1_error_bound <= 1e-7
    ([0.333333, 0.333333, 0.333333], True)
    """
    nodes = incoming.nodes
    _check_damping(damping)
    if len(out_strength) != nodes:
        raise ValueError(f"out_strength has {len(out_strength)} entries for {nodes} nodes")
    if nodes == 0:
        return Ranking(np.zeros(0), exact=True, method="power_iteration")
    edges = int(incoming.offsets[-1])
    parts = max(1, threads) if edges >= PARALLEL_MIN_EDGES else 1
    current = _start_vector(start, nodes)
    following = np.empty(nodes)
    with ThreadPoolExecutor(max_workers=parts - 1 or 1) as pool:
        blocks = _on_threads(
            pool,
            lambda rows: _row_block(incoming, out_strength, damping, rows),
            _balanced_rows(incoming.offsets, parts),
        )
        dangling_mass = sum(float(current[b.first : b.last][b.dangling].sum()) for b in blocks)
        total, bound, iterations = float(current.sum()), math.inf, 0
        while bound > tolerance and iterations < PAGERANK_MAX_ITERATIONS:
            # sum(M x) is damping times the mass on nodes with out-edges.
            teleport = (1.0 - damping * (total - dangling_mass)) / nodes
            found = _on_threads(pool, _power_step(current, following, teleport), blocks)
            change = sum(part[0] for part in found)
            dangling_mass = sum(part[1] for part in found)
            total = sum(part[2] for part in found)
            current, following = following, current
            iterations += 1
            bound = damping / (1.0 - damping) * change if damping > 0 else 0.0
    return Ranking(
        current,
        exact=True,
        method="power_iteration",
        iterations=iterations,
        l1_error_bound=bound,
    )


def _on_threads(
    pool: ThreadPoolExecutor, work: Callable[[_Item], _Result], items: list[_Item]
) -> list[_Result]:
    """`work(item)` for each item, the first on this thread and the others on the pool's.

    (One handoff fewer per PageRank iteration than `pool.map`: 0.1 ms of its 1.8.)
    """
    pending = [pool.submit(work, item) for item in items[1:]]
    return [work(items[0]), *(future.result() for future in pending)]


def _check_damping(damping: float) -> None:
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), not {damping}")


def _start_vector(start: np.ndarray | None, nodes: int) -> np.ndarray:
    """A probability vector from `start` (a copy: the caller's array is left alone)."""
    if start is None:
        return np.full(nodes, 1.0 / nodes)
    vector = np.array(start, dtype=np.float64)
    if vector.shape != (nodes,):
        raise ValueError(f"start has shape {vector.shape} for {nodes} nodes")
    vector[~np.isfinite(vector)] = 0.0
    np.maximum(vector, 0.0, out=vector)
    total = float(vector.sum())
    if total <= 0.0:
        return np.full(nodes, 1.0 / nodes)
    vector /= total
    return vector


def _balanced_rows(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive row ranges holding about the same number of entries."""
    nodes = len(offsets) - 1
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], parts + 1)[1:-1])
    bounds = [0, *np.clip(cuts, 0, nodes).tolist(), nodes]
    return list(itertools.pairwise(bounds))


def _row_block(
    incoming: Csr, out_strength: np.ndarray, damping: float, rows: tuple[int, int]
) -> _RowBlock:
    """Rows `rows` of damping * P^T: entry (v, u) is damping * w(u, v) / out_strength(u)."""
    first, last = rows
    begin, end = int(incoming.offsets[first]), int(incoming.offsets[last])
    tails = incoming.neighbours[begin:end]
    strength = out_strength[tails]
    data = np.zeros(end - begin)
    np.divide(damping * incoming.weights[begin:end], strength, out=data, where=strength > 0)
    indptr = incoming.offsets[first : last + 1] - begin
    matrix = scipy.sparse.csr_matrix((data, tails, indptr), shape=(last - first, len(out_strength)))
    dangling = np.flatnonzero(~(out_strength[first:last] > 0))
    return _RowBlock(first, last, matrix, dangling, np.empty(last - first))


def _power_step(
    current: np.ndarray, following: np.ndarray, teleport: float
) -> Callable[[_RowBlock], tuple[float, float, float]]:
    """One iteration on a block of rows: writes x' there, returns (L1 change, dangling, total).

    No BLAS call here (a dot product, say): OpenBLAS's own threads fight ours, which
    made two threads slower than one.
    """

    def step(block: _RowBlock) -> tuple[float, float, float]:
        mine = following[block.first : block.last]
        mine.fill(teleport)
        _add_product(block.matrix, current, mine)
        change = np.subtract(mine, current[block.first : block.last], out=block.change)
        np.abs(change, out=change)
        return float(change.sum()), float(mine[block.dangling].sum()), float(mine.sum())

    return step


# -- personalised PageRank ---------------------------------------------------------------


@dataclass(frozen=True)
class PushBlock:
    """Rows first..last of the out-edges (weights), and what pushing them needs."""

    first: int
    last: int
    matrix: scipy.sparse.csr_matrix
    scale: np.ndarray  # damping / out_strength per row, 0 for a dangling row
    dangling: np.ndarray  # the block's dangling nodes (node ids)
    work: int


class _ForwardPush:
    """The state of a forward push: settled mass, residual, and the work done.

    The estimate is (1 - damping) * settled; pi = estimate + PPR(residual), so the L1
    error is exactly the residual's mass.
    """

    def __init__(
        self, outgoing: Csr, out_strength: np.ndarray, seeds: np.ndarray, damping: float
    ) -> None:
        self.rows = outgoing
        self.out_strength = out_strength
        self.seeds = seeds
        self.damping = damping
        self.residual = np.zeros(outgoing.nodes)
        self.residual[seeds] = 1.0 / len(seeds)
        self.settled = np.zeros(outgoing.nodes)
        self.remaining = 1.0  # the residual's mass, kept up to date as mass is pushed
        self.work = 0
        self.rounds = 0

    def round_cost(self, frontier: np.ndarray) -> tuple[np.ndarray, int]:
        """The out-edges to scan per frontier node (0 if dangling), and the round's work."""
        offsets = self.rows.offsets
        counts = np.where(
            self.out_strength[frontier] > 0, offsets[frontier + 1] - offsets[frontier], 0
        )
        dangling = int(np.count_nonzero(~(self.out_strength[frontier] > 0)))
        return counts, int(counts.sum()) + dangling

    def push_frontier(self, frontier: np.ndarray, counts: np.ndarray, cost: int) -> np.ndarray:
        """Push every frontier node's residual (numpy); returns the nodes that received mass."""
        rows, damping, residual = self.rows, self.damping, self.residual
        pushed = residual[frontier]
        residual[frontier] = 0.0
        self.settled[frontier] += pushed
        flows = counts > 0
        starts = rows.offsets[frontier]
        before = np.cumsum(counts) - counts
        positions = np.arange(int(counts.sum())) + np.repeat(starts - before, counts)
        shares = pushed * damping / np.where(flows, self.out_strength[frontier], 1.0)
        heads = rows.neighbours[positions]
        np.add.at(residual, heads, np.repeat(shares, counts) * rows.weights[positions])
        back = damping * float(pushed[~flows].sum())
        if back > 0:
            residual[self.seeds] += back / len(self.seeds)
            heads = np.concatenate([heads, self.seeds])
        self.remaining = float(residual.sum())
        self.work += cost
        self.rounds += 1
        if len(heads) * 16 < len(residual):
            return _distinct(heads)
        return np.flatnonzero(residual)

    def sweep(self, blocks: list[PushBlock], tolerance: float, max_work: int) -> bool:
        """Push every row block in turn (scipy); False once the tolerance or budget stops it."""
        damping, residual = self.damping, self.residual
        buffer = np.empty(max(block.last - block.first for block in blocks))
        counted = False  # a sweep counts as one round
        for block in blocks:
            part = residual[block.first : block.last]
            mass = float(part.sum())
            if mass == 0.0:
                continue
            if self.work + block.work > max_work:
                return False
            if not counted:
                self.rounds, counted = self.rounds + 1, True
            back = damping * float(residual[block.dangling].sum())
            scaled = np.multiply(part, block.scale, out=buffer[: block.last - block.first])
            self.settled[block.first : block.last] += part
            part.fill(0.0)
            _add_transposed_product(block.matrix, scaled, residual)
            if back > 0:
                residual[self.seeds] += back / len(self.seeds)
            self.work += block.work
            self.remaining -= (1.0 - damping) * mass
            if self.remaining <= tolerance:
                self.remaining = float(residual.sum())  # what the caller will report
                if self.remaining <= tolerance:
                    return False
        self.remaining = float(residual.sum())
        return True


def sweep_blocks(outgoing: Csr, out_strength: np.ndarray, damping: float) -> list[PushBlock]:
    """The rows cut into blocks of about equal edges, for a forward push's sweeps.

    They depend on the graph only: a caller pushing from many seeds over one graph
    makes them once and passes them to `personalized_pagerank` (3.5 ms saved a call at
    the reference size).
    """
    count = max(1, min(PUSH_BLOCKS, int(outgoing.offsets[-1]) // PUSH_BLOCK_MIN_EDGES))
    found = []
    for first, last in _balanced_rows(outgoing.offsets, count):
        begin, end = int(outgoing.offsets[first]), int(outgoing.offsets[last])
        indptr = outgoing.offsets[first : last + 1] - begin
        matrix = scipy.sparse.csr_matrix(
            (outgoing.weights[begin:end], outgoing.neighbours[begin:end], indptr),
            shape=(last - first, outgoing.nodes),
        )
        strength = out_strength[first:last]
        scale = np.zeros(last - first)
        np.divide(damping, strength, out=scale, where=strength > 0)
        dangling = np.flatnonzero(~(strength > 0))
        found.append(
            PushBlock(first, last, matrix, scale, dangling + first, end - begin + len(dangling))
        )
    return found


def personalized_pagerank(
    outgoing: Csr,
    out_strength: np.ndarray,
    seeds: np.ndarray,
    *,
    damping: float = 0.85,
    tolerance: float = 1e-4,
    max_work: int = 5_000_000,
    blocks: list[PushBlock] | None = None,
) -> Seeded:
    """PageRank personalised to `seeds`, by forward push, with a certified L1 error.

    The vector of `networkx.pagerank(G, alpha=damping, personalization={s: 1 for s
    in seeds}, weight="weight")`: the walk restarts at a seed chosen uniformly, and
    so does a walk at a dangling node. Forward push (Andersen, Chung and Lang) keeps
    an estimate p and a residual r (initially uniform over the seeds); pushing node
    u settles (1 - damping) r[u] into p[u] and spreads damping r[u] over u's
    out-edges by weight (back to the seeds if u is dangling). The exact vector is p
    plus the PageRank of r, so |pi - p|_1 is exactly sum(r): the bound reported.

    Rounds push every node holding residual, in numpy while the nodes reached are
    few; once a round would scan a fifth of the graph, rounds become sweeps over all
    rows with scipy's sparse kernel (6x faster per edge), block by block so mass
    moved forward is pushed again in the same sweep. It stops at `tolerance` or
    before the work (edges scanned, plus one per dangling node pushed) would pass
    `max_work`.

    The defaults, measured on the 2-core reference machine with 50 random seeds of
    the heavy-tailed reference graph (250k nodes, 1.2M edges): the budget of 5M units
    takes 22 ms (p95 25 ms) and leaves a bound of 0.18 (p95 0.20). A seed's walks
    reach most of such a graph within a few hops, so past the first rounds each
    sweep of the whole graph (1.24M units, about 3 ms) cuts the bound by only 0.74,
    and each tenfold cut costs about 27 ms more (8M units: 31 ms for 0.085; 10M:
    36 ms for 0.05; 20M: 63 ms for 0.004). The budget holds a run to about 20 ms
    there; graphs up to about 100k edges reach the 1e-4 tolerance in it (9 ms), and
    200k edges get to 8e-4 (13 ms).

    Args:
        outgoing: Each node's out-edges (row u holds the heads and weights).
        out_strength: Each node's total out-edge weight (0: dangling); it must be
            the sum of the row's weights, or mass is lost without being counted.
        seeds: The nodes to restart from (duplicates count once).
        damping: The probability of following an edge.
        tolerance: The L1 error at which to stop.
        max_work: The most work to do (edges scanned).
        blocks: `sweep_blocks` of this graph and damping, if the caller keeps them.

    Returns:
        The nodes with a positive estimate, their estimates, and the L1 bound.

    Raises:
        ValueError: No seeds, a seed out of range, a damping not in [0, 1), a
            non-positive tolerance or an array of the wrong length.

    >>> rows = Csr.of(3, np.array([0, 1]), np.array([1, 2]), np.ones(2))  # 0 -> 1 -> 2
    >>> found = personalized_pagerank(rows, np.array([1.0, 1.0, 0.0]), np.array([0]))
    >>> found.nodes.tolist(), found.scores.round(3).tolist(), found.l1_error_bound <= 1e-4
    ([0, 1, 2], [0.389, 0.33, 0.281], True)
    """
    nodes = outgoing.nodes
    _check_damping(damping)
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, not {tolerance}")
    if len(out_strength) != nodes:
        raise ValueError(f"out_strength has {len(out_strength)} entries for {nodes} nodes")
    seeds = _distinct(np.asarray(seeds, dtype=np.int64).ravel())
    if len(seeds) == 0:
        raise ValueError("no seeds")
    if seeds[0] < 0 or seeds[-1] >= nodes:
        raise ValueError(f"a seed is not a node of this graph of {nodes}")
    push = _ForwardPush(outgoing, out_strength, seeds, damping)
    sweep_work = int(outgoing.offsets[-1]) + int(np.count_nonzero(~(out_strength > 0)))
    frontier = seeds
    sweeping: list[PushBlock] | None = None
    while push.remaining > tolerance:
        if sweeping is None:
            counts, cost = push.round_cost(frontier)
            if cost >= PUSH_SWEEP_SHARE * sweep_work:
                sweeping = blocks or sweep_blocks(outgoing, out_strength, damping)
                continue
            if push.work + cost > max_work:
                break
            frontier = push.push_frontier(frontier, counts, cost)
        elif not push.sweep(sweeping, tolerance, max_work):
            break
    reached = np.flatnonzero(push.settled)
    return Seeded(
        reached,
        (1.0 - damping) * push.settled[reached],
        l1_error_bound=float(push.residual.sum()),
        rounds=push.rounds,
        edges_scanned=push.work,
    )


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (by sorting: numpy's hashing unique is slower here)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


# -- betweenness -------------------------------------------------------------------------


def betweenness(
    nodes: int,
    sources: np.ndarray,
    targets: np.ndarray,
    *,
    epsilon: float = 0.005,
    delta: float = 0.1,
    seed: int = 0,
    exact_limit: float = 3e8,
    threads: int = 2,
) -> Ranking:
    """Each node's share of the pairs of other nodes whose shortest paths pass through it.

    Paths are undirected and unweighted (directions, weights, parallel edges and
    self-loops do not matter). The score is B(v) / C(n, 2), B(v) being
    `networkx.betweenness_centrality(G, normalized=False)` of the simple undirected
    graph: the sum over pairs {s, t} not containing v of the share of their shortest
    paths through v.

    Exact (Brandes, igraph) when nodes * (nodes + edges) <= `exact_limit`; otherwise
    KADABRA (Borassi and Natale; networkit's parallel version), whose estimate is
    within `epsilon` of the score for every node at once with probability at least
    1 - `delta`. Two corrections to networkit's KadabraBetweenness (11.3, read in its
    KadabraBetweenness.cpp): its scores of an undirected graph are doubled (it
    multiplies by 2 after estimating B/C(n, 2)), and the counts of its warm-up samples
    (omega / startFactor of them) stay in the frames of its first epoch, so they are
    in the scores but not in the number of samples the scores are divided by. That
    lifts every score by 1 to 1.6 %, enough to break the guarantee: on a path through
    a diamond with epsilon 0.002 its (halved) scores were off by up to 0.0063, these
    by 0.0015. The scores here are the plain averages over all the samples drawn.
    A graph whose components are all cliques has no betweenness at all and is
    answered without KADABRA (which never returns when the diameter is 1).

    Args:
        nodes: Number of nodes.
        sources: One end of each edge.
        targets: The other end.
        epsilon: The additive error KADABRA guarantees.
        delta: The probability that it does not hold.
        seed: Seeds KADABRA. With one thread the same seed gives the same scores;
            with more, networkit's sampling threads race to its stopping rule and
            the number of samples (so the scores) varies from run to run, even in
            its "deterministic" mode (measured: 19k to 26k samples on a 2,000-node
            graph), always within the guarantee.
        exact_limit: The largest nodes * (nodes + edges) computed exactly.
        threads: Threads KADABRA may use.

    Returns:
        The scores, exact (method "brandes") or estimated (method "kadabra", with
        the number of paths sampled as `iterations`).

    Raises:
        ValueError: epsilon or delta not in (0, 1), edge arrays of different lengths,
            or an edge ending outside the nodes.

    >>> path = betweenness(3, np.array([0, 1]), np.array([1, 2]))  # 0 - 1 - 2
    >>> path.scores.round(6).tolist(), path.method
    ([0.0, 0.333333, 0.0], 'brandes')
    """
    if not (0 < epsilon < 1 and 0 < delta < 1):
        raise ValueError(f"epsilon and delta must be in (0, 1), not {epsilon}, {delta}")
    if len(sources) != len(targets):
        raise ValueError("sources and targets differ in length")
    if nodes < 3:
        return Ranking(np.zeros(nodes), exact=True, method="brandes")
    first, second = _simple_undirected(nodes, sources, targets)
    pairs = nodes * (nodes - 1) / 2
    if nodes * (nodes + len(first)) <= exact_limit:
        graph = igraph.Graph(
            n=nodes, edges=zip(first.tolist(), second.tolist(), strict=True), directed=False
        )
        exact = np.asarray(graph.betweenness(directed=False), dtype=np.float64) / pairs
        return Ranking(exact, exact=True, method="brandes")
    if _only_cliques(nodes, first, second):
        return Ranking(np.zeros(nodes), exact=True, method="brandes")
    scores, samples = _kadabra(
        nodes, first, second, epsilon=epsilon, delta=delta, seed=seed, threads=threads
    )
    return Ranking(
        scores,
        exact=False,
        method="kadabra",
        iterations=samples,
        epsilon=epsilon,
        delta=delta,
    )


def _simple_undirected(
    nodes: int, sources: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct undirected edges {u, v}, u < v (self-loops dropped), sorted."""
    low = np.minimum(sources, targets).astype(np.int64)
    high = np.maximum(sources, targets).astype(np.int64)
    if len(low) and (low.min() < 0 or high.max() >= nodes):
        raise ValueError(f"an edge ends outside the {nodes} nodes")
    keys = _distinct((low * nodes + high)[low != high])
    return keys // nodes, keys % nodes


def _only_cliques(nodes: int, first: np.ndarray, second: np.ndarray) -> bool:
    """Whether every connected component is a clique (then no node is between two others)."""
    degree = np.bincount(first, minlength=nodes) + np.bincount(second, minlength=nodes)
    if np.any(degree[first] != degree[second]):  # in a clique, every degree is the same
        return False
    adjacency = scipy.sparse.csr_matrix(
        (np.ones(len(first), dtype=np.int8), (first, second)), shape=(nodes, nodes)
    )
    _, labels = scipy.sparse.csgraph.connected_components(adjacency, directed=False)
    sizes = np.bincount(labels)
    return bool(np.all(degree == sizes[labels] - 1))


def _kadabra(
    nodes: int,
    first: np.ndarray,
    second: np.ndarray,
    *,
    epsilon: float,
    delta: float,
    seed: int,
    threads: int,
) -> tuple[np.ndarray, int]:
    """KADABRA's estimates of B / C(n, 2) on the simple graph, and the samples drawn."""
    # Only the background computation of betweenness needs it (0.2 s to import): not
    # every worker at its start.
    import networkit  # type: ignore[import-untyped]  # noqa: PLC0415 - ships no types

    graph = networkit.GraphFromCoo(
        (first.astype(np.uint64), second.astype(np.uint64)), n=nodes, directed=False
    )
    with _networkit_threads(threads):
        # Each thread's sampler is seeded from two draws of the calling thread's
        # generator, which this seeds (networkit asks for per-thread seeds). Its
        # "deterministic" mode is not asked for: it did not make runs with two threads
        # repeat (see `betweenness`), and one thread repeats without it.
        networkit.engineering.setSeed(seed, True)
        kadabra = networkit.centrality.KadabraBetweenness(
            graph, epsilon, delta, False, 0, 0, KADABRA_START_FACTOR
        )
        kadabra.run()
        raw = np.asarray(kadabra.scores(), dtype=np.float64)
        samples = int(kadabra.getNumberOfIterations())  # the warm-up samples included
        warm_up = int(kadabra.getOmega() / KADABRA_START_FACTOR)
    scores: np.ndarray = raw / 2.0 * ((samples - warm_up) / max(samples, 1))
    return scores, samples


@contextmanager
def _networkit_threads(threads: int) -> Iterator[None]:
    """The OpenMP thread count of networkit set to `threads`, then put back."""
    import networkit  # noqa: PLC0415 - see `_kadabra`

    previous = int(networkit.getMaxNumberOfThreads())
    networkit.setNumberOfThreads(max(1, threads))
    try:
        yield
    finally:
        networkit.setNumberOfThreads(previous)


# -- communities -------------------------------------------------------------------------


def communities(
    nodes: int,
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    seed: int = 0,
    iterations: int = 2,
) -> Partition:
    """Leiden communities (modularity) of the graph taken as undirected and weighted.

    Each relationship is an undirected edge of its weight (parallel ones stay
    separate edges, which for modularity is the same as adding their weights).
    igraph draws from Python's `random`, seeded here with `seed` (and put back
    after). On the reference graph two iterations take 1.65 s for modularity 0.6956
    (iterating to a fixed point: 12 s for 0.6959), building igraph's graph 0.35 s
    (from Python lists, which igraph reads faster than numpy arrays).

    >>> found = communities(6, np.array([0, 1, 2, 3, 4, 5, 0]), np.array([1, 2, 0, 4, 5, 3, 3]),
    ...                     np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1]))  # two triangles
    >>> found.count, round(found.modularity, 4)
    (2, 0.4836)
    """
    if nodes == 0:
        return Partition(np.zeros(0, dtype=np.int64), 0.0, 0)
    edges = zip(np.asarray(sources).tolist(), np.asarray(targets).tolist(), strict=True)
    graph = igraph.Graph(n=nodes, edges=edges, directed=False)
    graph.es["weight"] = np.asarray(weights, dtype=np.float64).tolist()
    state = random.getstate()
    random.seed(seed)
    try:
        found = graph.community_leiden(
            objective_function="modularity", weights="weight", n_iterations=iterations
        )
    finally:
        random.setstate(state)
    membership = np.asarray(found.membership, dtype=np.int64)
    return Partition(
        membership,
        modularity(nodes, sources, targets, weights, membership),
        int(membership.max()) + 1,
    )


def modularity(
    nodes: int,
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    membership: np.ndarray,
) -> float:
    """Newman's modularity of a partition, edges undirected and weighted (0 without edges).

    The share of the weight inside communities, less what a random graph with the
    same strengths would have there. A self-loop counts twice in its node's strength.

    >>> modularity(4, np.array([0, 2]), np.array([1, 3]), np.ones(2), np.array([0, 0, 1, 1]))
    0.5
    """
    total = float(np.sum(weights))
    if total <= 0:
        return 0.0
    inside = float(np.sum(weights[membership[sources] == membership[targets]]))
    strength = np.bincount(sources, weights, nodes) + np.bincount(targets, weights, nodes)
    per_community = np.bincount(membership, strength)
    return inside / total - float(np.square(per_community / (2 * total)).sum())
