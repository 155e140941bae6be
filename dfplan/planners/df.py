"""DFPlanner: guided, variable-horizon planning with the causal Diffusion Forcing model."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from dfplan.data import Normalizer
from dfplan.guidance import Objective, goal_distance
from dfplan.models import DFRNN, from_tokens
from dfplan.planners.df_sampler import SampleResult, SamplerConfig, feed_context, sample
from dfplan.types import Plan


def check_finite(name: str, x: torch.Tensor, shape_hint: str, dim: int | None = None) -> None:
    if x.dim() != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{name} must be {shape_hint}, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values: {x[~torch.isfinite(x).all(-1)][:3].tolist()}")


class DFPlanner:
    """Plans with a trained DFRNN. Inputs and outputs are raw env units; normalization happens inside.

    `plan(obs, goal, horizon)` starts from the observation alone; `plan_from(z, ...)` starts from a latent
    that already holds history (the MPC controller's memory). `objective` overrides the default goal-distance
    objective with any differentiable `f(states [B,H+1,Ds], actions [B,H,Da]) -> [B]`.
    """

    def __init__(self, model: DFRNN, normalizer: Normalizer, sampler: SamplerConfig | None = None,
                 device: str | torch.device = "cpu", default_horizon: int = 32):
        from dfplan.devices import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.sampler = sampler or SamplerConfig()
        self.obs_dim, self.act_dim = model.cfg.obs_dim, model.cfg.act_dim
        self.frame_stack = model.cfg.frame_stack
        self.default_horizon = default_horizon

    # --- latents -------------------------------------------------------------------------------
    @torch.no_grad()
    def initial_latent(self, obs: torch.Tensor) -> torch.Tensor:
        """Latent from raw observations [B, Ds]."""
        check_finite("obs", obs, f"[B, {self.obs_dim}]", self.obs_dim)
        return self.model.init_state(self.normalizer.norm_obs(obs.to(self.device, torch.float32)))

    @torch.no_grad()
    def advance_latent(self, z: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Feed executed steps (raw actions [B, fs*n, Da], observations after them [B, fs*n, Ds]) as context."""
        steps = torch.cat([self.normalizer.norm_act(actions.to(self.device)),
                           self.normalizer.norm_obs(next_obs.to(self.device))], dim=-1)
        tokens = steps.reshape(steps.shape[0], -1, self.model.cfg.token_dim)
        noise = torch.randn(tokens.shape, device=self.device, generator=generator)
        return feed_context(self.model, tokens, z, self.sampler.stabilization_level, noise)

    # --- planning ------------------------------------------------------------------------------
    def plan(self, obs: torch.Tensor, goal: torch.Tensor | None = None, horizon: int | None = None,
             objective: Objective | None = None, generator: torch.Generator | None = None, **overrides) -> Plan:
        """obs [B, Ds], goal [B, 2] raw; `horizon` in tokens (any length >= 1). Returns a Plan in env steps."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.plan_from(self.initial_latent(obs), obs, goal, horizon, objective, generator, **overrides)

    def plan_from(self, z: torch.Tensor, obs: torch.Tensor, goal: torch.Tensor | None = None,
                  horizon: int | None = None, objective: Objective | None = None,
                  generator: torch.Generator | None = None, init: torch.Tensor | None = None, **overrides) -> Plan:
        """Plan after latent z [B, Hz], whose last observed state is obs [B, Ds] (raw). `init`: normalized tokens
        of a previous plan (`plan.info["tokens"]`, already shifted to start now) to warm-start from, used when
        the sampler's `warm_start_step` > 0."""
        t0 = time.perf_counter()
        horizon = self.default_horizon if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 token, got {horizon}")
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        check_finite("obs", obs, f"[B, {self.obs_dim}]", self.obs_dim)
        if objective is None and goal is not None:
            goal = torch.as_tensor(goal, dtype=torch.float32, device=self.device)
            check_finite("goal", goal, "[B, 2]")
            if goal.shape != (obs.shape[0], 2):
                raise ValueError(f"goal must be [B, 2] = [{obs.shape[0]}, 2] (x, y), got shape {tuple(goal.shape)}")
            objective = goal_distance(goal)
        cfg = replace(self.sampler, **overrides) if overrides else self.sampler
        token_objective = None if objective is None else self._token_objective(objective, obs)
        result = sample(self.model, z.to(self.device), horizon, cfg, token_objective, generator, init=init)
        return self._to_plan(result, obs, time.perf_counter() - t0)

    def _token_objective(self, objective: Objective, obs: torch.Tensor):
        def token_objective(tokens: torch.Tensor) -> torch.Tensor:
            actions, states = self._decode(tokens, obs)
            return objective(states, actions)

        return token_objective

    def _decode(self, tokens: torch.Tensor, obs: torch.Tensor):
        actions, next_obs = from_tokens(tokens, self.frame_stack, self.act_dim)
        actions = self.normalizer.denorm_act(actions)
        states = torch.cat([obs[:, None], self.normalizer.denorm_obs(next_obs)], dim=1)
        return actions, states

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
                      steps=steps or self.sampler.steps)
        tokens = []
        t0 = time.perf_counter()
        for _ in range(n_tokens):
            result = sample(self.model, z, 1, cfg, None, generator, return_latent=True)
            tokens.append(result.tokens)
            z = result.z_end
        out = SampleResult(tokens=torch.cat(tokens, dim=1), z_end=z, objective=None)
        return self._to_plan(out, obs0, time.perf_counter() - t0)


def load_planner(checkpoint, device: str | torch.device = "auto", ema: bool = True, **sampler_overrides):
    """A ready planner from a checkpoint file: `dfplan.load_planner("ckpt.pt").plan(obs, goal, horizon)`."""
    from dfplan.checkpoint import CheckpointError, load_checkpoint
    from dfplan.models import build_model

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt["model_type"], **ckpt["model_config"])
    model.load_state_dict(ckpt["ema" if ema else "model"])
    normalizer = Normalizer.from_state_dict(ckpt["normalizer"])
    if ckpt["model_type"] == "diffuser":
        from dfplan.planners.diffuser import DiffuserPlanner

        return DiffuserPlanner(model, normalizer, device=device)
    if ckpt["model_type"] != "df_rnn":
        raise CheckpointError(f"{checkpoint}: no planner for model type {ckpt['model_type']!r}")
    planner_cfg = ckpt.get("planner", {})
    sampler = SamplerConfig(**{**planner_cfg.get("sampler", {}), **sampler_overrides})
    return DFPlanner(model, normalizer, sampler, device=device,
                     default_horizon=int(planner_cfg.get("horizon", 32)))
