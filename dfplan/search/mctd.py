"""Monte Carlo Tree Diffusion (Yoon et al. 2025, arXiv 2502.07202) over the DF sampler, with Fast-MCTD's batched
parallel expansion (arXiv 2506.09498).

A node is a partly denoised whole plan: its tokens and the scheduling row they have reached (the root: noise at
row 0). Expanding a node applies the next `search_block` rows of the schedule under one meta-action of the task
(`Task.meta_actions`: a guidance scale, or which cube to guide); the child is then simulated by jumpy denoising
(every `search_jump`-th remaining row) to a clean plan, scored by the task's value (`Task.plan_value`), and the
value is backed up by max. Selection is UCT (weight sqrt 2). Each round selects up to `search_parallel` expansions
per tree (virtual visits spread them), for every env's tree at once, and denoises all the children that start
from the same row in one batched sampler call (one call per distinct row: a round mixing tree depths makes a
call per depth), then their simulations in one more. A tree stops when a simulated plan solves the task
(value >= `SOLVED_VALUE`; with `search_stop="solved"`, MCTD's rule), after `search_expansions` expansions, or after
the round in which `search_seconds` passed. The plan returned is the best simulated one. Randomness (starting noise,
stabilization noise, the order in which a node's meta-actions are tried) comes from the caller's generator: a seeded
generator repeats the search exactly, unless `search_seconds` cuts it short.

Compute is counted in network evaluations: one plan through the network at one scheduling row (the guidance
backward rides along), the unit that best-of-N spends `candidates x rows` of.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dfplan.df.sampler import denoise, schedule_levels
from dfplan.diffusion.core import q_sample_at
from dfplan.search.tree import Node, Tree
from dfplan.settings import SamplerSettings
from dfplan.tasks.base import SOLVED_VALUE

DEFAULT_LEVELS = 3  # search_block=None: the schedule's rows split into this many tree levels

Decode = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (tokens [N,H,D], envs [N])
Value = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (raw states [N,H+1,Ds], envs [N]) -> [N]


@dataclass
class SearchResult:
    tokens: torch.Tensor  # [B, H, D] the best simulated plan of each env's tree (normalized tokens)
    value: torch.Tensor  # [B] its value
    solved: torch.Tensor  # [B] bool: value >= SOLVED_VALUE
    expansions: np.ndarray  # [B] nodes expanded
    evaluations: np.ndarray  # [B] network evaluations (plans x scheduling rows)
    rounds: int  # batched rounds
    calls: int  # batched sampler calls
    seconds: float


def block_rows(levels: np.ndarray, block: int | None) -> int:
    """Scheduling rows per tree level: `block`, or the rows split into DEFAULT_LEVELS levels."""
    return block if block is not None else max(1, math.ceil((len(levels) - 1) / DEFAULT_LEVELS))


def simulation_rows(start: int, last: int, jump: int) -> list[int]:
    """Rows a jumpy simulation visits from row `start`: every `jump`-th one, and the last (clean) row."""
    rows = list(range(start, last + 1, jump))
    return rows if rows[-1] == last else rows + [last]


def evaluations(levels: np.ndarray, rows: list[int]) -> int:
    """Network evaluations of walking one plan through `rows` of `levels` (transitions where any level moves)."""
    return int(sum((levels[a] != levels[b]).any() for a, b in zip(rows[:-1], rows[1:])))


def mctd_search(model, z: torch.Tensor, horizon: int, cfg: SamplerSettings, guides: list, decode: Decode, value: Value,
         generator: torch.Generator | None = None, init: torch.Tensor | None = None, z_now: torch.Tensor | None = None,
         token_box=None) -> SearchResult:
    """Search a plan of `horizon` tokens for each of B envs after latents z [B, Hz].

    guides: per meta-action, the objective over the B envs' raw (states, actions) -> [B] that a child made by it is
    guided with (None entries: unguided); decode: normalized tokens of some envs' plans -> raw (actions, states);
    value: raw planned states of some envs -> [N] values. `init`, `z_now`, `token_box`: as in `sample`."""
    t0 = time.perf_counter()
    B, device, D = z.shape[0], z.device, model.cfg.token_dim
    n_init = 0 if init is None or cfg.warm_start_step <= 0 else min(init.shape[1], horizon)
    levels = schedule_levels(model, horizon, cfg, n_init)
    last, block, A = len(levels) - 1, block_rows(levels, cfg.search_block), len(guides)
    root = cfg.temperature * torch.randn(B, horizon, D, device=device, generator=generator)
    if n_init:
        ab = model.alphas_bar[torch.as_tensor(levels[0, :n_init], device=device)].unsqueeze(-1)
        root[:, :n_init] = q_sample_at(init[:, :n_init].to(device), ab, root[:, :n_init])
    order = lambda: torch.randperm(A, generator=generator, device=device).tolist()  # noqa: E731
    trees = [Tree(Node(row=0, tokens=root[b], untried=order() if last > 0 else []), last) for b in range(B)]
    best_value = torch.full((B,), -1.0)
    best = root.clone()
    expanded, spent = np.zeros(B, dtype=int), np.zeros(B, dtype=int)
    solved = np.zeros(B, dtype=bool)
    stop_when_solved = cfg.search_stop == "solved"
    rounds = calls = 0
    while True:  # rounds; the seconds budget is checked after each, so that a search always makes one
        picks = []  # (env, node, meta-action)
        for b, tree in enumerate(trees):
            left = 0 if solved[b] and stop_when_solved else cfg.search_expansions - expanded[b]
            for _ in range(min(cfg.search_parallel, left)):
                chosen = tree.select()
                if chosen is None:
                    break
                picks.append((b, *chosen))
        if not picks:
            break
        rounds += 1
        for row in sorted({node.row for _, node, _ in picks}):
            group = [p for p in picks if p[1].row == row]
            env = torch.as_tensor([b for b, _, _ in group], device=device)
            acts = [a for _, _, a in group]
            objective = _batch_objective(guides, decode, [b for b, _, _ in group], acts, B, device)
            child_row = min(row + block, last)
            pair = (lambda t: None if t is None else t[env])  # noqa: E731
            x = torch.stack([node.tokens for _, node, _ in group])
            x = denoise(model, z[env], x, levels[row:child_row + 1], cfg, objective, generator, pair(z_now), token_box)
            sim = simulation_rows(child_row, last, cfg.search_jump)
            clean = x if len(sim) == 1 else denoise(model, z[env], x, levels[sim], cfg, objective, generator,
                                                    pair(z_now), token_box)
            calls += 1 + (len(sim) > 1)
            with torch.no_grad():
                values = value(decode(clean, env)[1], env).float().cpu()
            cost = evaluations(levels, list(range(row, child_row + 1))) + evaluations(levels, sim)
            for i, (b, node, a) in enumerate(group):
                child = Node(row=child_row, tokens=x[i], parent=node, action=a,
                             untried=order() if child_row < last else [])
                trees[b].add(node, a, child, float(values[i]))
                expanded[b] += 1
                spent[b] += cost
                if values[i] > best_value[b]:
                    best_value[b], best[b] = values[i], clean[i]
                solved[b] |= bool(values[i] >= SOLVED_VALUE)
        for tree in trees:
            tree.clear_virtual()
        if cfg.search_seconds is not None and time.perf_counter() - t0 >= cfg.search_seconds:
            break
    return SearchResult(tokens=best, value=best_value, solved=torch.as_tensor(solved), expansions=expanded,
                        evaluations=spent, rounds=rounds, calls=calls, seconds=time.perf_counter() - t0)


def _batch_objective(guides: list, decode: Decode, envs: list[int], acts: list[int], B: int, device):
    """The token objective of a batch of N children (child i of env envs[i], made by meta-action acts[i]): each
    child's plan scored by its meta-action's objective. Those objectives are made for the B envs' rows, so the
    children are laid out in slots of B rows (slot j: each env's j-th child, padded with a child of the slot) and
    each objective is called once per slot; the padding's values are dropped, so it gets no gradient."""
    if all(g is None for g in guides):
        return None
    env_t = torch.as_tensor(envs, device=device)
    slots: list[list[int]] = []
    seen: dict[int, int] = {}
    for i, b in enumerate(envs):
        j = seen.get(b, 0)
        seen[b] = j + 1
        if j == len(slots):
            slots.append([])
        slots[j].append(i)
    layout = []  # per slot: (index [B] into the children, {meta-action: children in the slot made by it})
    for members in slots:
        index = torch.full((B,), members[0], dtype=torch.long)
        index[[envs[i] for i in members]] = torch.as_tensor(members)
        by_act: dict[int, list[int]] = {}
        for i in members:
            by_act.setdefault(acts[i], []).append(i)
        layout.append((index.to(device), by_act))
    order = [i for _, by_act in layout for members in by_act.values() for i in members]
    inverse = torch.as_tensor(np.argsort(order), device=device)

    def objective(tokens: torch.Tensor) -> torch.Tensor:
        actions, states = decode(tokens, env_t)
        parts = []
        for index, by_act in layout:
            s, a = states[index], actions[index]
            for act, members in by_act.items():
                where = torch.as_tensor([envs[i] for i in members], device=device)
                if guides[act] is None:  # unguided: zero, kept in the graph (a batch may have no other part)
                    parts.append(0.0 * tokens[torch.as_tensor(members, device=device)].sum((1, 2)))
                else:
                    parts.append(guides[act](s, a)[where])
        return torch.cat(parts)[inverse]

    return objective
