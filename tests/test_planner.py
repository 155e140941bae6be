import numpy as np
import pytest
import torch

from dfplan.df.sampler import (
    SampleResult,
    SamplerSettings,
    best_candidates,
    feed_context,
    paper_guidance_weight,
    sample,
)
from dfplan.diffusion import make_noise_schedule
from dfplan.envs import MazeLayout, get_maze
from dfplan.guidance import GeodesicGuide, episode_goal_distance, goal_distance, goal_reward
from dfplan.registry import load_planner
from dfplan.run import dynamics_error, execute_open_loop
from dfplan.tasks import get_task

OBS = torch.tensor([[0.5, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, 0.5, 0.0]])
GOAL = torch.tensor([[-1.0, 1.0]] * 3)


@pytest.fixture(scope="module")
def planner(tiny_checkpoint):
    return load_planner(tiny_checkpoint, device="cpu", ddim_steps=5)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("horizon", [1, 3, 8])
def test_plan_shapes_in_env_steps_and_raw_units(planner, horizon):
    plan = planner.plan(OBS, GOAL, horizon, generator=gen())
    fs = planner.frame_stack
    assert plan.actions.shape == (3, horizon * fs, 2) and plan.states.shape == (3, horizon * fs + 1, 4)
    assert torch.equal(plan.states[:, 0], OBS)
    assert torch.isfinite(plan.states).all() and plan.info["objective"].shape == (3,)


def test_horizon_far_past_the_training_window(planner):
    window_tokens = 32 // planner.frame_stack
    plan = planner.plan(OBS[:1], GOAL[:1], horizon=5 * window_tokens, generator=gen())
    assert plan.actions.shape[1] == 5 * 32 and torch.isfinite(plan.states).all()


@pytest.mark.parametrize("schedule", ["pyramid", "full_sequence", "autoregressive", "trapezoid"])
def test_every_schedule_samples(planner, schedule):
    plan = planner.plan(OBS, GOAL, 4, generator=gen(), schedule=schedule)
    assert torch.isfinite(plan.actions).all()


def test_guidance_moves_the_plan_toward_the_goal(planner):
    def mean_goal_distance(plan):
        return (plan.states[:, 1:, :2] - GOAL[:, None]).norm(dim=-1).mean().item()

    def distance(scale: float) -> float:
        return np.mean([mean_goal_distance(planner.plan(OBS, GOAL, 6, generator=gen(s), guidance_scale=scale))
                        for s in range(3)])

    free, guided = distance(0.0), distance(5.0)
    assert guided < free - 0.1


def test_mcg_with_one_sample_equals_plain_guidance(planner):
    a = planner.plan(OBS, GOAL, 4, generator=gen(5), guidance_scale=0.5, mc_samples=1)
    b = planner.plan(OBS, GOAL, 4, generator=gen(5), guidance_scale=0.5)
    assert torch.equal(a.states, b.states)
    c = planner.plan(OBS, GOAL, 4, generator=gen(5), guidance_scale=0.5, mc_samples=4)
    assert torch.isfinite(c.states).all() and not torch.equal(a.states, c.states)


def test_candidates_keep_each_envs_best_of_its_plans(planner):
    n = 4  # the n candidates are the plans of n copies of each env in one batch; each env keeps its best
    best = planner.plan(OBS, GOAL, 4, generator=gen(2), guidance_scale=0.5, candidates=n)
    every = planner.plan(OBS.repeat_interleave(n, 0), GOAL.repeat_interleave(n, 0), 4, generator=gen(2),
                         guidance_scale=0.5)
    value = every.info["objective"].reshape(3, n)
    assert len(set(value.argmax(1).tolist())) > 1 or value.std(1).min() > 0  # the candidates differ
    torch.testing.assert_close(best.info["objective"], value.max(1).values)
    torch.testing.assert_close(best.actions, every.actions.unflatten(0, (3, n))[range(3), value.argmax(1)])
    assert torch.equal(best.states[:, 0], OBS)
    unguided = [planner.plan(OBS, GOAL, 4, generator=gen(2), guidance_scale=0.0, candidates=c) for c in (1, n)]
    assert torch.equal(unguided[0].states, unguided[1].states)  # nothing to rank by: one plan


