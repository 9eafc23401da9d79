"""The order and kinds of a model's transformer blocks, and the spans a cache skips."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockLayout:
    """Blocks in execution order, e.g. (("double_block", 19), ("single_block", 38))."""
    kinds: tuple

    @property
    def total(self) -> int:
        return sum(n for _, n in self.kinds)

    def global_index(self, kind: str, index: int) -> int:
        offset = 0
        for k, n in self.kinds:
            if k == kind:
                return offset + index
            offset += n
        raise KeyError(f"block kind {kind!r} is not in this layout {self.kinds}")

    def kind_of(self, g: int) -> str:
        offset = 0
        for k, n in self.kinds:
            if g < offset + n:
                return k
            offset += n
        raise IndexError(g)

    def segment_runs(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Split the span [start, stop) into runs of one block kind: [(first, last), ...]."""
        runs: list[tuple[int, int]] = []
        for g in range(start, stop):
            if runs and self.kind_of(g) == self.kind_of(runs[-1][1]) and runs[-1][1] == g - 1:
                runs[-1] = (runs[-1][0], g)
            else:
                runs.append((g, g))
        return runs
