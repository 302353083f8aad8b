"""Pure merging: border pieces of blocks, in any completion order, into whole buildings.

Merge rule. Buildings are 4-connected components of the mask (pixels sharing
an edge, as ``rasterio.features.shapes(connectivity=4)`` and
``cv2.connectedComponents(connectivity=4)`` see them). Within a block each component is one
polygon, holes kept. A component that reaches an *internal* block border is a
:class:`Piece`; two pieces in neighbouring blocks belong to the same building
exactly when a pixel of one and a pixel of the other face each other across
the border (they share a pixel edge). :class:`BorderMerger` records those
border pixels by position, so matching is an exact integer lookup that works
whatever order the blocks complete in, and a building is emitted as soon as
every block next to its border pieces is done: memory grows with the number
of buildings on unfinished block borders, not with the raster size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import shapely

from mapseg_core.vectorize.polygons import BlockPolygons, Building, Piece, Slot


@dataclass
class _Group:
    keys: list[int] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)


class BorderMerger:
    """Merge border pieces of blocks that arrive in any order into whole buildings.

    ``add`` takes one block's :class:`BlockPolygons` and returns the buildings
    that are now final: the block's complete ones, plus every merged group
    whose pieces have no unfinished neighbour block left. ``finish`` returns
    whatever is still pending (only non-empty if some blocks never came).
    """

    def __init__(self) -> None:
        self._done: set[tuple[int, int]] = set()
        self._slots: dict[Slot, int] = {}
        self._parent: dict[int, int] = {}
        self._groups: dict[int, _Group] = {}
        self._by_block: dict[tuple[int, int], set[int]] = {}
        self._next = 0

    @property
    def pending(self) -> int:
        """Border pieces held in memory, waiting for a neighbour block."""
        return sum(len(g.pieces) for g in self._groups.values())

    def _find(self, k: int) -> int:
        root = k
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[k] != root:
            self._parent[k], k = root, self._parent[k]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        if len(self._groups[ra].pieces) < len(self._groups[rb].pieces):
            ra, rb = rb, ra
        self._parent[rb] = ra
        absorbed = self._groups.pop(rb)
        self._groups[ra].keys.extend(absorbed.keys)
        self._groups[ra].pieces.extend(absorbed.pieces)

    def add(self, result: BlockPolygons) -> list[Building]:
        """Register one block's result; return the buildings finished by it."""
        self._done.add(result.block)
        finished = list(result.complete)
        for piece in result.pieces:
            key = self._next
            self._next += 1
            self._parent[key] = key
            self._groups[key] = _Group([key], [piece])
            self._by_block.setdefault(piece.block, set()).add(key)
            for border, pos, side in piece.slots:
                self._slots[(border, pos, side)] = key
                other = self._slots.get((border, pos, 1 - side))
                if other is not None:
                    self._union(key, other)
        candidates = {self._find(k) for k in self._by_block.get(result.block, ())}
        i, j = result.block
        for nb in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            candidates.update(self._find(k) for k in self._by_block.get(nb, ()))
        for root in candidates:
            group = self._groups.get(root)
            if group is None:
                continue
            if all(n in self._done for p in group.pieces for n in p.neighbours):
                finished.append(self._close(root))
        return finished

    def finish(self) -> list[Building]:
        """Close every pending group (blocks that never arrived count as empty)."""
        return [self._close(root) for root in list(self._groups)]

    def _close(self, root: int) -> Building:
        group = self._groups.pop(root)
        for key, piece in zip(group.keys, group.pieces, strict=True):
            for slot in piece.slots:
                self._slots.pop(slot, None)
            keys = self._by_block[piece.block]
            keys.discard(key)
            if not keys:
                del self._by_block[piece.block]
        for key in group.keys:
            del self._parent[key]
        geoms = [p.geometry for p in group.pieces]
        merged = shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]
        merged = shapely.simplify(merged, 0.0)  # drop the vertices the cut left on the border
        return Building(
            geometry=merged,
            pixels=sum(p.pixels for p in group.pieces),
            prob_sum=sum(p.prob_sum for p in group.pieces),
        )


def merge_blocks(results: Iterable[BlockPolygons]) -> list[Building]:
    """All buildings of a set of block results (any order), for tests and batch use."""
    merger = BorderMerger()
    out: list[Building] = []
    for result in results:
        out.extend(merger.add(result))
    out.extend(merger.finish())
    return out
