"""Jigsaw permutation sets chosen greedily for a large Hamming distance (Noroozi & Favaro 2016).

The set is a pure function of (number of cells, size, seed, criterion): every machine derives the
same one, and its sha256 goes into the manifest.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from functools import lru_cache

import numpy as np

# Beyond 9 cells, n! permutations do not fit in memory: draw this many random candidates instead.
CANDIDATE_POOL = 200_000
# Largest set the config accepts (jigsaw.permutations). The greedy search costs one pass over the
# candidates per pick, so its time grows with the set; 5000 stays within seconds on every grid the
# config allows (BENCHMARKS.md). The papers use 100-1000 (Noroozi & Favaro: 1000 best), and the
# minimal Hamming distance of a max-min 3x3 set is 4 at 1000 and still 4 at 5000.
MAX_PERMUTATIONS = 5000


def _candidates(n: int, rng: np.random.Generator) -> np.ndarray:
    if n <= 9:
        return np.array(list(itertools.permutations(range(n))), dtype=np.int8)
    pool = np.argsort(rng.random((CANDIDATE_POOL, n)), axis=1).astype(np.int8)
    return np.unique(pool, axis=0)


# Sets read from a planned build's file (``use_set``): workers take the plan step's set instead of
# computing it again (seconds for thousands of permutations).
_GIVEN: dict[tuple, np.ndarray] = {}


def use_set(n: int, size: int, seed: int, criterion: str, perms: np.ndarray) -> None:
    """Make ``permutation_set(n, size, seed, criterion)`` return ``perms`` in this process."""
    _GIVEN[(n, size, seed, criterion)] = perms


def permutation_set(n: int, size: int, seed: int = 0, criterion: str = "max_min") -> np.ndarray:
    """``size`` permutations of ``range(n)``, shape (size, n), int64 (``_greedy_set``, or the plan's
    file given to ``use_set``)."""
    given = _GIVEN.get((n, size, seed, criterion))
    return given if given is not None else _greedy_set(n, size, seed, criterion)


@lru_cache(maxsize=8)
def _greedy_set(n: int, size: int, seed: int = 0, criterion: str = "max_min") -> np.ndarray:
    """``size`` permutations of ``range(n)``, shape (size, n), int64.

    Greedy: start from a random permutation, then repeatedly add the candidate whose minimal
    (``max_min``) or mean (``mean``) Hamming distance to those already chosen is largest; ties are
    broken by the seeded generator.
    """
    if criterion not in ("max_min", "mean"):
        raise ValueError(f"criterion must be 'max_min' or 'mean', got {criterion!r}")
    rng = np.random.default_rng([seed, n, size])
    cand = _candidates(n, rng)
    if size > len(cand):
        raise ValueError(f"permutations={size} exceeds the {len(cand)} permutations of {n} cells")
    # same[k][v]: which candidates hold value v at position k. A candidate's Hamming distance to a
    # pick is n minus the sum of n such rows: 9 additions of bytes instead of comparing every
    # candidate's every position (several times faster).
    same = [[(cand[:, k] == v).view(np.uint8) for v in range(n)] for k in range(n)]

    def distance_to(pick: int) -> np.ndarray:
        agree = np.zeros(len(cand), np.int32)
        for k, v in enumerate(cand[pick]):
            agree += same[k][v]
        return n - agree

    chosen = [int(rng.integers(len(cand)))]
    dist = distance_to(chosen[0])
    score = dist.copy()  # min distance (max_min) or summed distance (mean)
    for _ in range(size - 1):
        masked = np.where(dist == 0, -1, score)  # never pick one already chosen
        best = np.flatnonzero(masked == masked.max())
        pick = int(best[rng.integers(len(best))])
        chosen.append(pick)
        d = distance_to(pick)
        dist = np.minimum(dist, d)
        score = dist if criterion == "max_min" else score + d
    return cand[chosen].astype(np.int64)


def hamming_stats(perms: np.ndarray, block: int = 256) -> dict:
    """Min, mean and max Hamming distance between distinct rows of ``perms`` (N, n), N >= 2.

    Computed ``block`` rows at a time, so memory is O(block x N), not the N x N x n of comparing
    every pair at once (83.8 GiB for N = 100000). Agreements come from a product of one-hot rows:
    exact in float32 (counts <= n). 5000 permutations of 9 cells: under 1 s."""
    perms = np.asarray(perms)
    count, n = perms.shape
    if count < 2:
        raise ValueError(f"hamming_stats needs at least 2 permutations, got {count}")
    codes = np.unique(perms, return_inverse=True)[1].reshape(count, n)  # any values, not only range(n)
    m = int(codes.max()) + 1
    onehot = (codes[:, :, None] == np.arange(m)).reshape(count, n * m).astype(np.float32)
    most, least, agreed = -1, n + 1, 0  # over pairs of distinct rows; distance = n - agreements
    for i0 in range(0, count, block):
        agree = onehot[i0 : i0 + block] @ onehot.T  # (rows, N) float32
        agreed += int(agree.sum(dtype=np.float64)) - n * len(agree)  # minus the diagonal's n each
        least = min(least, int(agree.min()))  # the diagonal's n cannot be below an agreement
        rows = np.arange(len(agree))
        agree[rows, i0 + rows] = -1  # off the diagonal only
        most = max(most, int(agree.max()))
    pairs = count * (count - 1)
    return {"min_hamming": n - most, "mean_hamming": round((n * pairs - agreed) / pairs, 4), "max_hamming": n - least}


def set_digest(perms: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(perms, dtype=np.int64).tobytes()).hexdigest()


def n_permutations(n: int) -> int:
    return math.factorial(n)
