"""State-action tokens: token t stacks `frame_stack` env steps, each step as [a_j, o_{j+1}]."""

from __future__ import annotations

import torch


def to_tokens(obs: torch.Tensor, actions: torch.Tensor, frame_stack: int) -> torch.Tensor:
    """obs [B, L+1, Ds], actions [B, L, Da] -> tokens [B, L // frame_stack, frame_stack * (Da + Ds)]."""
    B, L, _ = actions.shape
    if obs.shape[1] != L + 1:
        raise ValueError(f"need L+1 = {L + 1} observations for {L} actions, got {obs.shape[1]}")
    if L % frame_stack:
        raise ValueError(f"{L} steps do not split into tokens of frame_stack={frame_stack}")
    steps = torch.cat([actions, obs[:, 1:]], dim=-1)
    return steps.reshape(B, L // frame_stack, -1)


def from_tokens(tokens: torch.Tensor, frame_stack: int, act_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [B, T, D] -> (actions [B, T*fs, Da], next observations [B, T*fs, Ds])."""
    B, T, D = tokens.shape
    steps = tokens.reshape(B, T * frame_stack, D // frame_stack)
    return steps[..., :act_dim], steps[..., act_dim:]


def token_mask(step_mask: torch.Tensor, frame_stack: int) -> torch.Tensor:
    """A token counts only when all its env steps are real: [B, L] -> [B, L // fs]."""
    B, L = step_mask.shape
    return step_mask[:, : L - L % frame_stack].reshape(B, L // frame_stack, frame_stack).all(-1)
