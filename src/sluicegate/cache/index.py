"""In-process nearest-neighbour search over unit vectors, in numpy.

Entries are grouped by partition (the exact context a prompt was asked in: alias, system prompt, tools,
parameters), so a search only ever compares prompts whose answers could be shared.

Within a partition, a flat scan of 100k vectors costs ~25 ms on one core here (memory bound), so vectors
live in cells: each cell keeps its vectors contiguous and the sum of them (its centroid). A search scores
the centroids, then scans only the `probes` nearest cells. A cell that outgrows `cell_size` splits in two by
2-means over its own vectors, so the index stays balanced while it grows one insert at a time: nothing is
ever retrained globally and no insert costs more than a split of one cell.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(slots=True, eq=False)
class Entry:
    """One indexed prompt. `payload` is the caller's (the semantic cache keeps its answer key there)."""

    id: int
    partition: str
    payload: Any
    cell: Cell | None = None
    row: int = 0


@dataclass(slots=True, eq=False)
class Cell:
    dims: int
    vectors: Vector = field(init=False)
    entries: list[Entry] = field(default_factory=list)
    total: Vector = field(init=False)

    def __post_init__(self) -> None:
        self.vectors = np.empty((16, self.dims), dtype=np.float32)
        self.total = np.zeros(self.dims, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, vector: Vector, entry: Entry) -> None:
        row = len(self.entries)
        if row == len(self.vectors):
            grown = np.empty((row * 2, self.dims), dtype=np.float32)
            grown[:row] = self.vectors
            self.vectors = grown
        self.vectors[row] = vector
        self.total += vector
        self.entries.append(entry)
        entry.cell, entry.row = self, row

    def remove(self, entry: Entry) -> None:
        row, last = entry.row, len(self.entries) - 1
        self.total -= self.vectors[row]
        if row != last:
            moved = self.entries[last]
            self.vectors[row] = self.vectors[last]
            self.entries[row] = moved
            moved.row = row
        self.entries.pop()
        entry.cell = None

    def centroid(self) -> Vector:
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm else self.total


class _Partition:
    __slots__ = ("cells", "centroids", "dims")

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.cells: list[Cell] = [Cell(dims)]
        self.centroids = np.zeros((1, dims), dtype=np.float32)

    def __len__(self) -> int:
        return sum(len(cell) for cell in self.cells)

    def nearest_cell(self, vector: Vector) -> int:
        if len(self.cells) == 1:
            return 0
        return int(np.argmax(self.centroids @ vector))

    def refresh(self, index: int) -> None:
        self.centroids[index] = self.cells[index].centroid()


class VectorIndex:
    def __init__(self, dims: int, max_entries: int = 100_000, cell_size: int = 512, probes: int = 12) -> None:
        self.dims = dims
        self.max_entries = max_entries
        self.cell_size = cell_size
        self.probes = probes
        self._partitions: dict[str, _Partition] = {}
        #: every entry, least recently used first
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._next_id = 0
        self._rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, partition: str, vector: Vector, payload: Any) -> Entry:
        if self.dims == 0:
            self.dims = int(vector.shape[0])
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(self.dims)
        entry = Entry(self._next_id, partition, payload)
        self._next_id += 1
        index = part.nearest_cell(vector)
        part.cells[index].add(vector, entry)
        part.refresh(index)
        self._entries[entry.id] = entry
        if len(part.cells[index]) > self.cell_size:
            self._split(part, index)
        while len(self._entries) > self.max_entries:
            self.remove(next(iter(self._entries.values())))
        return entry

    def search(self, partition: str, vector: Vector, k: int = 4) -> list[tuple[float, Entry]]:
        """The `k` most similar entries of `partition`, most similar first (cosine similarity)."""
        part = self._partitions.get(partition)
        if part is None:
            return []
        if len(part.cells) <= self.probes:
            cells = part.cells
        else:
            scores = part.centroids @ vector
            nearest = np.argpartition(-scores, self.probes)[: self.probes]
            cells = [part.cells[i] for i in nearest]
        blocks = [(cell, cell.vectors[: len(cell)] @ vector) for cell in cells if len(cell)]
        if not blocks:
            return []
        similarities = np.concatenate([scores for _, scores in blocks]) if len(blocks) > 1 else blocks[0][1]
        best = np.argpartition(-similarities, k)[:k] if len(similarities) > k else np.arange(len(similarities))
        starts = np.cumsum([0] + [len(scores) for _, scores in blocks])
        found = []
        for position in best:
            block = int(np.searchsorted(starts, position, side="right")) - 1
            cell = blocks[block][0]
            found.append((float(similarities[position]), cell.entries[int(position - starts[block])]))
        found.sort(key=lambda item: -item[0])
        return found

    def touch(self, entry: Entry) -> None:
        if entry.id in self._entries:
            self._entries.move_to_end(entry.id)

    def remove(self, entry: Entry) -> None:
        if self._entries.pop(entry.id, None) is None or entry.cell is None:
            return
        part = self._partitions[entry.partition]
        cell = entry.cell
        cell.remove(entry)
        if len(part) == 0:
            del self._partitions[entry.partition]
            return
        index = part.cells.index(cell) if len(part.cells) > 1 else 0
        if len(cell) == 0 and len(part.cells) > 1:
            del part.cells[index]
            part.centroids = np.delete(part.centroids, index, axis=0)
        else:
            part.refresh(index)

    def vector(self, entry: Entry) -> Vector | None:
        if entry.cell is None:
            return None
        vector: Vector = entry.cell.vectors[entry.row]
        return vector

    def _split(self, part: _Partition, index: int) -> None:
        cell = part.cells[index]
        count = len(cell)
        vectors = cell.vectors[:count].copy()
        entries = list(cell.entries)
        assignment = _two_means(vectors, self._rng)
        halves = [Cell(self.dims), Cell(self.dims)]
        for row, entry in enumerate(entries):
            halves[int(assignment[row])].add(vectors[row], entry)
        if not len(halves[0]) or not len(halves[1]):
            return  # identical vectors: nothing to split on
        part.cells[index] = halves[0]
        part.cells.append(halves[1])
        part.centroids = np.vstack([part.centroids, halves[1].centroid()[None, :]])
        part.refresh(index)


def _two_means(vectors: Vector, rng: np.random.Generator, rounds: int = 6) -> npt.NDArray[np.intp]:
    first = vectors[int(rng.integers(len(vectors)))]
    # Farthest point from a random one: a good second seed for spherical 2-means.
    second = vectors[int(np.argmin(vectors @ first))]
    centres = np.stack([first, second])
    assignment = np.zeros(len(vectors), dtype=np.intp)
    for _ in range(rounds):
        assignment = np.argmax(vectors @ centres.T, axis=1)
        for side in (0, 1):
            members = vectors[assignment == side]
            if len(members):
                total = members.sum(axis=0)
                centres[side] = total / (np.linalg.norm(total) or 1.0)
    return assignment
