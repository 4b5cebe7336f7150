"""Exact tree-ensemble votes for small trees by bit masks (QuickScorer, Lucchese et al., SIGIR 2015), in numpy.

Boosted models are many small trees (HistGradientBoosting: ≤ 31 leaves) whose rows take short, uneven paths; a
level-synchronous walk (``ml.treewalk``) spends most of its passes there. Here each tree of at most 64 leaves
gets one uint64 mask per row instead: leaves are numbered left to right, every internal node n owns the mask
that clears the leaves of its LEFT subtree, and a row's leaf is the lowest bit left after AND-ing the masks of
every node the row goes right at (x > threshold: "false" nodes). Per feature, sorting the nodes on it by
threshold makes a row's false nodes a prefix, so one ``searchsorted`` per feature and a prefix-AND table
(per block of 64 trees) give every mask: per row, one gather-and-AND per (feature, block) instead of one
walk step per level. The exit leaf is exact (no arithmetic on thresholds), so votes equal the walk's bit for
bit; the tests check them against a plain per-row walk.

Split of the model (``layout``, cached per decoded model by ``ml.permodel``): single-leaf trees add a constant
row; proper trees (each reachable node has one parent) with 2..64 reachable leaves are scanned in blocks of
64, when their per-block feature count makes the scan cheaper than walking (``_scan_pays``); every other tree
(deep forests, shared children) is walked by ``ml.treewalk``. Layout memory is linear in the model's size.
It does not validate a model (``ml.model`` does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .model import TreesModel
from .permodel import PerModel
from .treewalk import tree_votes

MAX_LEAVES = 64
BLOCK_TREES = 64
POLICY = "auto"                         # "auto" | "scan" (every eligible tree) | "walk" (none): tests pin both
ROWS_PER_CHUNK = 1024                    # (rows x 64) uint64 masks per block: 512 KiB, inside L2
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True, eq=False)
class ScanBlock:
    """Up to 64 trees; slot i of the block is tree ``trees[i]``. Votes: when every tree votes in one column only
    (boosted trees), ``values[0]`` holds each leaf's vote, trees sorted by column, and ``starts`` / ``columns``
    give the slots of each column; otherwise ``values[j]`` holds column ``columns[j]``'s votes (``starts``
    empty)."""
    n_trees: int
    features: tuple[tuple[int, np.ndarray, np.ndarray], ...]  # (f, rank map (n_f + 1,), prefix ANDs (m + 1, B))
    values: np.ndarray           # (c, B * 64): the vote of the leaf at bit j of slot i, at 64 i + j
    columns: np.ndarray          # intp: the class column of each row of ``values`` (or of each segment)
    starts: np.ndarray           # intp: first slot of each column's segment (single-column blocks)
    base: np.ndarray             # intp (B,): 64 i


@dataclass(frozen=True, eq=False)
class ScanLayout:
    n_classes: int
    constant: np.ndarray                              # int64 (k,): the single-leaf trees' summed votes
    thresholds: dict[int, np.ndarray]                 # feature -> every scanned node's threshold on it, sorted
    blocks: tuple[ScanBlock, ...]
    rest: TreesModel | None                           # trees left to the walk (None: none)
    value_dtype: np.dtype


def _levels(roots: np.ndarray, left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> list[np.ndarray]:
    """Reachable internal nodes level by level from the roots (children > parent: at most N levels)."""
    out, frontier = [], np.unique(roots)
    while frontier.size:
        inner = frontier[~leaf[frontier]]
        if inner.size == 0:
            break
        out.append(inner)
        frontier = np.unique(np.concatenate((left[inner], right[inner])))
    return out


def _build(m: TreesModel) -> ScanLayout:
    n, k = m.feature.shape[0], m.value.shape[1]
    feat = m.feature.astype(np.int64)
    leaf = feat < 0
    left = np.where(leaf, 0, m.left.astype(np.int64))
    right = np.where(leaf, 0, m.right.astype(np.int64))
    roots = m.roots.astype(np.int64)
    T = roots.shape[0]
    tree_of = np.repeat(np.arange(T), np.diff(np.append(roots, n)))
    levels = _levels(roots, left, right, leaf)
    reach = np.zeros(n, dtype=bool)
    reach[roots] = True
    parents = np.zeros(n, dtype=np.int64)
    for inner in levels:
        reach[left[inner]] = reach[right[inner]] = True
        np.add.at(parents, left[inner], 1)
        np.add.at(parents, right[inner], 1)
    shared = np.zeros(T, dtype=bool)
    np.logical_or.at(shared, tree_of[reach & (parents > 1)], True)
    n_leaves = np.bincount(tree_of[reach & leaf], minlength=T)
    # leaves under every node, bottom-up; then each node's first leaf position, top-down (left leaves first)
    count = np.where(leaf, 1, 0).astype(np.int64)
    for inner in reversed(levels):
        count[inner] = count[left[inner]] + count[right[inner]]
    first = np.zeros(n, dtype=np.int64)
    for inner in levels:
        first[left[inner]] = first[inner]
        first[right[inner]] = first[inner] + count[left[inner]]
    constant = np.zeros(k, dtype=np.int64)
    single = leaf[roots]
    if single.any():
        constant = m.value[roots[single]].astype(np.int64).sum(axis=0)
    small = ~single & ~shared & (n_leaves <= MAX_LEAVES)
    inner_all = np.flatnonzero(reach & ~leaf)          # ascending, so each tree's nodes are one slice
    scan_trees = [int(t) for t in np.flatnonzero(small)]
    bounds = np.searchsorted(tree_of[inner_all], np.arange(T + 1))
    by_tree = {t: inner_all[bounds[t]:bounds[t + 1]] for t in scan_trees}
    vdt = np.int32 if T * int(np.abs(m.value.astype(np.int64)).max(initial=0)) < 1 << 31 else np.int64
    blocks: list[ScanBlock] = []
    chosen: list[int] = []
    for start in range(0, len(scan_trees), BLOCK_TREES):
        group = scan_trees[start:start + BLOCK_TREES]
        if _scan_pays(feat, by_tree, group):
            chosen += group
    walk_trees = np.setdiff1d(np.flatnonzero(~single), np.array(chosen, dtype=np.int64))
    thresholds = {}
    if chosen:
        nodes = np.concatenate([by_tree[t] for t in chosen])
        for f in np.unique(feat[nodes]):
            thresholds[int(f)] = np.sort(m.threshold[nodes[feat[nodes] == f]].astype(np.int64))
    for start in range(0, len(chosen), BLOCK_TREES):
        group = chosen[start:start + BLOCK_TREES]
        blocks.append(_block(m, group, by_tree, feat, left, first, count, leaf, reach, tree_of, thresholds, k,
                             vdt))
    return ScanLayout(k, constant, thresholds, tuple(blocks), _subset(m, walk_trees) if walk_trees.size else None,
                      np.dtype(vdt))


def _scan_pays(feat: np.ndarray, by_tree: dict[int, np.ndarray], group: list[int]) -> bool:
    """Scan cost ~ 2 passes per (feature, block) over rows x 64 masks; walk cost ~ 10 passes per level over
    rows x trees pairs (the trees' mean internal depth bounds it below): scan when cheaper."""
    if POLICY != "auto":
        return POLICY == "scan"
    nodes = np.concatenate([by_tree[t] for t in group])
    n_feat = np.unique(feat[nodes]).size
    mean_inner = nodes.size / len(group)                 # ≥ depth; a balanced tree's depth ~ log2(inner + 1)
    walk = 10 * len(group) * max(1.0, np.log2(mean_inner + 1.0))
    scan = 2 * len(group) * n_feat + 4 * len(group)
    return scan < walk


def _block(m: TreesModel, group: list[int], by_tree: dict[int, np.ndarray], feat: np.ndarray, left: np.ndarray,
           first: np.ndarray, count: np.ndarray, leaf: np.ndarray, reach: np.ndarray, tree_of: np.ndarray,
           thresholds: dict[int, np.ndarray], k: int, vdt: type) -> ScanBlock:
    B = len(group)
    member = np.zeros(m.roots.shape[0], dtype=bool)
    member[group] = True
    leaves = np.flatnonzero(reach & leaf & member[tree_of])   # leaves of tree t sit at bit first[leaf]
    votes = m.value[leaves].astype(np.int64)
    used = np.zeros((m.roots.shape[0], k), dtype=bool)
    np.logical_or.at(used, tree_of[leaves], votes != 0)
    single = bool(np.all(used[group].sum(axis=1) <= 1))
    tree_col = np.argmax(used, axis=1)                       # the one column a single-column tree votes in
    order = np.array(sorted(group, key=lambda t: (int(tree_col[t]), t)) if single else group, dtype=np.intp)
    slot = np.full(m.roots.shape[0], -1, dtype=np.intp)
    slot[order] = np.arange(B)
    at = MAX_LEAVES * slot[tree_of[leaves]] + first[leaves]
    if single:
        cols_sorted = tree_col[order]
        starts = np.flatnonzero(np.concatenate(([True], cols_sorted[1:] != cols_sorted[:-1]))).astype(np.intp)
        columns = cols_sorted[starts].astype(np.intp)
        values: np.ndarray = np.zeros((1, B * MAX_LEAVES), dtype=vdt)
        values[0, at] = votes[np.arange(leaves.size), tree_col[tree_of[leaves]]]
    else:
        columns = np.flatnonzero(used[group].any(axis=0)).astype(np.intp)
        starts = np.zeros(0, dtype=np.intp)
        values = np.zeros((columns.size, B * MAX_LEAVES), dtype=vdt)
        values[:, at] = votes[:, columns].T
    nodes = np.concatenate([by_tree[t] for t in order])
    # mask of node i: every leaf bit except those of its left subtree [first[l], first[l] + count[l])
    lo_bit, n_bits = first[left[nodes]], count[left[nodes]]
    cleared = ((np.uint64(1) << n_bits.astype(np.uint64)) - np.uint64(1)) << lo_bit.astype(np.uint64)
    masks = ~cleared                                   # n_bits <= 63: a left subtree never holds every leaf
    col = slot[tree_of[nodes]]
    features = []
    for f in np.unique(feat[nodes]):
        on = np.flatnonzero(feat[nodes] == f)
        order = on[np.argsort(m.threshold[nodes[on]].astype(np.int64), kind="stable")]
        # prefix ANDs: table[j] = the AND, per tree, of the masks of the j lowest thresholds on f
        table = np.full((order.size + 1, B), _ALL, dtype=np.uint64)
        table[np.arange(1, order.size + 1), col[order]] = masks[order]
        np.bitwise_and.accumulate(table, axis=0, out=table)
        ts = thresholds[int(f)]
        mine = np.sort(m.threshold[nodes[on]].astype(np.int64))
        # a row with c of the feature's thresholds (all scanned trees) below x has searchsorted(mine, ts[c-1],
        # "right") of this block's below x: the thresholds below x are exactly those <= ts[c-1]
        rank = np.concatenate(([0], np.searchsorted(mine, ts, side="right"))).astype(np.intp)
        features.append((int(f), rank, table))
    return ScanBlock(B, tuple(features), values, columns, starts, np.arange(B, dtype=np.intp) * MAX_LEAVES)


def _subset(m: TreesModel, trees: np.ndarray) -> TreesModel:
    """The model restricted to ``trees`` (node ranges renumbered; a valid model of the same family)."""
    n = m.feature.shape[0]
    ends = np.append(m.roots[1:], n).astype(np.int64)
    parts = [np.arange(int(m.roots[t]), int(ends[t])) for t in trees]
    idx = np.concatenate(parts)
    shift = np.zeros(n, dtype=np.int64)
    new_roots, at = [], 0
    for t, p in zip(trees, parts):
        shift[p] = at - int(m.roots[t])
        new_roots.append(at)
        at += p.size
    def relink(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.int64)[idx]
        return np.where(a >= 0, a + shift[idx], -1)
    return TreesModel(np.array(new_roots, dtype=np.int64), m.feature[idx], m.threshold[idx], relink(m.left),
                      relink(m.right), m.value[idx])


layout: PerModel[TreesModel, ScanLayout] = PerModel(_build)


def ensemble_votes(m: TreesModel, X: np.ndarray, x_range: tuple[int, int] | None = None) -> np.ndarray:
    """Exact summed leaf votes, int64 (n, k), for integer X (n, d): scanned blocks + walked rest + constant."""
    lay = layout(m)
    n, d = X.shape
    if lay.thresholds and max(lay.thresholds) >= d:
        raise ModelError(f"X: model uses feature {max(lay.thresholds)}, X has {d}")
    out = (tree_votes(lay.rest, X, x_range) if lay.rest is not None
           else np.zeros((n, lay.n_classes), dtype=np.int64))
    out += lay.constant
    if not lay.blocks:
        return out
    for start in range(0, n, ROWS_PER_CHUNK):
        B = X[start:start + ROWS_PER_CHUNK]
        ranks = {f: np.searchsorted(ts, B[:, f], side="left") for f, ts in lay.thresholds.items()}
        acc = np.zeros((B.shape[0], lay.n_classes), dtype=lay.value_dtype)
        for blk in lay.blocks:
            mask = np.full((B.shape[0], blk.n_trees), _ALL, dtype=np.uint64)
            for f, rank, table in blk.features:
                mask &= np.take(table, np.take(rank, ranks[f]), axis=0)
            low = mask & (~mask + np.uint64(1))          # lowest set bit: the exit leaf
            bit = np.frexp(low.astype(np.float64))[1] - 1  # exact: a power of two below 2^64
            at = bit + blk.base
            if blk.starts.size:
                acc[:, blk.columns] += np.add.reduceat(np.take(blk.values[0], at), blk.starts, axis=1)
            else:
                for j, c in enumerate(blk.columns):
                    acc[:, c] += np.take(blk.values[j], at).sum(axis=1)
        out[start:start + B.shape[0]] += acc
    return out
