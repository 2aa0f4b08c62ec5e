"""Load order: parents before children, and the tables caught in foreign-key cycles."""

from __future__ import annotations


def load_order(edges: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """`edges[child]` = the tables it references. Returns (order, cyclic): every table
    after the tables it references, except inside cycles; `cyclic` holds the tables of
    cycles (a self-reference counts), whose rows may reference rows not loaded yet."""
    cyclic: set[str] = set()
    for group in strongly_connected(edges):
        if len(group) > 1 or any(n in edges[n] for n in group):
            cyclic |= group
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: set[str]) -> None:
        if name in seen or name in path:
            return
        path.add(name)
        for parent in sorted(edges.get(name, ())):
            if parent in edges:
                visit(parent, path)
        path.discard(name)
        seen.add(name)
        order.append(name)

    for name in edges:
        visit(name, set())
    return order, cyclic


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit on long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0

    def children(node: str) -> list[str]:
        return sorted(c for c in edges.get(node, ()) if c in edges)

    for root in edges:
        if root in index:
            continue
        work = [(root, iter(children(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            advanced = False
            for child in pending:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(children(child))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups
