"""DFPlanner: guided, variable-horizon planning with the causal Diffusion Forcing model."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from dfplan.checkpoint import load_model
from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.df.model import DFRNN, MODEL_TYPE
from dfplan.df.sampler import SampleResult, best_candidates, feed_context, sample
from dfplan.df.tokens import from_tokens
from dfplan.errors import UserError
from dfplan.guidance import Objective, goal_distance, per_candidate
from dfplan.search import mctd_search
from dfplan.settings import SAMPLER_KEYS, DFSettings, resolve_settings
from dfplan.tasks.base import Task
from dfplan.types import Plan, check_batch, whole_states

MAX_HORIZON = 10_000  # tokens; far past any episode, and still a plan that fits in memory


class DFPlanner:
    """Plans with a trained DFRNN. Inputs and outputs are raw env units; normalization happens inside.

    `plan(obs, goal, horizon)` starts from the observation alone; `plan_from(z, ...)` starts from a latent
    that already holds history (the MPC controller's memory). `objective` overrides the default goal-distance
    objective with any differentiable `f(states [B,H+1,Ds], actions [B,H,Da]) -> [B]`.
    A model trained on part of the state (`state_dims`, e.g. the effector and the cubes) takes and returns whole
    observations all the same: planned states hold the current value on the dims it does not plan.
    """

    def __init__(self, model: DFRNN, normalizer: Normalizer, settings: DFSettings | None = None,
                 device: str | torch.device = "cpu", task=None, meta: dict | None = None,
                 state_dims: tuple[int, ...] | None = None, env_obs_dim: int | None = None):
        """settings: the tuned sampler and controller settings (`dfplan.settings`); task: the `dfplan.tasks.Task`
        the model was trained for (goal dims and guidance objectives); meta: what the checkpoint says of itself
        (dataset id, reference scores); state_dims: the observation dims the model plans (None = all) of the
        `env_obs_dim`-D observation."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.settings = settings or DFSettings()
        self.task, self.meta = task, dict(meta or {})
        self.act_dim = model.cfg.act_dim
        self.state_dims = None if state_dims is None else tuple(int(d) for d in state_dims)
        self.obs_dim = model.cfg.obs_dim if self.state_dims is None else int(env_obs_dim)  # what callers pass
        self.goal_dims = tuple(task.goal_dims) if task is not None else (0, 1)
        if self.state_dims is not None and not set(self.goal_dims) <= set(self.state_dims):
            raise UserError(f"the model plans state dims {list(self.state_dims)}, which miss goal dims "
                            f"{sorted(set(self.goal_dims) - set(self.state_dims))}: guidance could not move them")
        self.frame_stack = model.cfg.frame_stack
        self._builders: dict = {}  # objective name -> (goal -> objective), see `objective_builder`
        self._token_box = None  # normalized action box per token entry, built on first use (`token_box`)

    @property
    def sampler(self):
        return self.settings.sampler

    @property
    def default_horizon(self) -> int:
        return self.settings.controller.horizon

    def _obs(self, obs) -> torch.Tensor:
        """Raw observations [B, Ds] -> the planned dims, normalized, clamped to what the model can mean."""
        obs = check_batch("obs", obs, self.obs_dim, self.device)
        return Normalizer.clamp(self.normalizer.norm_obs(self._planned(obs)))

    def _planned(self, states: torch.Tensor) -> torch.Tensor:
        """The dims of whole observations [..., Ds] that the model plans."""
        return states if self.state_dims is None else states[..., list(self.state_dims)]

    # --- latents -------------------------------------------------------------------------------
    @torch.no_grad()
    def initial_latent(self, obs: torch.Tensor) -> torch.Tensor:
        """Latent from raw observations [B, Ds]."""
        return self.model.init_state(self._obs(obs))

    @torch.no_grad()
    def advance_latent(self, z: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Feed executed steps (raw actions [B, fs*n, Da], observations after them [B, fs*n, Ds]) as context."""
        next_obs = self._planned(next_obs.to(self.device))
        steps = torch.cat([Normalizer.clamp(self.normalizer.norm_act(actions.to(self.device))),
                           Normalizer.clamp(self.normalizer.norm_obs(next_obs))], dim=-1)
        tokens = steps.reshape(steps.shape[0], -1, self.model.cfg.token_dim)
        noise = torch.randn(tokens.shape, device=self.device, generator=generator)
        return feed_context(self.model, tokens, z, self.sampler.stabilization_level, noise,
                            noised=self.sampler.context_noise)

    # --- planning ------------------------------------------------------------------------------
    def plan(self, obs: torch.Tensor, goal: torch.Tensor | None = None, horizon: int | None = None,
             objective: Objective | None = None, generator: torch.Generator | None = None, **overrides) -> Plan:
        """obs [B, Ds], goal [B, Dg] raw; `horizon` in tokens (any length >= 1). Returns a Plan in env steps."""
        obs = check_batch("obs", obs, self.obs_dim, self.device)
        return self.plan_from(self.initial_latent(obs), obs, goal, horizon, objective, generator, **overrides)

    def plan_from(self, z: torch.Tensor, obs: torch.Tensor, goal: torch.Tensor | None = None,
                  horizon: int | None = None, objective: Objective | None = None,
                  generator: torch.Generator | None = None, init: torch.Tensor | None = None,
                  z_now: torch.Tensor | None = None, **overrides) -> Plan:
        """Plan after latent z [B, Hz], whose last observed state is obs [B, Ds] (raw). `init`: normalized tokens
        of a previous plan (`plan.info["tokens"]`, already shifted to start now) to warm-start from, used when
        the sampler's `warm_start_step` > 0. `z_now`: a latent with less history than z (e.g. `initial_latent(obs)`)
        for history guidance, used when the sampler's `history_guidance` != 1."""
        t0 = time.perf_counter()
        horizon = self.default_horizon if horizon is None else horizon
        if isinstance(horizon, bool) or not float(horizon).is_integer() or not 1 <= horizon <= MAX_HORIZON:
            raise UserError(f"horizon={horizon!r} must be a whole number of tokens in 1..{MAX_HORIZON}")
        obs = check_batch("obs", obs, self.obs_dim, self.device)
        if objective is None and goal is not None:
            goal = check_batch("goal", goal, len(self.goal_dims), self.device, rows=obs.shape[0])
            objective = self.default_objective()(goal)
        unknown = set(overrides) - set(SAMPLER_KEYS)
        if unknown:
            raise UserError(f"unknown sampler setting {sorted(unknown)[0]!r}; settings: {list(SAMPLER_KEYS)}")
        cfg = replace(self.sampler, **overrides) if overrides else self.sampler
        if cfg.search == "mctd":
            return self._search(z.to(self.device), obs, goal, int(horizon), objective, cfg, generator, init, z_now, t0)
        n = cfg.candidates if objective is not None and cfg.guidance_scale > 0 else 1  # unguided: nothing to rank by
        z = z.to(self.device)
        plan_obs = obs
        if n > 1:  # n plans per env in one batch, env b's at rows b*n .. b*n+n-1
            z, plan_obs, init, z_now = (None if t is None else t.repeat_interleave(n, 0)
                                        for t in (z, obs, init, z_now))
            objective = per_candidate(objective, n)
        token_objective = None if objective is None else self._token_objective(objective, plan_obs)
        box = self.token_box() if cfg.clip_actions else None
        result = sample(self.model, z, int(horizon), cfg, token_objective, generator, init=init, z_now=z_now,
                        token_box=box)
        if n > 1:
            if cfg.rank == "value":
                result = self._valued(result, plan_obs, goal, n)
            result = best_candidates(result, n)
        return self._to_plan(result, obs, time.perf_counter() - t0)

    def _valued(self, result: SampleResult, obs: torch.Tensor, goal: torch.Tensor | None, n: int) -> SampleResult:
        """`rank=value`: the n candidates per env scored by the task's plan value (tree search's) instead of the
        objective. obs: the candidates' rows [B*n, Ds]."""
        if self.task is None or goal is None:
            raise UserError("rank=value needs the goal and the checkpoint's task: the task's value function scores "
                            "plans by how they reach the goal")
        goal = check_batch("goal", goal, len(self.goal_dims), self.device, rows=obs.shape[0] // n)
        with torch.no_grad():
            value = self.task.plan_value(self._decode(result.tokens, obs)[1], goal.repeat_interleave(n, 0),
                                         frame_stack=self.frame_stack)
        return SampleResult(tokens=result.tokens, z_end=result.z_end, objective=value.float())

    def _search(self, z, obs, goal, horizon: int, objective, cfg, generator, init, z_now, t0) -> Plan:
        """`search=mctd`: Monte Carlo Tree Diffusion (`dfplan.search`), one tree per env, valued by the task's
        `plan_value` against `goal`; children guided by the task's meta-actions applied to `objective`."""
        if self.task is None or goal is None:
            raise UserError("search=mctd needs the goal and the checkpoint's task: the task's value function scores "
                            "plans by how they reach the goal")
        goal = check_batch("goal", goal, len(self.goal_dims), self.device, rows=obs.shape[0])
        guides = [None if objective is None else m.child_objective(objective, goal) for m in self.task.meta_actions()]
        result = mctd_search(self.model, z, horizon, cfg, guides,
                             decode=lambda tokens, rows: self._decode(tokens, obs[rows]),
                             value=lambda states, rows: self.task.plan_value(states, goal[rows],
                                                                             frame_stack=self.frame_stack),
                             generator=generator, init=init, z_now=z_now,
                             token_box=self.token_box() if cfg.clip_actions else None)
        plan = self._to_plan(SampleResult(tokens=result.tokens, z_end=None, objective=None), obs,
                             time.perf_counter() - t0)
        plan.info.update(value=result.value, solved=result.solved, expansions=result.expansions,
                         evaluations=result.evaluations, rounds=result.rounds, sampler_calls=result.calls)
        return plan

    def token_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) [token_dim], normalized: the task's action box on a token's action entries, ±inf on its
        states (what `clip_actions` clamps each clean estimate into)."""
        if self._token_box is None:
            low, high = (self.task or Task).action_bounds  # no task named: the default box
            act = self.normalizer.norm_act(torch.tensor([[low] * self.act_dim, [high] * self.act_dim],
                                                        device=self.device))
            inf = torch.full((self.model.cfg.obs_dim,), torch.inf, device=self.device)
            self._token_box = (torch.cat([act[0], -inf]).repeat(self.frame_stack),
                               torch.cat([act[1], inf]).repeat(self.frame_stack))
        return self._token_box

    def objective_builder(self, name: str | None = None):
        """goal -> objective for a guidance objective of the planner's task, by name (None: the tuned one; the
        straight line when the checkpoint names no task). Kept per name: a builder may cache per goal (the geodesic
        one's fields cost more than a plan), and the MPC controller shares it."""
        name = self.settings.controller.objective if name is None else name
        if name not in self._builders:
            if self.task is not None:
                self._builders[name] = self.task.objective(name)
            elif name in (None, "goal_distance"):
                self._builders[name] = lambda goal: goal_distance(goal, self.goal_dims)
            else:
                raise UserError(f"objective={name!r} needs the task the checkpoint was made for, and it names none")
        return self._builders[name]

    def default_objective(self):
        """goal -> objective: the checkpoint's tuned guidance objective."""
        return self.objective_builder()

    def _token_objective(self, objective: Objective, obs: torch.Tensor):
        def token_objective(tokens: torch.Tensor) -> torch.Tensor:
            actions, states = self._decode(tokens, obs)
            return objective(states, actions)

        return token_objective

    def _decode(self, tokens: torch.Tensor, obs: torch.Tensor):
        actions, next_obs = from_tokens(tokens, self.frame_stack, self.act_dim)
        actions = self.normalizer.denorm_act(actions)
        states = torch.cat([self._planned(obs)[:, None], self.normalizer.denorm_obs(next_obs)], dim=1)
        return actions, whole_states(states, obs, self.state_dims)

    def _to_plan(self, result: SampleResult, obs: torch.Tensor, seconds: float) -> Plan:
        actions, states = self._decode(result.tokens, obs)
        info = {"seconds": seconds, "tokens": result.tokens.detach()}
        if result.z_end is not None:
            info["z_end"] = result.z_end
        if result.objective is not None:
            info["objective"] = result.objective
        return Plan(actions=actions.detach(), states=states.detach(), info=info)

    # --- causal rollouts -----------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, obs0: torch.Tensor, n_tokens: int, stabilize: bool = True,
                generator: torch.Generator | None = None, steps: int | None = None) -> Plan:
        """Sample token by token for any length, each new token conditioned on the past through the latent.

        stabilize=True feeds each finished token back at the small stabilization noise level (Diffusion
        Forcing); False feeds it back clean (the teacher-forcing style that compounds errors).
        """
        obs0 = torch.as_tensor(obs0, dtype=torch.float32, device=self.device)
        z = self.initial_latent(obs0)
        level = self.sampler.stabilization_level if stabilize else 0
        cfg = replace(self.sampler, schedule="full_sequence", guidance_scale=0.0, stabilization_level=level,
                      ddim_steps=steps or self.sampler.ddim_steps, warm_start_step=0)
        tokens = []
        t0 = time.perf_counter()
        for _ in range(n_tokens):
            result = sample(self.model, z, 1, cfg, None, generator, return_latent=True)
            tokens.append(result.tokens)
            z = result.z_end
        out = SampleResult(tokens=torch.cat(tokens, dim=1), z_end=z, objective=None)
        return self._to_plan(out, obs0, time.perf_counter() - t0)


def load_df_planner(checkpoint, device: str | torch.device = "auto", ema: bool = True, **overrides) -> DFPlanner:
    """A `DFPlanner` from a DF checkpoint file or a shipped name, its tuned settings replaced by `overrides`
    (`dfplan.settings`). `dfplan.load_planner` takes a checkpoint of any planning method."""
    loaded = load_model(checkpoint, MODEL_TYPE, ema=ema)
    settings = resolve_settings(loaded.checkpoint.get("planner"), **overrides)
    return DFPlanner(loaded.model, loaded.normalizer, settings, device=device, task=loaded.task, meta=loaded.meta,
                     state_dims=loaded.checkpoint.get("state_dims"), env_obs_dim=loaded.checkpoint.get("env_obs_dim"))
