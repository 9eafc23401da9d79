"""Budget-planned schedules: choose which steps to compute so that exactly K of N are.

The plan is a path 0 = s_1 < s_2 < ... < s_K = N-1 through the steps; an edge i -> j
computes at i and j and predicts the steps between. Each edge has a cost (the error it
is expected to add); the plan minimises the sum of the edge costs raised to ``gamma``
(peaks are suppressed), ties broken on the plain sum. The forced steps are always on the
path, and no edge spans more than ``max_span`` steps (widened only when the budget is too
small to reach the end otherwise).

Edge cost with a calibration profile: c(i, j) = sum_{k=i+1}^{j-1} |dsigma_k| * rel_l1(y_i, y_k),
y the recorded feature (the stack residual, or the model's output change) and y_i what a
reused step returns. Without a profile a model-independent cost of the same form, with a
per-step change rate that is high early and rises again at the tail.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

MAX_SPAN = 8
GAMMA = 2.0
LAGS = MAX_SPAN      # how many previous steps the calibration compares each step with


def forced_steps(n: int, warmup: int = 0, last: int = 0) -> list[int]:
    """{0, 1, N-1}, the warm-up steps and the last steps, within 0..N-1."""
    if n <= 0:
        return []
    forced = {0, 1, n - 1} | set(range(min(warmup, n))) | set(range(max(n - last, 0), n))
    return sorted(s for s in forced if 0 <= s < n)


def budget_size(n: int, compute_steps: int = 0, target_speedup: float = 1.0, n_forced: int = 0) -> int:
    """K: ``compute_steps`` when set, else ceil(N / target_speedup); at least the forced steps, at most N."""
    if n <= 0:
        return 0
    k = int(compute_steps) if compute_steps else math.ceil(n / max(float(target_speedup), 1.0) - 1e-9)
    return max(min(k, n), n_forced, min(n, 1))


def plan(n: int, budget: int, cost: Callable[[int, int], float], forced: Iterable[int] = (),
         max_span: int = MAX_SPAN, gamma: float = GAMMA) -> list[int]:
    """The K = ``budget`` steps to compute (sorted): the cheapest path under sum(c^gamma).

    D[m][j] = min over i in [j - L, j) (no forced step strictly between i and j) of
    D[m-1][i] + c(i, j)^gamma; the path starts at 0 and ends at N-1.
    """
    if n <= 0:
        return []
    forced = sorted({0, n - 1} | {int(f) for f in forced if 0 <= f < n})
    budget = max(min(int(budget), n), len(forced))
    if budget >= n:
        return list(range(n))
    prev_forced = []              # the last forced step strictly before j
    last = 0
    for j in range(n):
        prev_forced.append(last)
        if j in forced:
            last = j
    edge: dict = {}

    def weight(i, j):
        if (i, j) not in edge:
            c = float(cost(i, j)) if j - i > 1 else 0.0
            edge[(i, j)] = (c ** gamma, c)
        return edge[(i, j)]

    span = max(int(max_span), 1)
    while True:
        inf = (math.inf, math.inf)
        best = [[inf] * n for _ in range(budget + 1)]
        back = [[-1] * n for _ in range(budget + 1)]
        best[1][0] = (0.0, 0.0)
        for m in range(2, budget + 1):
            for j in range(1, n):
                lo = max(j - span, prev_forced[j])     # an edge never jumps a forced step
                for i in range(lo, j):
                    b = best[m - 1][i]
                    if b[0] == math.inf:
                        continue
                    w = weight(i, j)
                    cand = (b[0] + w[0], b[1] + w[1])
                    if cand < best[m][j]:
                        best[m][j], back[m][j] = cand, i
        if best[budget][n - 1][0] < math.inf:
            break
        span += 1                  # the budget cannot reach the end in spans of this length
    path, j = [n - 1], n - 1
    for m in range(budget, 1, -1):
        j = back[m][j]
        path.append(j)
    return sorted(path)


def path_cost(path: Sequence[int], cost: Callable[[int, int], float], gamma: float = GAMMA) -> tuple:
    c = [float(cost(i, j)) if j - i > 1 else 0.0 for i, j in zip(path, path[1:])]
    return sum(x ** gamma for x in c), sum(c)


def default_rate(n: int) -> list[float]:
    """A model-independent change rate per step: high at the start (the features move most while
    the image forms), flat through the middle, rising at the tail (fine detail)."""
    out = []
    for k in range(n):
        p = k / max(n - 1, 1)
        out.append(1.0 + 12.0 * math.exp(-p / 0.06) + 1.0 * math.exp(-(1.0 - p) / 0.05))
    return out


def default_cost(n: int) -> Callable[[int, int], float]:
    """c(i, j) = sum_k (1/N) * e(i, k) with e(i, k) = the rate summed from i+1 to k: the shape of
    LeMiCa's published schedules (dense early, uniform middle, denser tail), for any N and budget."""
    rate = default_rate(n)
    cum = [0.0]
    for r in rate:
        cum.append(cum[-1] + r)

    def cost(i, j):
        return sum((cum[k + 1] - cum[i + 1]) for k in range(i + 1, j)) / max(n, 1)
    return cost


def profile_cost(sigmas: Sequence[float], lag_changes: Sequence[Sequence[float | None]]) -> Callable[[int, int], float]:
    """c(i, j) = sum_{k=i+1}^{j-1} |sigma_{k+1} - sigma_k| * rel_l1(y_i, y_k) from a calibration run.

    ``lag_changes[k][d-1]`` = rel_l1(y_{k-d}, y_k); a distance beyond the recorded lags is the sum of
    the one-step changes along the way (an upper bound)."""
    n = len(lag_changes)

    def lag(k, d):
        row = lag_changes[k] if k < n else []
        if d - 1 < len(row) and row[d - 1] is not None and math.isfinite(row[d - 1]):
            return float(row[d - 1])
        return None

    step_change = [lag(k, 1) or 0.0 for k in range(n)]

    def error(i, k):
        e = lag(k, k - i)
        return e if e is not None else sum(step_change[i + 1:k + 1])

    def dsigma(k):
        return abs(float(sigmas[k + 1]) - float(sigmas[k])) if k + 1 < len(sigmas) else 0.0

    def cost(i, j):
        return sum(dsigma(k) * error(i, k) for k in range(i + 1, j))
    return cost
