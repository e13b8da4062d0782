"""The trainable network and the diffusion process around it.

`DiffusionPlusModel` is the observation encoder followed by a denoiser (the one registered for the config's
denoiser_type, see registry.py). It owns the training loss (DDPM forward process) and the sampling of an
action chunk from observation features. The policy around it is LeRobot glue: observation history, action
queue, checks and loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lerobot.utils.constants import ACTION

from . import registry, samplers
from .compiled import compiled
from .configuration_diffusion_plus import DiffusionPlusBaseConfig
from .denoiser_common import Denoiser
from .obs_encoder import ObservationEncoder


def make_denoiser(config: DiffusionPlusBaseConfig, action_dim: int, obs_feature_dim: int) -> Denoiser:
    """The denoiser registered for `config.denoiser_type` (registry.py), built from the config."""
    denoiser_class = registry.load(registry.DENOISERS[config.denoiser_type].denoiser)
    return denoiser_class.from_config(config, action_dim, obs_feature_dim)


class DiffusionPlusModel(nn.Module):
    """Observation encoder followed by a denoiser; `loss` trains it, `sample` draws an action chunk."""

    def __init__(self, config: DiffusionPlusBaseConfig):
        super().__init__()
        self.obs_encoder = ObservationEncoder(config)
        self.action_dim = config.action_feature.shape[0]
        self.denoiser: Denoiser = make_denoiser(config, self.action_dim, self.obs_encoder.feature_dim)
        self.horizon = config.horizon
        self.prediction_type = config.prediction_type
        self.clip_sample_range = config.clip_sample_range if config.clip_sample else None
        self.mask_loss_for_padding = config.do_mask_loss_for_padding
        self.noise_samples = config.noise_samples_per_observation
        # Streaming reads every frame, also those map-style training skips at an episode's end
        # (drop_n_last_frames): a chunk with more padded actions past the end than map-style allows is left out.
        self.max_end_padding = max(0, config.horizon - config.n_obs_steps - config.drop_n_last_frames)
        self.first_action = config.n_obs_steps - 1
        self.min_snr_gamma = config.min_snr_gamma
        self.aux_weight = config.aux_action_loss_weight if self.obs_encoder.image_keys else 0.0
        # The auxiliary head regresses the current action (the chunk's first executed one) from the observation
        # features (training only): the lowest-noise target there is, as later actions of a chunk depend on
        # events no observation shows yet.
        self.aux_head = (
            nn.Linear(config.n_obs_steps * self.obs_encoder.feature_dim, self.action_dim)
            if self.aux_weight > 0 else None
        )
        acp = samplers.make_alphas_cumprod(
            config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end
        )
        # Not saved: it follows from the config (the policy saves a copy to check checkpoints against).
        self.register_buffer("alphas_cumprod", acp, persistent=False)
        self._step_tables: dict[tuple, samplers.StepTable] = {}
        self.distilled_steps = config.distilled_steps  # a student's samplers read its teacher's DDIM grid

    def forward(self, x_t: Tensor, timestep: Tensor, obs_features: Tensor) -> Tensor:
        """The denoiser's output for noisy actions x_t (B, horizon, A) at `timestep` (B,)."""
        return self.denoiser(x_t, timestep, obs_features)

    @property
    def input_keys(self) -> list[str]:
        """Observation keys the encoder reads, state and environment vectors first."""
        return self.obs_encoder.input_keys

    def encode(self, obs: dict[str, Tensor]) -> Tensor:
        """Observations with a time axis (B, n_obs_steps, ...) -> features (B, n_obs_steps, D)."""
        return self.obs_encoder(obs)

    def encode_frame(self, obs: dict[str, Tensor]) -> Tensor:
        """One observation step (B, ...) -> features (B, D)."""
        return self.obs_encoder.encode_frame(obs)

    # --- training ---------------------------------------------------------------------------------
    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
        """(denoiser weights with weight decay, denoiser weights without, observation encoder weights)."""
        decay, no_decay = self.denoiser.param_groups()
        encoder = list(self.obs_encoder.parameters())
        if self.aux_head is not None:
            encoder += list(self.aux_head.parameters())
        return decay, no_decay, encoder

    def loss(
        self,
        batch: dict[str, Tensor],
        generator: torch.Generator,
        reduction: str = "mean",
        compile_mode: str | None = None,
    ) -> Tensor:
        """Denoising loss on `batch` (observations with a time axis, ACTION, optionally `action_is_pad`).

        The noise, then the timesteps, are drawn from `generator`, `noise_samples` of each per sample (the
        sample's copies adjacent). `reduction="none"`: one loss per sample, the mean over its copies.
        `compile_mode`: run everything after the draws through torch.compile in that mode (compiled.py).
        """
        x0 = batch[ACTION]
        shape = (x0.shape[0] * self.noise_samples, *x0.shape[1:])
        noise = torch.randn(shape, generator=generator, device=x0.device, dtype=x0.dtype)
        T = self.alphas_cumprod.shape[0]
        t = torch.randint(0, T, (shape[0],), generator=generator, device=x0.device)
        obs = {k: batch[k] for k in self.input_keys}
        is_pad = batch.get("action_is_pad")
        # Samples within map-style's end padding (all of a map-style batch); a mask, not a branch, so that the
        # step never waits on the device to know.
        in_range = None if is_pad is None else is_pad[:, self.first_action :].sum(1) <= self.max_end_padding
        pad = is_pad if self.mask_loss_for_padding else None
        terms = DiffusionPlusModel._loss
        if compile_mode is not None:
            terms = compiled(terms, compile_mode)
        return terms(self, obs, x0, noise, t, pad, in_range, reduction)

    def _loss(
        self, obs: dict[str, Tensor], x0: Tensor, noise: Tensor, t: Tensor, pad: Tensor | None,
        in_range: Tensor | None, reduction: str,
    ) -> Tensor:
        k = self.noise_samples
        encoded = self.encode(obs)
        features = encoded.repeat_interleave(k, dim=0)  # one encoding per sample
        x0_k = x0.repeat_interleave(k, dim=0)
        out = self.denoiser(samplers.add_noise(self.alphas_cumprod, x0_k, noise, t), t, features)
        loss = F.mse_loss(out, samplers.training_target(self.prediction_type, x0_k, noise), reduction="none")
        keep = torch.ones_like(x0)
        if pad is not None:
            keep = keep * ~pad.unsqueeze(-1)
        if in_range is not None:
            keep = keep * in_range.view(-1, 1, 1)
        keep_k = keep.repeat_interleave(k, dim=0)
        if self.min_snr_gamma is not None:
            loss = loss * self.snr_weight(t).view(-1, 1, 1)
        aux = None
        if self.aux_head is not None:
            aux = F.mse_loss(self.aux_head(encoded.flatten(1)), x0[:, self.first_action], reduction="none")
            if in_range is not None:
                aux = aux * in_range.view(-1, 1)
        if reduction == "none":
            per_copy = (loss * keep_k).flatten(1).sum(1) / keep_k.flatten(1).sum(1).clamp(min=1)
            per_sample = per_copy.view(-1, k).mean(1)
            if aux is not None:
                per_sample = per_sample + self.aux_weight * aux.mean(1)
            return per_sample
        total = (loss * keep_k).sum() / keep_k.sum().clamp(min=1)
        if aux is not None:
            kept = in_range.sum().clamp(min=1) if in_range is not None else aux.shape[0]
            total = total + self.aux_weight * aux.sum() / (kept * aux.shape[1])
        return total

    def snr_weight(self, t: Tensor) -> Tensor:
        """Min-SNR weight of each timestep: min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for sample."""
        acp = self.alphas_cumprod[t]
        snr = acp / (1 - acp)
        clipped = snr.clamp(max=self.min_snr_gamma)
        return clipped / snr if self.prediction_type == "epsilon" else clipped

    # --- inference --------------------------------------------------------------------------------
    def sample(
        self,
        obs_features: Tensor,
        sampler: str,
        num_steps: int,
        noise: Tensor | None = None,
        guide_x0: samplers.Guide | None = None,
        fast_inference: bool | None = None,
        compile_mode: str | None = None,
    ) -> Tensor:
        """Normalised actions over the whole horizon (B, horizon, A) for features (B, n_obs_steps, D).

        `noise` is x_T (drawn from the global RNG when None); `guide_x0` rewrites the clean-sample estimate
        at every step (real-time chunking). The sampler, its step count and `fast_inference` (the U-Net's
        fast path; None keeps the built one) and `compile_mode` (None: eager) are inference settings: they
        may differ from chunk to chunk.
        """
        shape = (obs_features.shape[0], self.horizon, self.action_dim)
        if noise is None:
            noise = torch.randn(shape, device=obs_features.device, dtype=obs_features.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(
                f"noise must have shape {shape} (batch, horizon, action dim), got {tuple(noise.shape)}"
            )
        # Only a denoiser with a fast path (the U-Net) has the switch.
        if fast_inference is not None and hasattr(self.denoiser, "fast_inference"):
            self.denoiser.fast_inference = fast_inference
        table = self.step_table(sampler, num_steps, obs_features.device)
        chunk_denoiser = self.denoiser.conditioned(obs_features, table.timesteps, compile_mode)
        return samplers.denoise(
            chunk_denoiser, noise, table, self.prediction_type, self.clip_sample_range, guide_x0=guide_x0
        )

    def step_table(self, sampler: str, num_steps: int, device: torch.device) -> samplers.StepTable:
        """The sampler's coefficients for this noise schedule, built once per (sampler, steps, device)."""
        key = (sampler, num_steps, str(device))
        if key not in self._step_tables:
            table = samplers.make_step_table(sampler, self.alphas_cumprod.cpu(), num_steps, self.distilled_steps)
            self._step_tables[key] = table.to(device)
        return self._step_tables[key]
