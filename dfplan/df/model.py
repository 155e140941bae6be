"""The causal, RNN-based Diffusion Forcing model (Chen et al. 2024, its RNN variant).

Every token carries its own noise level k. The latent z summarizes the (noisy) past. Two cells:
`cell="gru"` (ours) — token and latent meet only inside the GRU gates:
    z_0       = init_net(o_0)
    h_t       = in_net([x_t^{k_t}, emb(k_t)])
    z_{t+1}   = GRU(h_t, z_t)
    pred_t    = out_net([z_{t+1}, emb(k_t)])      # x0 (default), eps or v of token t
`in_net` and `out_net` act on all tokens at once; only the GRU is sequential (one fused nn.GRU call),
which matters on CPU where small-batch planning is bound by per-op overhead.
`cell="resmlp_gru"` (the paper code's `TransitionMlp`) — a residual MLP sees the latent and the token together:
    z_{t+1}   = res_after(GRUCell(res_before([z_t, x_t^{k_t}, emb(k_t)]), z_t))
    pred_t    = readout(z_{t+1})
every step needs the previous latent before its first layer, so this cell runs token by token.
The sampler gives the level embedding itself (`forward_emb`): all batch rows share the tokens' levels there, so it
embeds each distinct level once per plan instead of every token at every DDIM step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfplan.df.tokens import to_tokens, token_mask
from dfplan.diffusion import NoiseSchedule, make_noise_schedule, q_sample, target_for, to_x0
from dfplan.types import ModelType


@dataclass
class DFConfig:
    obs_dim: int
    act_dim: int
    frame_stack: int = 4  # env steps per token
    hidden: int = 256  # GRU latent size
    mlp_hidden: int = 256  # width of the input/output MLPs
    emb_dim: int = 64  # noise-level embedding size
    num_levels: int = 1000  # K, diffusion noise levels
    noise_schedule: str = "linear"  # linear | cosine | sigmoid
    prediction: str = "x0"  # what the network predicts: x0 | eps | v
    action_weight: float = 1.0  # loss weight of the action dims against the observation dims (1 = plain mean)
    cell: str = "gru"  # gru (ours: token and latent meet in the GRU gates) | resmlp_gru (the paper's coupling)
    mlp_blocks: int = 4  # resmlp_gru: layers of each residual MLP (the paper's num_mlp_layers)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"model cell must be one of {CELLS}, got {self.cell!r}")
        if self.mlp_blocks < 2:
            raise ValueError(f"mlp_blocks must be >= 2, got {self.mlp_blocks}")

    @property
    def token_dim(self) -> int:
        return self.frame_stack * (self.obs_dim + self.act_dim)


CELLS = ("gru", "resmlp_gru")


def sinusoidal(levels: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=levels.device) / half)
    angles = levels.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_hidden), nn.SiLU(),
                         nn.Linear(d_hidden, d_out))


class ResBlock(nn.Module):
    """x -> skip(x) + W2 gelu(W1 x): the paper code's `ResBlock1d` for vectors."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))
        self.skip = nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)

    def forward(self, x):
        return F.gelu(self.skip(x) + self.net(x))


def res_mlp(d_in: int, width: int, d_out: int, layers: int) -> nn.Sequential:
    """`layers - 1` residual blocks of `width`, then a linear map to `d_out` (the paper's num_mlp_layers)."""
    blocks = [ResBlock(d_in if i == 0 else width, width) for i in range(layers - 1)]
    return nn.Sequential(*blocks, nn.Linear(width, d_out))


class ResMLPGRUCell(nn.Module):
    """The paper's coupling: z_{t+1} = after(GRUCell(before([z_t, x_t, emb_t]), z_t)); pred_t = readout(z_{t+1})."""

    def __init__(self, cfg: "DFConfig"):
        super().__init__()
        self.before = res_mlp(cfg.hidden + cfg.token_dim + cfg.emb_dim, cfg.mlp_hidden, cfg.hidden, cfg.mlp_blocks)
        self.gru = nn.GRUCell(cfg.hidden, cfg.hidden)
        self.after = res_mlp(cfg.hidden, cfg.mlp_hidden, cfg.hidden, cfg.mlp_blocks)
        self.readout = nn.Linear(cfg.hidden, cfg.token_dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, z: torch.Tensor):
        """Tokens x [B, T, D], level embeddings emb [B, T, E], latent z [B, H] -> (outputs [B, T, D], z_T)."""
        zs = []
        for t in range(x.shape[1]):
            z = self.after(self.gru(self.before(torch.cat([z, x[:, t], emb[:, t]], dim=-1)), z))
            zs.append(z)
        return self.readout(torch.stack(zs, dim=1)), z


