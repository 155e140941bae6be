"""Diffuser (Janner et al. 2022): a temporal U-Net that denoises whole trajectories at once.

A trajectory is x = [a_t, s_t] for t = 0..H-1 ([B, H, Da + Ds]): the action is the one taken *at* state s_t.
All steps share one noise level k (1..K, cosine betas). Goals enter by inpainting: the first state and, for
maze2d, the last state are overwritten with their known values, in training (before the network sees x_k)
and after every denoising step at sampling time. The network predicts x0 (maze2d setting) or eps.

Architecture as in the original maze2d models: Conv1d(kernel 5) blocks with GroupNorm(8) + Mish, a residual
pair of blocks per resolution with the noise-level embedding added after the first conv, stride-2 Conv1d
down-sampling, ConvTranspose1d up-sampling, channels dim * dim_mults, no attention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfplan.diffusion import NoiseSchedule, ddpm_step, make_noise_schedule, q_sample, target_for, to_x0
from dfplan.types import ModelType


@dataclass
class DiffuserConfig:
    obs_dim: int
    act_dim: int
    horizon: int = 128  # H, env steps (states) per trajectory; divisible by 2 ** (len(dim_mults) - 1)
    n_diffusion_steps: int = 64  # K, DDPM noise levels (also the number of sampling steps)
    dim: int = 32  # channels at the finest resolution
    dim_mults: tuple = (1, 4, 8)  # channel multipliers per resolution
    kernel_size: int = 5  # temporal conv kernel
    n_groups: int = 8  # GroupNorm groups
    prediction: str = "x0"  # what the network predicts: x0 (Diffuser's maze2d setting) | eps
    action_weight: float = 1.0  # loss weight of the first action (maze2d config: 1; locomotion: 10)
    loss_discount: float = 1.0  # step t of the loss is weighted by discount**t (normalized to mean 1)
    clip_denoised: bool = True  # clamp x0 estimates to [-1, 1] while sampling (min-max normalized data)
    condition_last: bool = True  # inpaint the last state too (maze2d goal); False = first state only

    def __post_init__(self):
        self.dim_mults = tuple(int(m) for m in self.dim_mults)
        if not self.dim_mults:
            raise ValueError("dim_mults must name at least one resolution")
        factor = 2 ** (len(self.dim_mults) - 1)
        if self.horizon < 2 or self.horizon % factor:
            raise ValueError(f"horizon {self.horizon} must be >= 2 and divisible by 2**(len(dim_mults)-1) = {factor} "
                             f"(dim_mults={list(self.dim_mults)})")
        for channels in (self.dim * m for m in self.dim_mults):
            if channels % self.n_groups:
                raise ValueError(f"channels dim*mult = {channels} are not divisible by n_groups = {self.n_groups}")
        if self.n_diffusion_steps < 1:
            raise ValueError(f"n_diffusion_steps must be >= 1, got {self.n_diffusion_steps}")
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"prediction must be 'x0' or 'eps', got {self.prediction!r}")

    @property
    def transition_dim(self) -> int:
        return self.act_dim + self.obs_dim


# --- building blocks ----------------------------------------------------------------------------------

def sinusoidal_embedding(k: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] levels -> [B, dim] (Diffuser's SinusoidalPosEmb: frequencies from 1 down to 1/10000)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=k.device) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = k.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish on [B, C, T]; 'same' padding keeps T."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.Mish())


class ResidualTemporalBlock(nn.Module):
    """Two conv blocks; the level embedding is added (per channel) after the first; 1x1 conv on the skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel_size, n_groups)
        self.level_mlp = nn.Sequential(nn.Mish(), nn.Linear(emb_dim, c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x [B, c_in, T], emb [B, emb_dim] -> [B, c_out, T]."""
        h = self.block1(x) + self.level_mlp(emb)[:, :, None]
        return self.block2(h) + self.skip(x)


class TemporalUnet(nn.Module):
    """[B, T, transition_dim] noisy trajectories + [B] levels -> [B, T, transition_dim]; T divisible by 2**(R-1)."""

    def __init__(self, transition_dim: int, dim: int = 32, dim_mults=(1, 4, 8), kernel_size: int = 5,
                 n_groups: int = 8):
        super().__init__()
        dims = [transition_dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.n_down = len(in_out) - 1  # halvings of T; the coarsest resolution is not down-sampled
        block = lambda a, b: ResidualTemporalBlock(a, b, dim, kernel_size, n_groups)  # noqa: E731
        self.level_mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))
        self.dim = dim

        self.downs = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            down = nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)
            self.downs.append(nn.ModuleList([block(c_in, c_out), block(c_out, c_out), down]))

        mid = dims[-1]
        self.mid1, self.mid2 = block(mid, mid), block(mid, mid)

        # As in the original, the up path skips the finest resolution's features: its skips come from the
        # coarser levels, and each up-sampling brings T back one level.
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            up = nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1)
            self.ups.append(nn.ModuleList([block(c_out * 2, c_in), block(c_in, c_in), up]))

        self.final = nn.Sequential(Conv1dBlock(dim, dim, kernel_size, n_groups), nn.Conv1d(dim, transition_dim, 1))

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T % (2 ** self.n_down):
            raise ValueError(f"trajectory length {T} must be divisible by {2 ** self.n_down} for this U-Net")
        emb = self.level_mlp(sinusoidal_embedding(k, self.dim))
        h = x.transpose(1, 2)  # [B, C, T]: convolve over time
        skips = []
        for res1, res2, down in self.downs:
            h = res2(res1(h, emb), emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for res1, res2, up in self.ups:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, emb), emb))
        return self.final(h).transpose(1, 2)


# --- the diffusion model --------------------------------------------------------------------------------

def apply_conditioning(x: torch.Tensor, first: torch.Tensor, last: torch.Tensor | None, act_dim: int) -> torch.Tensor:
    """Inpainting: a copy of x [B, H, Da+Ds] with the state part of step 0 set to `first` [B, Ds] and,
    if given, that of step H-1 set to `last` [B, Ds]. Out of place, so gradients still flow elsewhere."""
    x = x.clone()
    x[:, 0, act_dim:] = first
    if last is not None:
        x[:, -1, act_dim:] = last
    return x


class DiffuserModel(nn.Module):
    def __init__(self, cfg: DiffuserConfig):
        super().__init__()
        self.cfg = cfg
        self.net = TemporalUnet(cfg.transition_dim, cfg.dim, cfg.dim_mults, cfg.kernel_size, cfg.n_groups)
        schedule = make_noise_schedule("cosine", cfg.n_diffusion_steps)
        self.register_buffer("alphas_bar", schedule.alphas_bar, persistent=False)
        self.register_buffer("loss_weights", self._loss_weights(), persistent=False)

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.alphas_bar)

    @property
    def horizon(self) -> int:
        return self.cfg.horizon

    def _loss_weights(self) -> torch.Tensor:
        """[H, Da+Ds]: discount**t per step (mean 1), and `action_weight` on the first action (Diffuser's a0 weight)."""
        c = self.cfg
        discounts = c.loss_discount ** torch.arange(c.horizon, dtype=torch.float32)
        w = (discounts / discounts.mean())[:, None].repeat(1, c.transition_dim)
        w[0, : c.act_dim] = c.action_weight
        return w

    # --- network ---------------------------------------------------------------------------------
    def predict_x0(self, x_k: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """x0 estimate for noisy trajectories x_k [B, H, D] at levels k [B] (before any clipping)."""
        out = self.net(x_k, k)
        return to_x0(self.cfg.prediction, out, x_k, k[:, None].expand(x_k.shape[:2]), self.schedule)

    def conditions(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inpainted values from normalized states [B, H, Ds]: (first [B, Ds], last [B, Ds] or None)."""
        return states[:, 0], (states[:, -1] if self.cfg.condition_last else None)

    # --- training ----------------------------------------------------------------------------------
    def trajectories(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 [B, H, Da+Ds], valid [B, H, Da+Ds]) from a `Batch` with at least H steps.

        Action t is valid where the step lies in the run (mask[t]); state t where it was observed
        (t = 0, or step t-1 in the run). Entries past a run's end are padding and get no loss."""
        H, B = self.cfg.horizon, batch.obs.shape[0]
        if batch.actions.shape[1] < H:
            raise ValueError(f"windows of {batch.actions.shape[1]} steps are shorter than the Diffuser horizon {H}; "
                             f"set train.window_steps >= {H}")
        states, actions, mask = batch.obs[:, :H], batch.actions[:, :H], batch.mask[:, :H]
        state_ok = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1)
        valid = torch.cat([mask[..., None].expand(B, H, self.cfg.act_dim),
                           state_ok[..., None].expand(B, H, self.cfg.obs_dim)], dim=-1)
        return torch.cat([actions, states], dim=-1), valid

    def loss(self, x0: torch.Tensor, valid: torch.Tensor, generator=None) -> torch.Tensor:
        """Diffuser's weighted L2 loss on clean normalized trajectories x0 [B, H, D] (one level per trajectory)."""
        B, H, _ = x0.shape
        Da = self.cfg.act_dim
        k = torch.randint(1, self.cfg.n_diffusion_steps + 1, (B,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        k_steps = k[:, None].expand(B, H)
        first, last = self.conditions(x0[..., Da:])
        x_k = apply_conditioning(q_sample(x0, k_steps, noise, self.schedule), first, last, Da)
        out = self.net(x_k, k)
        target = target_for(self.cfg.prediction, x0, noise, k_steps, self.schedule)
        # Conditioned states are known, not predicted: overwriting them (as the original does for x0) zeroes
        # their error; for eps we drop them instead, since their "noise" was never added.
        free = apply_conditioning(torch.ones_like(x0), torch.zeros_like(first),
                                  None if last is None else torch.zeros_like(last), Da)
        err = F.mse_loss(out, target, reduction="none") * self.loss_weights * free
        m = valid.to(err.dtype)
        return (err * m).sum() / m.sum().clamp(min=1.0)

    def batch_loss(self, batch, generator=None) -> torch.Tensor:
        """Loss on a `Batch` of normalized windows (obs [B, L+1, Ds], actions [B, L, Da], L >= H)."""
        x0, valid = self.trajectories(batch)
        return self.loss(x0, valid, generator)

    def forward(self, batch) -> torch.Tensor:
        return self.batch_loss(batch)

    # --- sampling ----------------------------------------------------------------------------------
    def p_sample(self, x_k: torch.Tensor, k: int, first: torch.Tensor, last: torch.Tensor | None,
                 generator=None) -> torch.Tensor:
        """One DDPM step from level k to k-1 (ancestral, posterior q(x_{k-1} | x_k, x0_hat)), then re-inpaint."""
        B = x_k.shape[0]
        levels = torch.full((B,), k, device=x_k.device, dtype=torch.long)
        x0 = self.predict_x0(x_k, levels)
        if self.cfg.clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        noise = torch.randn(x_k.shape, device=x_k.device, generator=generator, dtype=x_k.dtype) if k > 1 else None
        mean = ddpm_step(x_k, x0, k, self.schedule, noise)
        return apply_conditioning(mean, first, last, self.cfg.act_dim)

    @torch.no_grad()
    def sample(self, first: torch.Tensor, last: torch.Tensor | None, generator=None) -> torch.Tensor:
        """The full reverse chain (K steps) conditioned on normalized first/last states [B, Ds] -> x0 [B, H, D]."""
        B, c = first.shape[0], self.cfg
        x = torch.randn((B, c.horizon, c.transition_dim), device=first.device, generator=generator)
        x = apply_conditioning(x, first, last, c.act_dim)
        for k in range(c.n_diffusion_steps, 0, -1):
            x = self.p_sample(x, k, first, last, generator)
        return x

    def config_dict(self) -> dict:
        return asdict(self.cfg)


MODEL_TYPE = ModelType("diffuser", DiffuserModel, DiffuserConfig,
                       train_hint="dfplan-train model=diffuser train=diffuser_cpu")
