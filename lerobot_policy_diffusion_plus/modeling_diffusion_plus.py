"""Diffusion Policy for LeRobot: one implementation behind every registered policy type.

`DiffusionPlusPolicy` (U-Net) and `DiffusionPlusTransformerPolicy` differ only by their config class; the
denoiser is the one registered for `config.denoiser_type` (registry.py). The network, its loss and its
sampler are `model` (diffusion_model.py); `ema` holds its moving average, which produces every action the
policy returns when enabled. The policy is LeRobot's side: observation history, action queue, real-time
chunking, input and output checks, saving and loading.
"""

# No postponed annotations here: LeRobot's own policy tests read `__init__`'s `config` annotation as a class.
import logging
import time
from collections import deque

import torch
from torch import Tensor

from lerobot.configs import NormalizationMode
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION

from . import checkpoint, distillation, registry, rtc, samplers
from .configuration_diffusion_plus import RTC_NEEDS_ONE_OBS, DiffusionPlusBaseConfig, DiffusionPlusConfig
from .diffusion_model import DiffusionPlusModel
from .ema import EMA
from .errors import ActionError, ConfigError, ObservationError
from .obs_encoder import building_from_checkpoint, is_building_from_checkpoint
from .obs_history import ObservationHistory

logger = logging.getLogger(__name__)
__all__ = ["DiffusionPlusModel", "DiffusionPlusPolicy"]


