"""DAG checks shared by task graphs inside a workflow and dependencies between workflows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def find_cycle(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Return one cycle as ``[a, b, ..., a]``, or ``[]`` when the graph is acyclic.

    Iterative (no recursion limit on deep chains) three-colour DFS; nodes are visited in the
    given order so the reported cycle is deterministic for a given input.
    """
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        out.setdefault(a, []).append(b)
        out.setdefault(b, [])
    colour: dict[str, int] = dict.fromkeys(out, 0)  # 0 new, 1 on stack, 2 finished
    for root in out:
        if colour[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(out[node]):
                stack[-1] = (node, i + 1)
                nxt = out[node][i]
                if colour[nxt] == 1:
                    return [*path[path.index(nxt) :], nxt]
                if colour[nxt] == 0:
                    colour[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = 2
                stack.pop()
                path.pop()
    return []


def topological_order(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's order, stable with respect to ``nodes``: nodes on a cycle, or after one, are not in it."""
    indeg: dict[str, int] = dict.fromkeys(nodes, 0)
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)
        indeg[b] += 1
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in out[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order
