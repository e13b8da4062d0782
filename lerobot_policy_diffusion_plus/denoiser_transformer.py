"""Transformer denoiser (the paper's DP-T): a norm-first decoder over noisy action tokens.

Action tokens attend to each other (causally by default, so an action only depends on earlier ones) and,
through cross-attention, to a short condition sequence: one diffusion-step token followed by one token per
observation step. Attention runs through `F.scaled_dot_product_attention`, which picks the fused kernel
available on the device.

With `adaln`, every block also reads the whole condition directly, as DiT's adaLN-Zero: a vector made from the
condition sequence sets a scale and shift for each branch's LayerNorm and a gate on its output. The gates start
at zero, so each block starts as the identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .compiled import compiled
from .denoiser_common import sinusoidal_embedding
from .samplers import ChunkDenoiser

if TYPE_CHECKING:
    from .configuration_diffusion_plus import DiffusionPlusTransformerConfig


class Attention(nn.Module):
    """Multi-head attention of queries `x` over `context` (self-attention when they are the same)."""

    def __init__(self, n_emb: int, n_head: int, p_drop: float):
        super().__init__()
        self.n_head, self.p_drop = n_head, p_drop
        self.query = nn.Linear(n_emb, n_emb)
        self.key_value = nn.Linear(n_emb, 2 * n_emb)
        self.proj = nn.Linear(n_emb, n_emb)
        self.resid_drop = nn.Dropout(p_drop)

    def forward(self, x: Tensor, context: Tensor, causal: bool = False, mask: Tensor | None = None) -> Tensor:
        B, T, C = x.shape
        H = self.n_head
        q = self.query(x).view(B, T, H, C // H).transpose(1, 2)
        k, v = self.key_value(context).view(B, -1, 2, H, C // H).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.p_drop if self.training else 0.0, is_causal=causal
        )
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class DecoderBlock(nn.Module):
    """Pre-norm: self-attention, cross-attention to the condition, MLP; each a residual branch."""

    def __init__(self, n_emb: int, n_head: int, p_drop: float, causal: bool, adaln: bool = False):
        super().__init__()
        self.causal = causal
        # adaLN: shift, scale and gate for each of the three branches, from the condition vector.
        self.modulation = nn.Linear(n_emb, 9 * n_emb) if adaln else None
        self.ln_self, self.ln_cross, self.ln_mlp = nn.LayerNorm(n_emb), nn.LayerNorm(n_emb), nn.LayerNorm(n_emb)
        self.self_attn = Attention(n_emb, n_head, p_drop)
        self.cross_attn = Attention(n_emb, n_head, p_drop)
        self.mlp = nn.Sequential(
            nn.Linear(n_emb, 4 * n_emb), nn.GELU(), nn.Dropout(p_drop), nn.Linear(4 * n_emb, n_emb), nn.Dropout(p_drop)
        )

    def forward(
        self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None, cond: Tensor | None = None
    ) -> Tensor:
        if self.modulation is None:
            h = self.ln_self(x)
            x = x + self.self_attn(h, h, causal=self.causal)
            x = x + self.cross_attn(self.ln_cross(x), memory, mask=memory_mask)
            return x + self.mlp(self.ln_mlp(x))
        # (shift, scale, gate) of self-attention, cross-attention and MLP, each (B, 1, C).
        m = self.modulation(cond).unsqueeze(1).chunk(9, dim=-1)
        h = self.ln_self(x) * (1 + m[1]) + m[0]
        x = x + m[2] * self.self_attn(h, h, causal=self.causal)
        x = x + m[5] * self.cross_attn(self.ln_cross(x) * (1 + m[4]) + m[3], memory, mask=memory_mask)
        return x + m[8] * self.mlp(self.ln_mlp(x) * (1 + m[7]) + m[6])


class TransformerDenoiser(nn.Module):
    """`forward(x_t (B, T, A), timestep (B,), obs_features (B, n_obs, D)) -> (B, T, A)`."""

    block = DecoderBlock  # the repeated block, for FSDP wrapping

    def __init__(
        self,
        action_dim: int,
        obs_feature_dim: int,
        *,
        horizon: int,
        n_obs_steps: int,
        n_layer: int,
        n_head: int,
        n_emb: int,
        p_drop_emb: float,
        p_drop_attn: float,
        causal_attn: bool,
        n_cond_layers: int,
        adaln: bool = False,
    ):
        super().__init__()
        C = n_emb
        self.n_emb = C
        self.input_emb = nn.Linear(action_dim, C)
        self.pos_emb = nn.Parameter(torch.zeros(1, horizon, C))
        self.cond_obs_emb = nn.Linear(obs_feature_dim, C)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, 1 + n_obs_steps, C))
        self.drop = nn.Dropout(p_drop_emb)
        if n_cond_layers > 0:
            layer = nn.TransformerEncoderLayer(
                C, n_head, 4 * C, p_drop_attn, activation="gelu", batch_first=True, norm_first=True
            )
            self.cond_encoder = nn.TransformerEncoder(layer, n_cond_layers, enable_nested_tensor=False)
        else:
            self.cond_encoder = nn.Sequential(nn.Linear(C, 4 * C), nn.Mish(), nn.Linear(4 * C, C))
        self.blocks = nn.ModuleList(
            DecoderBlock(C, n_head, p_drop_attn, causal_attn, adaln) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, action_dim)
        # adaLN's condition vector: the whole condition sequence (step and observations) in one C-wide vector.
        self.adaln_cond = None
        if adaln:
            self.adaln_cond = nn.Sequential(nn.Flatten(1), nn.Linear((1 + n_obs_steps) * C, C), nn.SiLU())
        # Causal mode also keeps action token t from observation tokens after step t, as the paper's DP-T:
        # memory token s (0 = diffusion step, then observations) is visible to action t when s <= t + 1.
        t, s = torch.arange(horizon)[:, None], torch.arange(1 + n_obs_steps)[None, :]
        self.register_buffer("memory_mask", s <= t + 1 if causal_attn else None, persistent=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.cond_pos_emb, std=0.02)
        if adaln:
            for block in self.blocks:
                nn.init.zeros_(block.modulation.weight)  # zero gates: each block starts as the identity

    @classmethod
    def from_config(
        cls, config: DiffusionPlusTransformerConfig, action_dim: int, obs_feature_dim: int
    ) -> TransformerDenoiser:
        return cls(
            action_dim, obs_feature_dim,
            horizon=config.horizon,
            n_obs_steps=config.n_obs_steps,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_emb=config.n_emb,
            p_drop_emb=config.p_drop_emb,
            p_drop_attn=config.p_drop_attn,
            causal_attn=config.causal_attn,
            n_cond_layers=config.n_cond_layers,
            adaln=config.adaln,
        )

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 style: small normal weights, zero biases, unit LayerNorm.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, timestep: Tensor, obs_features: Tensor) -> Tensor:
        return self._decode(x, self._memory(timestep, obs_features))

    def conditioned(self, obs_features: Tensor, timesteps: Tensor, compile_mode: str | None = None) -> ChunkDenoiser:
        """The denoiser for one chunk, as `f(x_t, i)` evaluated at `timesteps[i]` (sampling order).

        The condition memory depends only on the observation and the step: it is encoded for every step
        at once here, so each denoising step runs the decoder only, compiled with `compile_mode` when given.
        """
        n, B = timesteps.shape[0], obs_features.shape[0]
        memory = self._memory(timesteps.repeat_interleave(B), obs_features.repeat(n, 1, 1))
        memory = memory.view(n, B, *memory.shape[1:])
        decode = TransformerDenoiser._decode
        if compile_mode is not None:
            decode = compiled(decode, compile_mode)
        return lambda x, i: decode(self, x, memory[i])

    def _memory(self, timestep: Tensor, obs_features: Tensor) -> Tensor:
        step_token = sinusoidal_embedding(timestep, self.n_emb).unsqueeze(1)
        cond = torch.cat([step_token, self.cond_obs_emb(obs_features)], dim=1) + self.cond_pos_emb
        return self.cond_encoder(self.drop(cond))

    def _decode(self, x: Tensor, memory: Tensor) -> Tensor:
        h = self.drop(self.input_emb(x) + self.pos_emb[:, : x.shape[1]])
        mask = None if self.memory_mask is None else self.memory_mask[: x.shape[1]]
        cond = None if self.adaln_cond is None else self.adaln_cond(memory)
        for block in self.blocks:
            h = block(h, memory, mask, cond)
        return self.head(self.ln_f(h))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(decayed, not decayed): weight decay only on the weight matrices of Linear layers."""
        decay = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        # nn.TransformerEncoderLayer keeps its attention input projection as a raw parameter.
        decay |= {id(m.in_proj_weight) for m in self.modules() if isinstance(m, nn.MultiheadAttention)}
        params = list(self.parameters())
        return [p for p in params if id(p) in decay], [p for p in params if id(p) not in decay]
