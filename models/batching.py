"""Planning of model batches (shared-prefix groups, token-budgeted chunks, similar-length runs) and padded id tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrefixGroup:
    """Requests whose contexts start with the same `prefix_len` tokens (0: nothing shared)."""

    prefix_len: int
    members: tuple[int, ...]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_by_shared_prefix(contexts: Sequence[Sequence[int]], min_shared: int = 32) -> list[PrefixGroup]:
    """Group contexts so that computing each group's shared prefix once saves the most tokens.

    A group of m members sharing p leading tokens computes p + sum(len - p) tokens instead of
    sum(len): it saves (m - 1) * p. The contexts are sorted, so any set that shares a prefix
    lies in one run, and the runs are chosen to save the most (ties: fewer groups). Two items
    whose candidates share long prefixes, but only a chat header with each other, are then two
    groups on their long prefixes, not one on the header. Groups share at least `min_shared`
    tokens; the rest go together with prefix 0. The shared prefix never covers a whole
    context, so every member keeps at least one token of its own and every target token is
    predicted inside its member's suffix pass (or from the prefix's last position).
    """
    order = sorted(range(len(contexts)), key=lambda i: list(contexts[i]))
    groups: list[PrefixGroup] = []
    loose: list[int] = []
    for start, end, shared in _best_runs([contexts[i] for i in order], max(min_shared, 1)):
        if shared:
            groups.append(PrefixGroup(shared, tuple(order[start:end])))
        else:
            loose.extend(order[start:end])
    if loose:
        groups.append(PrefixGroup(0, tuple(sorted(loose))))
    return groups


def _best_runs(ordered: Sequence[Sequence[int]], min_shared: int) -> list[tuple[int, int, int]]:
    """Split sorted contexts into consecutive runs (start, end, shared prefix; 0: not grouped) saving the most.

    Dynamic programming over run ends: best[e] is the (tokens saved, -groups) of the best
    split of the first e contexts. A run's shared prefix is the least common prefix of its
    neighbours (the contexts are sorted), at most each member's length - 1.
    """
    n = len(ordered)
    adjacent = [common_prefix_len(ordered[i], ordered[i + 1]) for i in range(n - 1)]
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    for end in range(1, n + 1):
        best[end], cut[end] = best[end - 1], (end - 1, 0)  # the last context alone, ungrouped
        shared = len(ordered[end - 1]) - 1
        for start in range(end - 2, -1, -1):
            shared = min(shared, adjacent[start], len(ordered[start]) - 1)
            if shared < min_shared:
                break  # longer runs share no more
            option = (best[start][0] + (end - start - 1) * shared, best[start][1] - 1)
            if option > best[end]:
                best[end], cut[end] = option, (start, shared)
    runs: list[tuple[int, int, int]] = []
    end = n
    while end:
        start, shared = cut[end]
        runs.append((start, end, shared))
        end = start
    return runs[::-1]


def computed_tokens(groups: Sequence[PrefixGroup], contexts: Sequence[Sequence[int]]) -> int:
    """Context tokens a scoring pass over these groups computes: each prefix once, then every suffix."""
    return sum(g.prefix_len + sum(len(contexts[m]) - g.prefix_len for m in g.members) for g in groups)


def chunk_by_budget(lengths: Sequence[int], budget: int, max_rows: int | None = None) -> list[list[int]]:
    """Split row indices (sorted by length) into chunks whose padded size rows*max_len fits `budget`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    chunk: list[int] = []
    for i in order:
        widest = max(lengths[i], max((lengths[j] for j in chunk), default=0))
        too_big = chunk and (widest * (len(chunk) + 1) > budget or (max_rows and len(chunk) >= max_rows))
        if too_big:
            chunks.append(chunk)
            chunk = []
        chunk.append(i)
    if chunk:
        chunks.append(chunk)
    return chunks


def similar_length_runs(lengths: Sequence[int], slack: float = 0.125, budget: int = 8192) -> list[range]:
    """Split rows, in their order, into runs that pad to their longest with little waste.

    A run grows while its padded size (rows x longest) stays within `budget` tokens and within
    `1 + slack` times its real tokens: short prompts go together (one pass amortizes the
    per-layer cost), long ones of different lengths alone (padding would cost real work).
    """
    runs: list[range] = []
    start, longest, total = 0, 0, 0
    for i, n in enumerate(lengths):
        wider, more = max(longest, n), total + n
        rows = i - start + 1
        if i > start and (wider * rows > budget or wider * rows > (1 + slack) * more):
            runs.append(range(start, i))
            start, wider, more = i, n, n
        longest, total = wider, more
    if lengths:
        runs.append(range(start, len(lengths)))
    return runs


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [rows, longest] padded on the left (every last token aligned), which are real, and positions."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for r, prompt in enumerate(prompts):
        ids[r, width - len(prompt) :] = torch.tensor(prompt)
        valid[r, width - len(prompt) :] = True
    return ids, valid, (valid.long().cumsum(-1) - 1).clamp(min=0)