def test_best_candidate_never_picks_a_non_finite_objective():
    result = SampleResult(tokens=torch.arange(4.0)[:, None, None], z_end=None,
                          objective=torch.tensor([float("nan"), -5.0, 2.0, float("inf")]))
    best = best_candidates(result, 2)
    assert best.tokens.flatten().tolist() == [1.0, 2.0] and best.z_end is None


def test_paper_guidance_weight_vanishes_at_high_noise_and_at_the_end():

    ab = make_noise_schedule("linear", 1000).alphas_bar
    c = lambda k, k_next: float(paper_guidance_weight(ab[k], ab[k_next]))  # noqa: E731
    assert 0 < c(1000, 980) < 1e-4  # the first of 50 DDIM steps: ~1e-5 (the figure)
    assert c(1000, 980) < c(500, 480) < c(40, 20)  # grows as the noise falls
    assert c(20, 0) == 0.0 and abs(c(500, 500)) < 1e-6  # nothing at the last step, nothing where the level stays


def test_paper_guidance_rule_steers_the_plan_toward_the_goal(planner):
    def mean_goal_distance(plan):
        return (plan.states[:, 1:, :2] - GOAL[:, None]).norm(dim=-1).mean().item()


    # the paper preset: its objective (300-step U-Maze episodes) at the scale its README recommends
    kw = dict(guidance_rule="paper", ddim_steps=20, schedule="pyramid", objective=episode_goal_distance(GOAL, 300))
    free = np.mean([mean_goal_distance(planner.plan(OBS, horizon=6, generator=gen(s), guidance_scale=0.0, **kw))
                    for s in range(3)])
    guided = np.mean([mean_goal_distance(planner.plan(OBS, horizon=6, generator=gen(s), guidance_scale=8.0, **kw))
                      for s in range(3)])
    assert guided < free - 0.1


def test_guidance_can_spare_the_last_step_and_the_states(planner):
    kw = dict(schedule="full_sequence", ddim_steps=1)  # one DDIM step: it is every token's last
    plan = lambda **g: planner.plan(OBS, GOAL, 4, generator=gen(3), **kw, **g)  # noqa: E731
    free, guided = plan(guidance_scale=0.0), plan(guidance_scale=5.0)
    assert not torch.allclose(guided.states, free.states, atol=0.1)
    assert torch.allclose(plan(guidance_scale=5.0, guide_last_step=False).states, free.states, atol=1e-6)
    actions_only = plan(guidance_scale=5.0, guided_dims="actions")  # the gradient moves the actions, not the states
    assert torch.allclose(actions_only.states, free.states, atol=1e-3)  # (eps -> x0 at full noise: round-off ~1e-4)
    assert not torch.allclose(actions_only.actions, free.actions, atol=1e-3)


def test_clipped_actions_stay_in_the_action_box(planner):
    plan = lambda **g: planner.plan(OBS, GOAL, 6, generator=gen(4), guidance_scale=50.0, **g)  # noqa: E731
    pushed = plan()  # strong guidance drives the planned actions out of the env's box ...
    assert pushed.actions.abs().max() > 1.05
    clipped = plan(clip_actions=True)  # ... unless each step's clean estimate is clamped into it
    assert clipped.actions.abs().max() <= 1.0 + 1e-5 and torch.isfinite(clipped.states).all()
    low, high = planner.token_box()  # the states are left free
    assert torch.isinf(low).sum() == planner.frame_stack * planner.obs_dim and (high > low).all()


def test_context_fed_clean_when_context_noise_is_off(planner):

    m = planner.model
    tokens, z = torch.randn(2, 3, m.cfg.token_dim), m.init_state(torch.zeros(2, 4))
    noise = torch.randn_like(tokens)
    level = torch.full((2, 3), 10)
    clean = feed_context(m, tokens, z, 10, noise, noised=False)
    assert torch.allclose(clean, m.forward_raw(tokens, level, z)[1], atol=1e-6)
    assert not torch.allclose(clean, feed_context(m, tokens, z, 10, noise), atol=1e-3)