class DFRNN(nn.Module):
    def __init__(self, cfg: DFConfig):
        super().__init__()
        self.cfg = cfg
        alphas_bar = make_noise_schedule(cfg.noise_schedule, cfg.num_levels).alphas_bar
        self.register_buffer("alphas_bar", alphas_bar, persistent=False)
        emb = cfg.emb_dim
        self.level_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.init_net = mlp(cfg.obs_dim, cfg.mlp_hidden, cfg.hidden)
        if cfg.cell == "gru":
            self.in_net = mlp(cfg.token_dim + cfg.emb_dim, cfg.mlp_hidden, cfg.mlp_hidden)
            self.gru = nn.GRU(cfg.mlp_hidden, cfg.hidden, batch_first=True)
            self.out_net = mlp(cfg.hidden + cfg.emb_dim, cfg.mlp_hidden, cfg.token_dim)
        else:
            self.paper_cell = ResMLPGRUCell(cfg)
        # per token dim: each frame is [action, observation]; weights sum to 1 (plain mean when action_weight = 1)
        frame = torch.cat([torch.full((cfg.act_dim,), float(cfg.action_weight)), torch.ones(cfg.obs_dim)])
        weights = frame.repeat(cfg.frame_stack)
        self.register_buffer("dim_weights", weights / weights.sum(), persistent=False)

    def _apply(self, fn, *args, **kwargs):
        # after .to()/.cuda()/.half() put the GRU weights back into one chunk, as cuDNN wants them
        out = super()._apply(fn, *args, **kwargs)
        if self.cfg.cell == "gru":
            self.gru.flatten_parameters()
        return out

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.alphas_bar)

    # --- the causal step ------------------------------------------------------------------------
    def init_state(self, obs0: torch.Tensor) -> torch.Tensor:
        """Latent before the first token, from the (normalized) first observation: [B, Ds] -> [B, H]."""
        return self.init_net(obs0)

    def level_emb(self, k: torch.Tensor) -> torch.Tensor:
        """Noise-level embedding: levels k [...] -> [..., emb_dim]."""
        return self.level_mlp(sinusoidal(k, self.cfg.emb_dim))

    def forward_raw(self, x: torch.Tensor, k: torch.Tensor, z: torch.Tensor):
        """Network output (in its own parameterization) for tokens x [B, T, D] at levels k [B, T]; -> (out, z_T)."""
        return self.forward_emb(x, self.level_emb(k), z)

    def forward_emb(self, x: torch.Tensor, emb: torch.Tensor, z: torch.Tensor):
        """`forward_raw` given the level embedding `level_emb(k)`: [B, T, E], or [T, E] shared by the batch."""
        if emb.dim() == 2:
            emb = emb.expand(x.shape[0], -1, -1)
        if self.cfg.cell == "resmlp_gru":
            return self.paper_cell(x, emb, z)
        h = self.in_net(torch.cat([x, emb], dim=-1))
        zs, z_last = self.gru(h, z.unsqueeze(0).contiguous())
        out = self.out_net(torch.cat([zs, emb], dim=-1))
        return out, z_last.squeeze(0)

    def forward_seq(self, x: torch.Tensor, k: torch.Tensor, z: torch.Tensor):
        """x0 estimates for noisy tokens x [B, T, D] at levels k [B, T] after latent z; -> (x0_hat, z_T)."""
        out, z_next = self.forward_raw(x, k, z)
        return to_x0(self.cfg.prediction, out, x, k, self.schedule), z_next

    def step(self, x_k: torch.Tensor, k: torch.Tensor, z: torch.Tensor):
        """One token: x_k [B, D] at levels k [B] -> (x0_hat [B, D], z_next [B, H])."""
        x0, z_next = self.forward_seq(x_k[:, None], k[:, None], z)
        return x0[:, 0], z_next

    # --- training -----------------------------------------------------------------------------
    def loss(self, obs0: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, generator=None) -> torch.Tensor:
        """Diffusion Forcing loss: every token gets its own random level; masked past episode ends."""
        B, T, _ = tokens.shape
        k = torch.randint(1, self.cfg.num_levels + 1, (B, T), device=tokens.device, generator=generator)
        noise = torch.randn(tokens.shape, device=tokens.device, generator=generator)
        x_k = q_sample(tokens, k, noise, self.schedule)
        out, _ = self.forward_raw(x_k, k, self.init_state(obs0))
        target = target_for(self.cfg.prediction, tokens, noise, k, self.schedule)
        per_token = (F.mse_loss(out, target, reduction="none") * self.dim_weights).sum(-1)
        m = mask.float()
        return (per_token * m).sum() / m.sum().clamp(min=1.0)

    def batch_loss(self, batch, generator=None) -> torch.Tensor:
        """Loss on a `Batch` of normalized windows (tokenized here)."""
        fs = self.cfg.frame_stack
        tokens = to_tokens(batch.obs, batch.actions, fs)
        return self.loss(batch.obs[:, 0], tokens, token_mask(batch.mask, fs), generator)

    def forward(self, batch) -> torch.Tensor:
        return self.batch_loss(batch)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


MODEL_TYPE = ModelType("df_rnn", DFRNN, DFConfig, train_hint="dfplan-train env=<task>")
