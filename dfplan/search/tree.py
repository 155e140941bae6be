"""The search tree of Monte Carlo Tree Diffusion: nodes, UCT selection with virtual visits, max backup.

Pure bookkeeping (no tensors are made here): a node holds a partly denoised whole plan (its tokens, opaque to the
tree) and the scheduling row it has reached; its children differ by a meta-action (an index into the task's list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

UCT_WEIGHT = math.sqrt(2.0)  # exploration weight of UCT (MCTD's)


@dataclass(eq=False)
class Node:
    row: int  # scheduling row the tokens are at (0: pure noise; the matrix's last row: clean)
    tokens: object  # the partly denoised plan [H, D] (a tensor; the tree never looks inside)
    parent: Node | None = None
    action: int | None = None  # meta-action that made this node from its parent
    children: dict[int, Node] = field(default_factory=dict)
    untried: list[int] = field(default_factory=list)  # meta-actions not yet expanded, next first
    pending: set[int] = field(default_factory=set)  # meta-actions chosen this round, being denoised
    value: float = 0.0  # best simulated value in the subtree (max backup)
    visits: int = 0
    virtual: int = 0  # visits promised to selections of the current round (Fast-MCTD's virtual visit counts)
    exhausted: bool = False  # every node below is expanded, down to clean plans: nothing left to select here

    def weight(self) -> int:
        return self.visits + self.virtual

    def uct(self, parent_weight: int) -> float:
        return self.value + UCT_WEIGHT * math.sqrt(math.log(parent_weight + 1e-6) / (self.weight() + 1e-6))


class Tree:
    """One search tree. `select()` picks a (node, meta-action) to expand, marking it pending and adding virtual
    visits along its path so that the next selection of the same round goes elsewhere; `add()` records the new
    child and backs its simulated value up by max."""

    def __init__(self, root: Node, last_row: int):
        self.root, self.last_row = root, last_row

    def select(self) -> tuple[Node, int] | None:
        """Descend by UCT through fully expanded nodes to one with an untried meta-action; None when no node
        can be expanded now (all taken this round, or the tree is exhausted)."""
        node, path = self.root, [self.root]
        while True:
            if node.untried:
                action = node.untried.pop(0)
                node.pending.add(action)
                for n in path:
                    n.virtual += 1
                return node, action
            open_ = [c for c in node.children.values() if _open(c)]
            if not open_:
                return None
            total = sum(c.weight() for c in node.children.values())
            node = max(open_, key=lambda c: c.uct(total))
            path.append(node)

    def add(self, parent: Node, action: int, child: Node, value: float) -> None:
        """Attach `child` (made from `parent` by `action`, its simulation worth `value`) and back it up: visits +1
        and value = max along the path to the root."""
        parent.pending.discard(action)
        parent.children[action] = child
        child.value, child.visits = value, 1
        if child.row >= self.last_row:  # a clean plan: a leaf for good
            child.untried, child.exhausted = [], True
        node = parent
        while node is not None:
            node.visits += 1
            node.value = max(node.value, value)
            node.exhausted = (not node.untried and not node.pending
                              and all(c.exhausted for c in node.children.values()))
            node = node.parent

    def clear_virtual(self) -> None:
        stack = [self.root]
        while stack:
            node = stack.pop()
            node.virtual = 0
            stack.extend(node.children.values())


def _open(node: Node) -> bool:
    """Can a selection expand something at or below `node` now (an untried meta-action not pending this round)?"""
    return not node.exhausted and (bool(node.untried) or any(_open(c) for c in node.children.values()))