def test_history_guidance_interpolates_between_the_two_latents(planner):
    z_now = planner.initial_latent(OBS)
    z_hist = z_now + 0.5 * torch.randn(z_now.shape, generator=gen(1))
    plan = lambda z, **kw: planner.plan_from(z, OBS, GOAL, 4, generator=gen(2), guidance_scale=0.5, **kw).states  # noqa: E731
    hist, now = plan(z_hist), plan(z_now)
    assert torch.equal(plan(z_hist, z_now=z_now, history_guidance=1.0), hist)  # w = 1: plain memory, one prediction
    assert torch.allclose(plan(z_hist, z_now=z_now, history_guidance=0.0), now, atol=1e-4)  # w = 0: memoryless
    more = plan(z_hist, z_now=z_now, history_guidance=2.0)
    assert torch.isfinite(more).all() and not torch.allclose(more, hist, atol=1e-3)
    mcg = plan(z_hist, z_now=z_now, history_guidance=2.0, mc_samples=3)  # the doubled batch through MCG's copies
    assert mcg.shape == hist.shape and torch.isfinite(mcg).all()


def test_custom_objective_and_dense_reward(planner):
    plan = planner.plan(OBS, horizon=3, objective=goal_reward(GOAL), generator=gen(), guidance_scale=0.5)
    assert torch.isfinite(plan.states).all()
    right = planner.plan(OBS, horizon=3, objective=lambda s, a: s[:, 1:, 0].sum(-1), generator=gen(),
                         guidance_scale=2.0)
    left = planner.plan(OBS, horizon=3, objective=lambda s, a: -s[:, 1:, 0].sum(-1), generator=gen(),
                        guidance_scale=2.0)
    assert (right.states[:, -1, 0] > left.states[:, -1, 0]).all()


def test_prefix_cache_matches_full_recomputation(planner):
    """Caching the finished prefix's latent gives the same tokens as feeding the whole prefix every row."""
    torch.manual_seed(0)
    z0 = planner.initial_latent(OBS)
    cfg = SamplerSettings(ddim_steps=4, schedule="autoregressive", stabilization_level=0)
    tokens = sample(planner.model, z0, 3, cfg, generator=gen(2)).tokens
    # autoregressive without stabilization == sampling each token after feeding the clean prefix
    z, out = z0, []
    g = gen(2)
    for t in range(3):
        cfg = SamplerSettings(ddim_steps=4, schedule="full_sequence", stabilization_level=0)
        res = sample(planner.model, z, 1, cfg, generator=g, return_latent=True)
        out.append(res.tokens)
        z = res.z_end
    assert tokens.shape == torch.cat(out, 1).shape and torch.isfinite(tokens).all()


def test_warm_start_stays_near_the_previous_plan(planner):
    first = planner.plan(OBS, GOAL, 6, generator=gen(0))
    rest = first.info["tokens"][:, 2:]  # two tokens executed; warm-start from the other four
    z = planner.initial_latent(OBS)
    warm = planner.plan_from(z, OBS, GOAL, 6, generator=gen(1), init=rest, warm_start_step=1).info["tokens"]
    cold = planner.plan_from(z, OBS, GOAL, 6, generator=gen(1), init=rest).info["tokens"]  # warm_start_step=0
    assert warm.shape == cold.shape == (3, 6, rest.shape[-1])
    assert (warm[:, :4] - rest).norm() < (cold[:, :4] - rest).norm()
    with pytest.raises(ValueError, match="warm_start_step=4 must be in 0..ddim_steps=3"):
        SamplerSettings(ddim_steps=3, warm_start_step=4)


def test_same_seed_same_plan(planner):
    a = planner.plan(OBS, GOAL, 3, generator=gen(9), guidance_scale=0.5)
    b = planner.plan(OBS, GOAL, 3, generator=gen(9), guidance_scale=0.5)
    assert torch.equal(a.actions, b.actions)


def test_bad_inputs_are_clear_errors(planner):
    with pytest.raises(ValueError, match="goal must be"):
        planner.plan(OBS, torch.zeros(3, 3), 2)
    with pytest.raises(ValueError, match="NaN"):
        planner.plan(torch.tensor([[float("nan"), 0, 0, 0]]), GOAL[:1], 2)
    with pytest.raises(ValueError, match="horizon=0 must be a whole number of tokens in 1..10000"):
        planner.plan(OBS, GOAL, 0)
    with pytest.raises(ValueError, match=r"obs must be \[B, 4\]"):
        planner.plan(torch.zeros(3, 5), GOAL, 2)


