"""Monte Carlo Tree Diffusion (`search=mctd`): the trap a single plan falls into, budgets, determinism, values."""

import numpy as np
import pytest
import torch
from conftest import train_config

import dfplan.search.mctd as mctd_module
from dfplan.envs.ogbench import EFFECTOR, cube_dims
from dfplan.errors import UserError
from dfplan.guidance import Penalized
from dfplan.registry import load_planner
from dfplan.search.tree import Node, Tree
from dfplan.settings import resolve_settings
from dfplan.tasks import get_task
from dfplan.tasks.base import SOLVED_VALUE, reach_value
from dfplan.tasks.pointmaze import GOAL_RADIUS, MAX_STEP
from dfplan.training import train

START = torch.tensor([[-1.0, -1.0, 0.0, 0.0]])  # U-Maze: the bottom-left cell
CORNER = torch.tensor([[1.0, 1.0]])  # the top-right cell: the straight line to it crosses the wall cell at (0, 0)
BEHIND_WALL = torch.tensor([[-1.0, 1.0]])  # the top-left cell, straight across the U's bar: rarely reached
HORIZON = 24  # tokens (96 steps): the way round the wall to CORNER (4 m) fits


@pytest.fixture(scope="module")
def planner(minari_root, tmp_path_factory):
    """A tiny DF model trained long enough (1,500 steps, ~15 s) that its unguided plans move like the point does."""
    out = tmp_path_factory.mktemp("search-run")
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(minari_root))
        train(train_config(out, steps=1500), task=get_task("pointmaze-umaze"))
    return load_planner(out / "final.pt", device="cpu", ddim_steps=5, guidance_scale=5.0)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def value(planner, plan, goal):
    return planner.task.plan_value(plan.states, goal)


def test_search_escapes_the_trap_a_single_plan_falls_into(planner):
    """Guided toward the corner at the planner's scale, every plan jumps across the wall (implausible, value 0), one
    plan or the best of five; the tree tries weaker guidance per level and finds a plan that goes round the wall."""
    singles = [value(planner, planner.plan(START, CORNER, HORIZON, generator=gen(s)), CORNER).item() for s in range(6)]
    best_of_5 = value(planner, planner.plan(START, CORNER, HORIZON, generator=gen(0), candidates=5), CORNER).item()
    assert max(singles) < SOLVED_VALUE and best_of_5 < SOLVED_VALUE
    plan = planner.plan(START, CORNER, HORIZON, generator=gen(0), search="mctd", search_expansions=30)
    assert bool(plan.info["solved"][0]) and value(planner, plan, CORNER).item() >= SOLVED_VALUE
    xy = plan.states[0, :, :2]
    assert (xy - CORNER).norm(dim=-1).min() <= GOAL_RADIUS  # it reaches the goal ...
    assert not planner.task.layout.in_wall(xy.numpy()).any()  # ... round the wall, which the value never saw
    assert (xy[1:] - xy[:-1]).norm(dim=-1).max() <= MAX_STEP


def test_search_respects_its_expansion_budget(planner, monkeypatch):
    denoised = []
    real = mctd_module.denoise
    monkeypatch.setattr(mctd_module, "denoise", lambda model, z, x, *a, **k: denoised.append(len(x)) or real(
        model, z, x, *a, **k))
    plan = planner.plan(START, BEHIND_WALL, HORIZON, generator=gen(0), search="mctd", search_expansions=7,
                        search_parallel=3, guidance_scale=20.0)
    assert not plan.info["solved"][0]
    assert plan.info["expansions"][0] == 7 and plan.info["rounds"] == 3  # 3 + 3 + 1
    assert 7 <= sum(denoised) <= 14  # each child: one block of rows, at most one simulation
    transitions = planner.sampler.ddim_steps + HORIZON - 1  # of the pyramid's rows: a child walks at most these
    assert 0 < plan.info["evaluations"][0] <= 7 * transitions


def test_search_stop_budget_spends_the_whole_budget_after_a_solving_plan(planner):
    """MCTD's rule stops a tree at its first solving plan; search_stop=budget expands all the budget and keeps the
    best plan, which solves too."""
    kw = dict(generator=gen(0), search="mctd", search_expansions=30)
    first = planner.plan(START, CORNER, HORIZON, **kw)
    whole = planner.plan(START, CORNER, HORIZON, search_stop="budget", **kw)
    assert bool(first.info["solved"][0]) and first.info["expansions"][0] < 30
    assert whole.info["expansions"][0] == 30 and bool(whole.info["solved"][0])
    assert whole.info["value"][0] >= first.info["value"][0]
    with pytest.raises(UserError, match="search_stop"):
        resolve_settings(None, search_stop="never")