class DiffusionPlusPolicy(PreTrainedPolicy):
    """The `diffusion_plus` policy (U-Net); every other registered type is a subclass (end of this file)."""

    config_class = DiffusionPlusConfig
    name = "diffusion_plus"

    def __init__(self, config: DiffusionPlusBaseConfig, **kwargs):
        super().__init__(config)
        config.validate_features()
        if config.distill_teacher_path is not None and not is_building_from_checkpoint():
            raise ConfigError(
                "distill_teacher_path", config.distill_teacher_path,
                "given with --policy.path=<the same folder>: a student starts from its teacher's weights and settings",
            )
        self.config = config
        self.model = DiffusionPlusModel(config)
        # The denoiser's repeated block, for FSDP auto-wrapping: accelerate reads `_no_split_modules`, and
        # LeRobot versions with `--parallelism.dp_shard` read `_fsdp_wrap_modules` (0.6.1 has no such flag:
        # untested).
        block = type(self.model.denoiser).block
        self._no_split_modules, self._fsdp_wrap_modules = [block.__name__], (block,)
        self.ema = (
            EMA(self.model, config.ema_inv_gamma, config.ema_power, config.ema_max_decay)
            if config.use_ema
            else None
        )
        # Saved with the weights so that loading with a different schedule, horizon, history or target is an
        # error instead of silently wrong actions (inference-only settings such as the sampler, its step
        # count or n_action_steps may still change at load time).
        self.register_buffer("alphas_cumprod", self.model.alphas_cumprod.clone())
        self.register_buffer("trained_settings", _trained_settings(config))
        self.register_buffer("model_fields", checkpoint.encode(checkpoint.model_fields(config)))
        # Training noise comes from a generator seeded per step from these two saved numbers, not from the
        # global RNG: lerobot-train draws from the global RNG when it rebuilds its data iterator on resume,
        # which would otherwise shift every later noise sample and make a resumed run diverge.
        self.register_buffer("noise_seed", torch.randint(0, 2**62, ()))
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.long))
        self._teacher: list[DiffusionPlusModel] = []  # distillation's frozen teacher, loaded on first use, not saved
        self.reset()

    # --- training ---------------------------------------------------------------------------------
    def get_optim_params(self) -> list[dict]:
        """Param groups: denoiser weights that decay, those that do not, and the observation encoder."""
        cfg = self.config
        decay, no_decay, encoder = self.model.param_groups()
        groups = [
            {"params": decay, "weight_decay": cfg.optimizer_weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": encoder, "weight_decay": cfg.optimizer_encoder_weight_decay},
        ]
        return [g for g in groups if g["params"]]

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, None]:
        """Denoising loss; `reduction="none"` gives one loss per sample (lerobot-train's sample weighting)."""
        generator = self._step_generator(batch[ACTION].device)
        if self.config.distill_teacher_path is not None:
            teacher = self._distillation_teacher(batch[ACTION].device)
            return distillation.distillation_loss(
                self.model, teacher, batch, generator, self.config.distilled_steps,
                self.config.distill_pure_noise_share, reduction,
            ), None
        return self.model.loss(batch, generator, reduction, self._compile_mode), None

    def _distillation_teacher(self, device: torch.device) -> DiffusionPlusModel:
        # Loaded when training starts (also on resume), never when a student acts: its checkpoint needs no teacher.
        if not self._teacher:
            self._teacher.append(distillation.load_teacher(self.config.distill_teacher_path, self.config, device))
        return self._teacher[0]

    def _start_from_teacher(self) -> None:
        """A student loaded from its teacher's checkpoint: train from the weights the teacher acts with (its EMA),
        and average anew (the teacher's EMA schedule is tens of thousands of steps along)."""
        if self.ema is not None:
            self.model.load_state_dict(self.ema.model.state_dict())
            self.ema.step.zero_()
        self.noise_step.zero_()

    @property
    def _compile_mode(self) -> str | None:
        return self.config.compile_mode if self.config.compile_model else None

    def _step_generator(self, device: torch.device) -> torch.Generator:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        seed = (int(self.noise_seed) + int(self.noise_step) * 1_000_003 + rank * 7_919) % 2**63
        self.noise_step += 1
        return torch.Generator(device=device).manual_seed(seed)

    def update(self) -> None:
        """Called by lerobot-train after every optimizer step: advance the EMA."""
        if self.ema is not None:
            self.ema.update(self.model)

    # --- inference --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the observation history and queued actions (call on every env reset)."""
        self._obs_history = ObservationHistory(self.config.n_obs_steps)
        # No maxlen: a chunk is queued whole even if n_action_steps changed since the last reset.
        self._action_queue: deque[Tensor] = deque()
        self._last_rtc_call: float | None = None
        self._longest_rtc_gap = 0.0
        self._last_starving_warning = float("-inf")

    @property
    def inference_model(self) -> DiffusionPlusModel:
        return self.ema.model if self.ema is not None else self.model

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """One action (B, A); a new chunk is sampled when the queue of `n_action_steps` runs out."""
        self._push_observation(batch)
        if not self._action_queue:
            chunk = self._sample_chunk(self._history_features(), noise)
            self._action_queue.extend(chunk.unbind(1))
        return self._action_queue.popleft()

    def supports_rtc(self) -> bool:
        """lerobot-rollout --inference.type=rtc: guided inpainting of the previous chunk (see rtc.py)."""
        return True

    # `lerobot-rollout --use_torch_compile=true` sets `compile_model` (each denoising step compiled, see
    # compiled.py) and also wraps this method in torch.compile. Tracing it would gain nothing over the compiled
    # steps and fails on its Python bookkeeping (history deque, action checks, timing), so the outer compile
    # is told to run it as it is; the compiled steps inside still run compiled.
    @torch.compiler.disable
    @torch.no_grad()
    def predict_action_chunk(
        self,
        batch: dict[str, Tensor],
        noise: Tensor | None = None,
        inference_delay: int | None = None,
        prev_chunk_left_over: Tensor | None = None,
        **kwargs,
    ) -> Tensor:
        """The `n_action_steps` normalised actions (B, n_action_steps, A) to execute from the current step.

        A batch whose observations carry a time axis (B, n_obs_steps, ...) is used as it is. One without is
        the current observation; it is accepted only with n_obs_steps=1, since a caller that asks once per
        chunk (LeRobot's RTC loop and policy server) cannot supply consecutive frames.
        Real-time chunking (LeRobot's RTC loop): `prev_chunk_left_over` (T, A) or (B, T, A) is what is left
        of the previous returned chunk, normalised, its row i planned for the same step as returned row i;
        the first `inference_delay` returned actions equal it and the rest of the overlap is guided toward
        it, with the weights of `config.rtc_config` (set by lerobot-rollout) when present.
        """
        if self._has_time_axis(batch):
            features = self.inference_model.encode(self._checked_observation(batch))
        else:
            if self.config.n_obs_steps > 1:
                raise ObservationError(f"n_obs_steps={self.config.n_obs_steps} must be {RTC_NEEDS_ONE_OBS}")
            features = self._push_and_encode(batch)
        if inference_delay is not None:
            self._warn_if_starving(int(inference_delay))
        return self._sample_chunk(features, noise, guide_x0=self._rtc_guide(inference_delay, prev_chunk_left_over))

    def _warn_if_starving(self, delay: int) -> None:
        """Say so when RTC drops more of each chunk than the robot can wait for (at most every 10 s).

        LeRobot's RTC loop asks for chunks back to back and drops the first `delay` = ceil(latency x fps)
        actions of each; the rest must last until the next chunk, `delay` ticks later. It logs nothing
        when they do not: the arm just stops."""
        now = time.perf_counter()
        if self._last_rtc_call is not None:
            # LeRobot sets delay = ceil(longest latency x fps): the longest gap between chunks gives the fps.
            self._longest_rtc_gap = max(self._longest_rtc_gap, now - self._last_rtc_call)
        self._last_rtc_call = now
        n = self.config.n_action_steps
        if n - delay >= delay or now - self._last_starving_warning < 10.0:
            return
        self._last_starving_warning = now
        gap = self._longest_rtc_gap
        timing = f"up to {1000 * gap:.0f} ms between chunks at about {delay / gap:.0f} fps" if gap else "first chunk"
        most = self.config.horizon - self.config.n_obs_steps + 1
        logger.warning(
            "real-time chunking cannot keep up: inference takes %d control ticks (%s) but a chunk carries "
            "n_action_steps=%d actions, %d of them after the delay, so the robot waits about %d ticks per chunk%s. "
            "Raise --policy.n_action_steps (at most %d), lower --fps, or make inference faster "
            "(fewer --policy.num_inference_steps, a smaller --policy.resize_shape, a smaller model, a GPU).",
            delay, timing, n, max(n - delay, 0), delay - max(n - delay, 0),
            " (nothing of this chunk is executed)" if delay >= n else "", most,
        )

    def _rtc_guide(self, inference_delay: int | None, prev: Tensor | None) -> samplers.Guide | None:
        cfg = self.config
        rtc_config = getattr(cfg, "rtc_config", None)  # lerobot-rollout sets it for --inference.type=rtc
        return rtc.make_guide(
            prev,
            delay=int(inference_delay or 0),
            start=cfg.n_obs_steps - 1,
            horizon=cfg.horizon,
            chunk_len=cfg.n_action_steps,
            schedule=rtc_config.prefix_attention_schedule if rtc_config else "LINEAR",
            max_overlap=rtc_config.execution_horizon if rtc_config else None,
        )

    def _sample_chunk(
        self, features: Tensor, noise: Tensor | None, guide_x0: samplers.Guide | None = None
    ) -> Tensor:
        """The `n_action_steps` actions to execute, sampled with the current inference settings and checked."""
        cfg = self.config
        # Read from the config per chunk: the sampler, its steps and the fast path may change on a live policy.
        actions = self.inference_model.sample(
            features, cfg.noise_scheduler_type, cfg.sampler_steps, noise, guide_x0, cfg.fast_inference,
            self._compile_mode,
        )
        start = cfg.n_obs_steps - 1
        actions = actions[:, start : start + cfg.n_action_steps]
        if not torch.isfinite(actions).all():
            # clamp keeps NaN: raise so that nothing of this chunk reaches the robot (see ActionError).
            raise ActionError("the sampled action chunk contains NaN or Inf; refusing to return it")
        if cfg.clamp_actions and cfg.normalization_mapping.get("ACTION") is NormalizationMode.MIN_MAX:
            # [-1, 1] is exactly the range of actions seen in training under min/max normalisation.
            actions = actions.clamp(-1.0, 1.0)
        return actions

    # --- observation history ------------------------------------------------------------------------
    def _has_time_axis(self, batch: dict[str, Tensor]) -> bool:
        key = self.model.input_keys[0]
        self._check_present(batch)
        return batch[key].dim() == (5 if key in self.config.image_features else 3)

    def _check_present(self, batch: dict[str, Tensor]) -> None:
        missing = [k for k in self.model.input_keys if k not in batch]
        if missing:
            raise ObservationError(f"observation is missing {missing}; the policy was trained on "
                                   f"{self.model.input_keys}")

    @staticmethod
    def _check_finite(obs: dict[str, Tensor]) -> None:
        # One reduction per key (a NaN or Inf anywhere makes the sum non-finite): cheap on 640x480 frames.
        bad = [k for k, v in obs.items() if not torch.isfinite(v.sum())]
        if bad:
            raise ObservationError(f"observation {bad} contains NaN or Inf; refusing to produce actions")

    def _check_image_shapes(self, obs: dict[str, Tensor]) -> None:
        for key, ft in self.config.image_features.items():
            if tuple(obs[key].shape[-3:]) != tuple(ft.shape):
                raise ObservationError(
                    f"{key} has shape {tuple(obs[key].shape[-3:])}, the policy was trained on {tuple(ft.shape)}"
                )

    def _checked_observation(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The keys the encoder reads, refused if missing, non-finite or of another image size."""
        self._check_present(batch)
        obs = {k: batch[k] for k in self.model.input_keys}
        self._check_finite(obs)
        self._check_image_shapes(obs)
        return obs

    def _push_observation(self, batch: dict[str, Tensor]) -> None:
        self._obs_history.push(self._checked_observation(batch))

    def _push_and_encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Push one observation and return the history's features, from one history object: LeRobot's RTC
        thread calls this while the rollout's main thread may call `reset()`, which swaps in an empty one."""
        history = self._obs_history
        history.push(self._checked_observation(batch))
        return history.features(self.inference_model.encode_frame)

    def _history_features(self) -> Tensor:
        return self._obs_history.features(self.inference_model.encode_frame)

    # --- loading --------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # The checkpoint holds the backbone's weights: never read or download pretrained_backbone_weights.
        with building_from_checkpoint():
            return super().from_pretrained(*args, **kwargs)

    @classmethod
    def _load_as_safetensor(cls, model, model_file: str, map_location: str, strict: bool):
        """Load weights strictly (see checkpoint.py): a mismatch is an error, never a half-loaded policy."""
        # --policy.use_ema=false on an EMA checkpoint: act with the live weights.
        from_teacher = checkpoint.load_strict(model, model_file, drop_prefix="ema." if model.ema is None else None)
        if from_teacher:
            model._start_from_teacher()
        return model


def _trained_settings(config: DiffusionPlusBaseConfig) -> Tensor:
    kind = samplers.PREDICTION_TYPES.index(config.prediction_type)
    return torch.tensor([config.horizon, config.n_obs_steps, kind], dtype=torch.long)


# LeRobot finds a policy class by its config class's name (`XConfig` -> `XPolicy`, in this module): the same
# policy for every other registered type (registry.py), e.g. DiffusionPlusTransformerPolicy.
for _entry in registry.DENOISERS.values():
    if _entry.config_class is not DiffusionPlusPolicy.config_class:
        _name = _entry.config_class.__name__.removesuffix("Config") + "Policy"
        globals()[_name] = type(_name, (DiffusionPlusPolicy,), {
            "__module__": __name__, "__doc__": f"The `{_entry.policy_type}` policy: only the config differs.",
            "config_class": _entry.config_class, "name": _entry.policy_type,
        })
        __all__.append(_name)