def test_causal_rollout_runs_past_the_window_and_stays_finite(planner):
    roll = planner.rollout(OBS, n_tokens=24, generator=gen())
    assert roll.states.shape == (3, 24 * planner.frame_stack + 1, 4) and torch.isfinite(roll.states).all()
    clean = planner.rollout(OBS, n_tokens=4, stabilize=False, generator=gen())
    assert torch.isfinite(clean.states).all()


def test_goal_distance_objective_formula():
    states = torch.zeros(1, 3, 4)
    states[0, 1:, :2] = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert goal_distance(torch.zeros(1, 2))(states, None).item() == pytest.approx(-6.0)


def umaze_layout():

    return MazeLayout(get_maze("pointmaze-umaze").maze_map)


def field_at(field, origin, step, xy) -> float:
    """The value of a geodesic field at the grid point nearest to `xy`."""
    return field[int(round((origin[1] - xy[1]) / step)), int(round((xy[0] - origin[0]) / step))]


def test_geodesic_field_goes_around_the_walls():
    layout = umaze_layout()
    goal = layout.cell_to_xy((3, 1))  # bottom-left arm; (1, 1) is straight above it, behind the wall
    field, origin, step = layout.geodesic_field(goal)
    at = lambda xy: field_at(field, origin, step, xy)  # noqa: E731
    assert at(goal) < step
    assert 4.1 < at(layout.cell_to_xy((1, 1))) < 4.7  # round the wall's end (4.16 in free space), not 2 straight
    wall, edge = layout.cell_to_xy((2, 1)), layout.cell_to_xy((3, 1)) + np.array([0.0, 0.4])  # edge: just below it
    assert at(wall) > at(edge) + 0.9  # inside a wall: uphill, 2 x the 0.5 m crossed
    # no cliff at the walls' edges (neighbours of which one is free differ by about the wall slope's step) and no
    # short cut through them (the outer wall beside the arm is not cheaper than the free point next to it)
    free = ~layout.in_wall(origin + np.stack(np.meshgrid(np.arange(40), np.arange(40)), -1) * [step, -step])
    for axis in (0, 1):
        jump = np.abs(np.diff(field, axis=axis))
        edge = np.logical_or(*(np.take(free, range(0, 39), axis), np.take(free, range(1, 40), axis)))
        assert jump[edge].max() <= 4.0 * step
    inner, outer = layout.cell_to_xy((1, 1)) - [0.45, 0], layout.cell_to_xy((1, 1)) - [0.55, 0]
    assert at(outer) > at(inner)


def test_geodesic_field_keeps_clear_of_walls():
    layout = umaze_layout()
    goal = layout.cell_to_xy((3, 1))
    plain, origin, step = layout.geodesic_field(goal)
    clear, _, _ = layout.geodesic_field(goal, clearance=0.2)
    at = lambda f, xy: field_at(f, origin, step, xy)  # noqa: E731
    grazing = layout.cell_to_xy((1, 1)) + [-0.45, 0.0]  # 5 cm from the outer wall, inside the band
    middle = layout.cell_to_xy((1, 2))  # a cell's centre, far from any wall
    assert layout.clear_of_walls(middle, 0.2) and not layout.clear_of_walls(grazing, 0.2)
    assert layout.clear_of_walls(grazing, 0.0)
    assert at(clear, grazing) > at(plain, grazing) + 0.1  # the band counts as wall: uphill
    assert 0 < at(clear, middle) - at(plain, middle) < 1.0  # the way round the corners is a little longer
    near_wall = layout.cell_to_xy((3, 1)) + [-0.45, 0.0]  # a goal inside the band: paths may come as close as it is
    f, _, _ = layout.geodesic_field(near_wall, clearance=0.2)
    assert at(f, near_wall) < step and np.isfinite(f).all()
    in_wall = layout.cell_to_xy((2, 1))  # a goal inside a wall: its nearest free point is the goal
    f, _, _ = layout.geodesic_field(in_wall, clearance=0.1)
    assert np.isfinite(f).all() and f.min() == pytest.approx(0.5 + step / 2, abs=step)