def test_children_keep_a_penalized_objectives_penalty_whole(planner):
    """Meta-actions scale the pull toward the goal; the penalty of a `Penalized` objective (the revisit cost) stays
    the same in every child, so an unguided child (scale 0) still pays it."""
    toward = lambda s, a: -s[:, -1, 0]  # noqa: E731
    penalty = lambda s, a: -10.0 * s[:, -1, 1]  # noqa: E731
    states, actions = torch.ones(1, 3, 4), torch.zeros(1, 2, 2)
    for meta in planner.task.meta_actions():
        scale = float(meta.label[1:])
        child = meta.child_objective(Penalized(toward, penalty), CORNER)
        assert child(states, actions).item() == pytest.approx(-scale - 10.0)
        assert meta.child_objective(toward, CORNER)(states, actions).item() == pytest.approx(-scale)


def test_seconds_budget_stops_after_one_round(planner):
    plan = planner.plan(START, BEHIND_WALL, HORIZON, generator=gen(0), search="mctd", search_seconds=1e-9,
                        search_parallel=2, guidance_scale=20.0)
    assert plan.info["rounds"] == 1 and plan.info["expansions"][0] == 2


def test_search_is_deterministic_under_a_seed_and_batches_envs(planner):
    obs, goal = torch.cat([START, START]), torch.cat([BEHIND_WALL, CORNER])
    kw = dict(search="mctd", search_expansions=12, search_parallel=4)
    a = planner.plan(obs, goal, 8, generator=gen(3), **kw)
    b = planner.plan(obs, goal, 8, generator=gen(3), **kw)
    c = planner.plan(obs, goal, 8, generator=gen(4), **kw)
    assert torch.equal(a.states, b.states) and np.array_equal(a.info["expansions"], b.info["expansions"])
    assert not torch.equal(a.states, c.states)
    assert a.states.shape == (2, 33, 4) and torch.equal(a.states[:, 0], obs)


def test_search_needs_the_goal_and_a_valid_setting(planner):
    with pytest.raises(UserError, match="needs the goal"):
        planner.plan(START, None, 4, search="mctd")
    with pytest.raises(UserError, match="guidance_scale=0"):
        planner.plan(START, CORNER, 4, search="mctd", guidance_scale=0.0)
    with pytest.raises(UserError, match="search_expansions"):
        resolve_settings(None, search="mctd", search_expansions=0)


def test_candidates_ranked_by_the_value_keep_the_most_valuable_plan(planner):
    """The same five candidates (one seed), kept by the objective or by the task's value: the value's pick is worth
    at least as much; rank=value without a goal is a one-line error."""
    by = {rank: planner.plan(START, CORNER, HORIZON, generator=gen(3), candidates=5, rank=rank)
          for rank in ("objective", "value")}
    assert value(planner, by["value"], CORNER).item() >= value(planner, by["objective"], CORNER).item()
    assert by["value"].info["objective"].item() == pytest.approx(value(planner, by["value"], CORNER).item())
    with pytest.raises(UserError, match="rank=value needs the goal"):
        planner.plan(START, None, 4, candidates=2, rank="value",
                     objective=lambda states, actions: -states[:, -1, 0])


def test_reach_value_on_hand_made_plans():
    goal = torch.tensor([[2.0, 0.0]])
    line = lambda n, step: torch.stack([torch.arange(n + 1) * step, torch.zeros(n + 1)], -1)[None]  # noqa: E731
    # 20 steps of 0.1 m: first within 0.45 of the goal at step 16 (x = 1.6)
    assert reach_value(line(20, 0.1), goal, 0.45, 0.5).item() == pytest.approx(0.5 + 0.5 * (20 - 16) / 20)
    assert reach_value(line(20, 0.1), torch.tensor([[0.0, 0.0]]), 0.45, 0.5).item() == pytest.approx(1.0)  # at goal
    # never reaching: half the fraction of the start's distance closed (1.0 of 5.0 m)
    assert reach_value(line(10, 0.1), torch.tensor([[5.0, 0.0]]), 0.45, 0.5).item() == pytest.approx(0.5 * 0.2)
    jumpy = line(20, 0.1).clone()
    jumpy[0, 5:] += torch.tensor([0.0, 1.0])  # a 1 m jump at step 5: implausible, whatever it reaches
    assert reach_value(jumpy, torch.tensor([[2.0, 1.0]]), 0.45, 0.5).item() == 0.0
    # in tokens of 4 steps the jump (step 4: state 4 -> 5) joins two tokens, which is not tested; in tokens of 5 it
    # lies inside one
    assert reach_value(jumpy, torch.tensor([[2.0, 1.0]]), 0.45, 0.5, frame_stack=4).item() == pytest.approx(0.6)
    assert reach_value(jumpy, torch.tensor([[2.0, 1.0]]), 0.45, 0.5, frame_stack=5).item() == 0.0
    maze = get_task("pointmaze-umaze")
    states = torch.cat([line(20, 0.1), torch.zeros(1, 21, 2)], -1)  # [x, y, vx, vy]
    assert maze.plan_value(states, goal).item() == pytest.approx(0.6)


