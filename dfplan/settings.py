"""The DF planner's and controller's settings: one home, typed, validated, stored in checkpoints.

Every place that plans (the CLI, the Python API, the benchmarks) gets its settings from `resolve_settings`:
the values tuned for a checkpoint (stored in it by `dfplan.checkpoint.export_for_inference`), then the
caller's explicit overrides, each checked once here. Override keys are flat (`guidance_scale=0.5`,
`horizon=16`): every field name is unique across the two groups.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from dfplan.errors import UserError, check_bool, check_choice, check_float, check_int, choices_hint
from dfplan.schedules import SCHEDULES

GUIDANCE_RULES = ("eps", "paper")
GUIDED_DIMS = ("all", "actions")
EXECUTIONS = ("actions", "lowlevel", "track")
SEARCHES = ("none", "mctd")
SEARCH_STOPS = ("solved", "budget")
RANKS = ("objective", "value")
OBJECT_CHOICES = ("given", "search", "random")  # how the MPC controller picks the object to move (search.objects)


@dataclass(frozen=True)
class SamplerSettings:
    """How one plan is sampled (`dfplan.df.sampler.sample`)."""

    ddim_steps: int = 10  # DDIM steps per token
    schedule: str = "pyramid"  # scheduling matrix: pyramid | full_sequence | autoregressive | trapezoid
    uncertainty: float = 1.0  # pyramid/trapezoid: rows of lag per token
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic)
    stabilization_level: int = 10  # noise level (of K) at which finished tokens are fed back as context
    context_noise: bool = True  # finished tokens noised to stabilization_level; false: fed clean, labelled with it
    #   (paper code)
    guidance_scale: float = 0.0  # strength of the objective's gradient; 0 = unguided
    guidance_rule: str = "eps"  # eps: shift the predicted noise by scale*sqrt(1-ab)*grad at every step | paper: add
    #   scale*c*grad to the next DDIM sample, c = (1-ab) - sqrt(1-ab_next-sigma^2)*sqrt(1-ab) (~0 at high noise, 0 at
    #   the end)
    guided_dims: str = "all"  # all | actions: the gradient moves only the noisy actions; the states follow through
    #   the model, so planned states stay ones the planned actions reach
    guide_last_step: bool = True  # false: each token's last DDIM step is unguided: its clean state and action are the
    #   model's own prediction (the eps rule there moves the clean states directly, not the actions)
    mc_samples: int = 1  # Monte Carlo Guidance samples R (1 = plain guidance)
    candidates: int = 1  # guided plans sampled per env; the one `rank` scores best is kept (1 = one plan)
    rank: str = "objective"  # candidates: by the guidance objective | value: by the task's plan value (search's)
    clip_x0: float = 10.0  # clamp predicted clean tokens (normalized units) for numerical safety
    clip_actions: bool = False  # clamp the planned actions to the env's action box at every DDIM step, so guidance
    #   cannot plan actions the env would clip and the planned states stay ones the env reaches
    warm_start_step: int = 0  # > 0: a previous plan's rest starts re-noised at this DDIM step (0 = off)
    temperature: float = 1.0  # scale of the starting noise: 1 samples the data's behaviour, < 1 leans to its mean
    history_guidance: float = 1.0  # with memory: x0 = x0_now + w*(x0_hist - x0_now), hist = after the executed history,
    #   now = from the current observation alone; 1 = plain memory (one prediction), 0 = memoryless, > 1 = more history
    search: str = "none"  # none | mctd: Monte Carlo Tree Diffusion over the schedule's rows (dfplan.search); mctd
    #   replaces candidates
    search_expansions: int = 100  # mctd: tree nodes expanded per plan (each: a block of rows, then a jumpy simulation)
    search_seconds: float | None = None  # mctd: wall-clock budget per plan call (not reproducible); None = none
    search_block: int | None = None  # mctd: schedule rows per tree level; None = the rows split into 3 levels
    search_jump: int = 10  # mctd: a simulation denoises every search_jump-th remaining row to a clean plan
    search_parallel: int = 5  # mctd: expansions per round and tree, chosen with virtual visits, denoised as one batch
    search_stop: str = "solved"  # mctd: solved = a tree stops at its first plan that solves the task (MCTD's rule) |
    #   budget = it spends its whole budget and keeps the best plan (a plan's "solving" is imagined: with replanning,
    #   only its first steps are executed)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalize types once)
        set_("ddim_steps", check_int("ddim_steps", self.ddim_steps, 1))
        check_choice("schedule", self.schedule, SCHEDULES)
        set_("uncertainty", check_float("uncertainty", self.uncertainty, 0.0))
        set_("eta", check_float("eta", self.eta, 0.0))
        set_("stabilization_level", check_int("stabilization_level", self.stabilization_level, 0))
        set_("guidance_scale", check_float("guidance_scale", self.guidance_scale, 0.0))
        check_choice("guidance_rule", self.guidance_rule, GUIDANCE_RULES)
        set_("context_noise", check_bool("context_noise", self.context_noise))
        check_choice("guided_dims", self.guided_dims, GUIDED_DIMS)
        set_("guide_last_step", check_bool("guide_last_step", self.guide_last_step))
        set_("mc_samples", check_int("mc_samples", self.mc_samples, 1))
        set_("candidates", check_int("candidates", self.candidates, 1))
        check_choice("rank", self.rank, RANKS)
        set_("clip_x0", check_float("clip_x0", self.clip_x0, 0.0))
        set_("clip_actions", check_bool("clip_actions", self.clip_actions))
        set_("warm_start_step", check_int("warm_start_step", self.warm_start_step, 0))
        set_("temperature", check_float("temperature", self.temperature, 0.0))
        set_("history_guidance", check_float("history_guidance", self.history_guidance))
        check_choice("search", self.search, SEARCHES)
        set_("search_expansions", check_int("search_expansions", self.search_expansions, 1))
        if self.search_seconds is not None:
            set_("search_seconds", check_float("search_seconds", self.search_seconds, 0.0))
        set_("search_block", check_int("search_block", self.search_block, 1, allow_none=True))
        set_("search_jump", check_int("search_jump", self.search_jump, 1))
        set_("search_parallel", check_int("search_parallel", self.search_parallel, 1))
        check_choice("search_stop", self.search_stop, SEARCH_STOPS)
        if self.search == "mctd" and self.guidance_scale <= 0:
            raise UserError("search=mctd's children differ by their guidance, which guidance_scale=0 turns off: "
                            "set guidance_scale > 0")
        if self.warm_start_step > self.ddim_steps:
            raise UserError(f"warm_start_step={self.warm_start_step} must be in 0..ddim_steps={self.ddim_steps}")


@dataclass(frozen=True)
class ControllerSettings:
    """How the MPC controller uses the planner (`dfplan.df.controller.MPCController`)."""

    horizon: int = 32  # planning horizon in tokens (shrinks with the episode's remaining time)
    replan_every: int | None = None  # env steps between plans; None = one token
    memory: bool = True  # carry the RNN latent across replans (a causal rollout over the executed history)
    memory_tokens: int | None = None  # with memory: keep only the last N executed tokens; None = the whole episode
    objective: str | None = None  # guidance objective by name (the task lists them); None = the task's default
    min_horizon: int | None = None  # variable horizon: each plan gets the tokens its cost-to-go needs (that distance /
    #   token_reach), between min_horizon and horizon; None = every plan gets `horizon` tokens
    token_reach: float = 0.25  # variable horizon: cost-to-go (maze: metres of path) a plan covers per token
    execution: str = "actions"  # actions: execute the plan's own actions | lowlevel: a learned goal-conditioned policy
    #   steers toward the planned state k steps ahead (k: the policy's) | track: the task's tracking controller steers
    #   toward the next planned state
    lowlevel: str | None = None  # execution=lowlevel: the low-level policy's checkpoint (path or shipped name);
    #   None = the one shipped for the task
    subgoal_ahead: int | None = None  # execution=track: the planned state this many env steps ahead is the tracker's
    #   target (None = the next); execution=lowlevel: the policy's subgoal (1..k, the span it was trained on; None = k)
    snap_radius: float | None = None  # execution=lowlevel, or the maze tracker: an object whose planned position, or
    #   whose current one, lies within this distance of its goal is handed the goal itself (the plan is a guide; the
    #   goal is known exactly)
    grasp_align: float | None = None  # execution=lowlevel or track: the task's grasp rules refine the target (OGBench
    #   cubes: with the gripper open within this distance of a cube, the effector faces the cube's sides, the yaw
    #   nearest its own, where a plan near the data's mean can face the corners; a gripper closed on nothing is told
    #   to open) (None, 0 = off)
    revisit_cost: float = 0.0  # guidance charges each planned position this much per env step the episode already
    #   spent near it (a Gaussian of radius revisit_radius over the executed path's goal dims): plans leave a place
    #   the point keeps returning to, such as a dead end the straight line leads into; uses no map (0 = off)
    revisit_radius: float = 2.0  # revisit_cost: the Gaussian's radius, in the goal's units (maze: metres)
    blocked_cost: float = 0.0  # execution=track or lowlevel: an env step on which the task finds the point blocked
    #   (`Task.blocked`: it moved much less than its action commanded, against a wall) charges the target it was sent
    #   toward this much, like revisit_cost's visits: plans stop leading through the wall it pressed against; uses no
    #   map (0 = off)
    blocked_reach: float | None = None  # blocked_cost: the place charged lies on the way from the point to that target,
    #   at most this far from the point (the wall it pressed against, not a target beyond it that a later route may
    #   need); None = the target itself
    object_choice: str = "given"  # given: plan for the goal as the observation gives it | search: given every object's
    #   goal (OGBench cubes, goal=whole), plan choice_horizon tokens per object not yet placed and move the one whose
    #   plan the task's value ranks best until it is placed (a target another object sits on is cleared first) |
    #   random: a random one of the same moves (dfplan.search.objects)
    choice_horizon: int = 32  # object_choice=search: tokens of each compared plan
    goal: str | None = None  # the goal the env presents, one of the task's goal modes (OGBench cubes: fixed, one cube's
    #   target at a time from our subgoal layer | whole, every cube's at once, the papers' protocol); evaluation
    #   runs this one unless given another, and a plain env's goal is read this way; None = the task's default

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("horizon", check_int("horizon", self.horizon, 1))
        set_("min_horizon", check_int("min_horizon", self.min_horizon, 1, allow_none=True))
        set_("token_reach", check_float("token_reach", self.token_reach, 1e-6))
        if self.min_horizon is not None and self.min_horizon > self.horizon:
            raise UserError(f"min_horizon={self.min_horizon} must not exceed horizon={self.horizon}")
        set_("replan_every", check_int("replan_every", self.replan_every, 1, allow_none=True))
        set_("memory", check_bool("memory", self.memory))
        set_("memory_tokens", check_int("memory_tokens", self.memory_tokens, 0, allow_none=True))
        check_choice("execution", self.execution, EXECUTIONS)
        set_("subgoal_ahead", check_int("subgoal_ahead", self.subgoal_ahead, 1, allow_none=True))
        check_choice("object_choice", self.object_choice, OBJECT_CHOICES)
        set_("choice_horizon", check_int("choice_horizon", self.choice_horizon, 1))
        if self.snap_radius is not None:
            set_("snap_radius", check_float("snap_radius", self.snap_radius, 0.0))
        if self.grasp_align is not None:
            set_("grasp_align", check_float("grasp_align", self.grasp_align, 0.0))
        set_("revisit_cost", check_float("revisit_cost", self.revisit_cost, 0.0))
        set_("revisit_radius", check_float("revisit_radius", self.revisit_radius, 1e-6))
        set_("blocked_cost", check_float("blocked_cost", self.blocked_cost, 0.0))
        if self.blocked_reach is not None:
            set_("blocked_reach", check_float("blocked_reach", self.blocked_reach, 1e-6))
        if self.lowlevel is not None and not isinstance(self.lowlevel, str):
            raise UserError(f"lowlevel={self.lowlevel!r} must be a checkpoint path or shipped name")
        if self.goal is not None and not isinstance(self.goal, str):
            raise UserError(f"goal={self.goal!r} must be the name of one of the task's goal modes")
        if self.objective is not None and not isinstance(self.objective, str):
            raise UserError(f"objective={self.objective!r} must be the name of one of the task's objectives")


@dataclass(frozen=True)
class DFSettings:
    sampler: SamplerSettings = SamplerSettings()
    controller: ControllerSettings = ControllerSettings()

    def as_dict(self) -> dict:
        """The form stored in checkpoints."""
        return {"sampler": asdict(self.sampler), "controller": asdict(self.controller)}

    def flat(self) -> dict:
        return {**asdict(self.sampler), **asdict(self.controller)}


SAMPLER_KEYS = tuple(f.name for f in fields(SamplerSettings))
CONTROLLER_KEYS = tuple(f.name for f in fields(ControllerSettings))
OVERRIDE_KEYS = SAMPLER_KEYS + CONTROLLER_KEYS
_LEGACY_NAMES = {"steps": "ddim_steps"}  # checkpoints written before the settings had one home


def _from_stored(stored: dict | None) -> DFSettings:
    """Settings stored in a checkpoint (current or pre-0.2 layout, where `horizon` sat at the top level)."""
    stored = dict(stored or {})
    sampler = {_LEGACY_NAMES.get(k, k): v for k, v in stored.get("sampler", {}).items()}
    controller = dict(stored.get("controller", {}))
    if "horizon" in stored:
        controller.setdefault("horizon", stored["horizon"])
    unknown = (set(sampler) - set(SAMPLER_KEYS)) | (set(controller) - set(CONTROLLER_KEYS))
    if unknown:
        raise UserError(f"the checkpoint's planner settings hold unknown keys {sorted(unknown)}; "
                        f"re-export it with benchmarks/ship_checkpoint.py")
    return DFSettings(SamplerSettings(**sampler), ControllerSettings(**controller))


def check_keys(overrides: dict) -> None:
    """A `UserError` naming the first key of `overrides` that is no planner setting. Their values are checked once
    they meet a checkpoint's stored settings (`resolve_settings`): some are only valid together with others."""
    unknown = set(overrides) - set(OVERRIDE_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(f"unknown planner setting {key!r}{choices_hint(key, OVERRIDE_KEYS)}; "
                        f"settings: {list(OVERRIDE_KEYS)}")


def resolve_settings(stored: dict | None = None, **overrides) -> DFSettings:
    """The tuned settings of a checkpoint (`stored`, its "planner" entry), then explicit overrides; None values
    in `overrides` mean "keep the tuned value". Unknown keys and bad values raise a `UserError`."""
    base = _from_stored(stored)
    given = {k: v for k, v in overrides.items() if v is not None}
    check_keys(given)
    sampler = replace(base.sampler, **{k: v for k, v in given.items() if k in SAMPLER_KEYS})
    controller = replace(base.controller, **{k: v for k, v in given.items() if k in CONTROLLER_KEYS})
    return DFSettings(sampler, controller)