def test_geodesic_guidance_leads_round_the_wall_not_into_it():

    layout = umaze_layout()
    goal = torch.tensor(layout.cell_to_xy((3, 1)), dtype=torch.float32)[None]
    states = torch.zeros(1, 2, 4)
    states[0, 1, :2] = torch.tensor(layout.cell_to_xy((1, 1)) + np.array([0.1, 0.1]), dtype=torch.float32)
    grads = {}
    for name, objective in (("geodesic", GeodesicGuide(layout)(goal)), ("straight", goal_distance(goal))):
        x = states.clone().requires_grad_(True)
        objective(x, None).sum().backward()
        grads[name] = x.grad[0, 1, :2]
    assert grads["straight"][1] < -0.9  # straight-line distance pulls down, into the wall
    assert grads["geodesic"][0] > 0.5 and abs(grads["geodesic"][1]) < 0.5  # geodesic: along the corridor, right
    guide = GeodesicGuide(layout, max_cached=2)
    for cell in ((1, 1), (1, 2), (1, 3)):  # one field per goal, the oldest dropped past max_cached
        guide(torch.tensor(layout.cell_to_xy(cell), dtype=torch.float32)[None])
    assert len(guide._fields) == 2


def test_geodesic_value_counts_walls_steeply_and_its_gradient_gently():

    layout = umaze_layout()
    goal = torch.tensor(layout.cell_to_xy((3, 1)), dtype=torch.float32)[None]
    states = torch.zeros(1, 3, 4)
    states[0, 1, :2] = torch.tensor(layout.cell_to_xy((1, 2)), dtype=torch.float32)  # free, mid-corridor
    states[0, 2, :2] = torch.tensor(layout.cell_to_xy((2, 1)), dtype=torch.float32)  # the wall's middle, 0.5 m deep
    out = {}
    for slope in (2.0, 20.0):
        x = states.clone().requires_grad_(True)
        value = GeodesicGuide(layout, value_wall_slope=slope)(goal)(x, None)
        value.sum().backward()
        out[slope] = value.item(), x.grad.clone()
    # 18 more per metre of depth: 0.5 m into the wall plus the 0.1 m clearance band that counts as wall
    assert out[2.0][0] - out[20.0][0] == pytest.approx(18 * 0.6, abs=1.0)
    torch.testing.assert_close(out[2.0][1], out[20.0][1])  # the same gradient


def test_episode_goal_distance_weighs_the_mean_by_the_episode_length():

    states = torch.zeros(1, 5, 4)
    states[0, 1:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    f = episode_goal_distance(torch.zeros(1, 2), episode_steps=300)
    assert f(states, None).item() == pytest.approx(-300 * 2.5)
    objective = get_task("pointmaze-umaze").objective("episode_goal_distance")(torch.zeros(1, 2))
    assert objective(states, None).item() == pytest.approx(-300 * 2.5)  # U-Maze episodes: 300 steps


def test_objectives_are_chosen_by_the_task():

    task = get_task("pointmaze-umaze")
    assert isinstance(task.objective("geodesic"), GeodesicGuide)
    assert callable(task.objective(None)(torch.zeros(1, 2)))  # the default: the paper's straight line
    with pytest.raises(ValueError, match="objective='euclid' is not allowed; choose one of"):
        task.objective("euclid")




def test_dynamics_error_compares_planned_and_reached_positions():

    planned = np.zeros((2, 40, 4))
    reached = planned.copy()
    reached[:, 1:, :2] += [0.3, 0.4]  # 0.5 away at every step after the start
    assert dynamics_error(planned, planned, (0, 1)) == 0.0
    assert dynamics_error(planned, reached, (0, 1)) == pytest.approx(0.5)
    task = get_task("pointmaze-umaze")
    executed = execute_open_loop(task, "fixed", [3], np.zeros((1, 5, 2), np.float32))
    env = task.make_env()
    start, _ = env.reset(seed=3)
    assert executed.shape == (1, 6, 4) and np.allclose(executed[0, 0], start["observation"])