def cube_plan(steps: int = 40, carry: int = 0, both: bool = False, jump_at: int | None = None) -> torch.Tensor:
    """Hand-made cube-double plan [1, steps+1, 43]: the effector goes to cube `carry` at (0, 0, 0.2) and carries it
    0.1 per step along x (and cube 1 along with it when `both`; `jump_at`: from that step on, the carried cube and
    the effector are 5 further along y: a jump, with the effector at the cube throughout)."""
    dims = cube_dims(2)
    s = torch.zeros(1, steps + 1, 43)
    x = torch.arange(steps + 1) * 0.1
    s[0, :, list(dims[3 * carry:3 * carry + 3])] = torch.stack([x, torch.zeros_like(x), torch.full_like(x, 0.2)], -1)
    other = 1 - carry
    s[0, :, list(dims[3 * other:3 * other + 3])] = torch.tensor([0.0, 2.0, 0.2]) + (
        torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1) if both else 0.0)
    if jump_at is not None:
        s[0, jump_at:, dims[3 * carry + 1]] += 5.0
    s[0, :, list(EFFECTOR)] = s[0, :, list(dims[3 * carry:3 * carry + 3])]
    return s


def test_cube_value_and_meta_actions_on_hand_made_plans():
    task = get_task("ogbench-cube-double")
    goal = torch.tensor([[3.0, 0.0, 0.2, 0.0, 2.0, 0.2]])  # cube 0 3 along x; cube 1 where it is
    # cube 0 carried 4 along x, past its goal (first within 0.4 at step 26), cube 1 untouched: solved
    assert task.plan_value(cube_plan(), goal).item() == pytest.approx(0.5 + 0.5 * (40 - 26) / 40)
    # half way (1.5 of 3 closed) by the end: half credit for cube 0, full for cube 1 (placed)
    assert task.plan_value(cube_plan(15), goal).item() == pytest.approx(0.5 * (0.5 + 1.0) / 2)
    # implausible: cube 1 moves along with cube 0 (both at once, cube 1 far from the effector), or cube 0 jumps
    assert task.plan_value(cube_plan(both=True), goal).item() == 0.0
    assert task.plan_value(cube_plan(jump_at=20), goal).item() == 0.0
    # meta-actions: which cube, how strongly; each guides its own cube only
    acts = task.meta_actions()
    assert [a.label for a in acts] == ["cube0x1", "cube0x2", "cube0x4", "cube1x1", "cube1x2", "cube1x4"]
    plan = cube_plan().requires_grad_(True)
    acts[1].guide(None, goal)(plan, None).backward()
    moved = plan.grad[0].abs().sum(0).nonzero().flatten().tolist()
    assert moved and set(moved) <= set(cube_dims(2)[:3])


def test_uct_prefers_value_and_spreads_a_round_with_virtual_visits():
    tree = Tree(Node(row=0, tokens=None, untried=[0, 1]), last_row=2)
    picks = [tree.select(), tree.select()]
    assert [a for _, a in picks] == [0, 1] and tree.select() is None  # both children pending: nothing to select
    for (node, a), v in zip(picks, (0.9, 0.1)):
        tree.add(node, a, Node(row=1, tokens=None, parent=node, action=a, untried=[0, 1]), v)
    tree.clear_virtual()
    assert tree.root.value == 0.9 and tree.root.visits == 2
    first, second = tree.select(), tree.select()
    assert first[0].action == 0  # the better child first ...
    assert first[0] is second[0] and {first[1], second[1]} == {0, 1}  # ... again, for its other untried action
    third = tree.select()
    assert third[0].action == 1  # its children all pending, the round moves to the other child
