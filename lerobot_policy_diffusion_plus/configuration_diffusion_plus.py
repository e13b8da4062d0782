"""Configs of the two policy types: `diffusion_plus` (1D U-Net) and `diffusion_plus_transformer`.

Everything but the denoiser lives in `DiffusionPlusBaseConfig`; each type, declared with
`@register_policy_type` (registry.py), adds its denoiser's fields, size estimate and optimizer preset. Field
names follow LeRobot's `diffusion` wherever the concept is the same, so switching is a change of
`--policy.type` only. Defaults are the paper's (Chi et al. 2023). Every field is declared with its kind
(`model_field`, `inference_field`, `training_field`): what a checkpoint must match at load time follows.

Validation happens in `__post_init__`, before any dataset or model is built. LeRobot's CLI parser hides
the message of a ValueError raised there, so `ConfigError` is deliberately not one (see `errors.py`).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

from lerobot.configs import FeatureType, NormalizationMode, PreTrainedConfig
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import CosineAnnealingWithWarmupSchedulerConfig

from . import registry
from .errors import ConfigError, check_choice
from .registry import BETA_SCHEDULES, COMPILE_MODES, DISTILLED_SAMPLERS, PREDICTION_TYPES, SAMPLERS

VISION_BACKBONES = ("resnet18", "resnet34", "resnet50")
# The ResNet trunk halves the image five times; its spatial softmax needs at least this many cells per side
# (below 3x3 the keypoints barely move with the image; at 1x1 they are constant).
MIN_FEATURE_MAP = 3
MAX_IMAGE_SIDE = 2048
# Automatic working size: at most this many pixels (the paper's real-robot 240x320), aspect ratio kept.
AUTO_WORKING_AREA = 240 * 320
# Upper bounds (inclusive) checked at parse time; far beyond the paper's settings, well short of a hang.
LIMITS = {
    "num_train_timesteps": 1000, "num_inference_steps": 1000, "horizon": 512, "n_obs_steps": 32,
    "n_action_steps": 512, "spatial_softmax_num_keypoints": 512, "down_dims": 4096, "kernel_size": 15,
    "diffusion_step_embed_dim": 2048, "n_layer": 48, "n_head": 64, "n_emb": 4096, "n_cond_layers": 48,
    "noise_samples_per_observation": 256,
}
# The fields above are bounded one at a time, which still lets them build billions of parameters together
# (down_dims=[4096, 4096, 4096] with kernel_size=15), so the denoiser they build is bounded too. 1e9 is about
# 15 times the paper's 63.5M U-Net, yet already 4 GB of float32 weights, and some 20 GB with the EMA copy,
# the gradients and AdamW's two moments.
MAX_DENOISER_PARAMETERS = 10**9
# The estimate comes before the dataset is known: it assumes a 10-dimensional action and 64 observation
# features per step (one camera at 32 keypoints). Larger ones only widen the input and FiLM layers.
ASSUMED_ACTION_DIM, ASSUMED_OBS_FEATURES = 10, 64


RTC_NEEDS_ONE_OBS = (
    "1 for real-time chunking and async inference: LeRobot's RTC loop and policy server pass one observation "
    "per chunk, not the consecutive frames this policy was trained on. Train with --policy.n_obs_steps=1 for "
    "them, or run this checkpoint with --inference.type=sync"
)


# Every field is declared with its kind, and what is compared at load time is derived from it (checkpoint.py):
# "model": defines the network's weights, what it sees or what it is trained to predict; saved with the weights
#   and must be as in training when a checkpoint is loaded.
# "inference": how actions are sampled and returned; may change on any checkpoint.
# "training": read by training only; ignored when a checkpoint acts.
FIELD_KINDS = ("model", "inference", "training")


def _field_of_kind(kind: str):
    """A `dataclasses.field` declarer that tags the field with `kind`."""

    def declare(default=MISSING, *, default_factory=MISSING):
        return field(default=default, default_factory=default_factory, metadata={"kind": kind})

    return declare


model_field, inference_field, training_field = (_field_of_kind(kind) for kind in FIELD_KINDS)


def fields_of_kind(config, kind: str) -> tuple[str, ...]:
    """Names of the fields of `kind` (one of FIELD_KINDS) of a config class or instance, in declaration order.
    LeRobot's own fields (device, input/output features, hub settings) have no kind."""
    check_choice("kind", kind, FIELD_KINDS)
    return tuple(f.name for f in fields(config) if f.metadata.get("kind") == kind)


def resnet_feature_size(side: int) -> int:
    """Feature map side of a torchvision ResNet trunk (five stride-2 stages, each rounding up) for an input side."""
    for _ in range(5):
        side = (side + 1) // 2
    return side


@dataclass
class DiffusionPlusBaseConfig(PreTrainedConfig):
    # Chunking: 2 observations in, 16 actions predicted (the reference), 4 executed before sampling again.
    # The reference executes 8; on PushT (keypoints, tuning seeds) 4 gave 10-20 points more success from the
    # same checkpoints (BENCHMARKS.md). Only inference reads n_action_steps: it may be changed at load time.
    n_obs_steps: int = model_field(2)
    horizon: int = model_field(16)
    n_action_steps: int = inference_field(4)
    # Start frames LeRobot's (map-style) sampler skips at each episode's end, so that a training chunk has at
    # most 7 padded actions past the end. The reference allows n_action_steps - 1 padded actions, 7 at its 8;
    # a fixed allowance keeps n_action_steps, an inference setting, out of training. None: horizon -
    # n_obs_steps - 7 (7 at the defaults, as LeRobot's `diffusion`). Streaming (--dataset.streaming=true) reads
    # every frame; the loss leaves out the chunks padded beyond this allowance, so both train on the same chunks.
    # 0 keeps every chunk: where demos end on the decisive last motion (PushT), that motion is then also learned
    # from its own observations (the CPU PushT recipe sets it).
    drop_n_last_frames: int | None = training_field(None)

    # The paper scales every low-dim input and the action to [-1, 1]; images are standardised.
    normalization_mapping: dict[str, NormalizationMode] = model_field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.MEAN_STD,
            "STATE": NormalizationMode.MIN_MAX,
            "ENV": NormalizationMode.MIN_MAX,
            "ACTION": NormalizationMode.MIN_MAX,
        }
    )

    # Observation encoder (images). Each camera goes through a ResNet trunk and a spatial softmax.
    # The torchvision ResNet whose convolutional trunk encodes each camera: resnet18, resnet34 or resnet50.
    vision_backbone: str = model_field("resnet18")
    # None: train the backbone from scratch (the paper). A torchvision weights name such as
    # "ResNet18_Weights.IMAGENET1K_V1" (downloaded once, only when training starts from it) or the path of a
    # local state-dict file (.pth/.pt/.safetensors) starts from pretrained weights; their BatchNorm layers are
    # then kept with frozen statistics (as LeRobot's `act`), so the EMA copy and the trained weights agree.
    # Loading a checkpoint never reads or downloads these weights: the checkpoint holds them.
    pretrained_backbone_weights: str | None = model_field(None)
    # Replace BatchNorm with GroupNorm in a backbone trained from scratch (batch statistics and an EMA of the
    # weights do not mix). Ignored with pretrained_backbone_weights (frozen BatchNorm, see above).
    use_group_norm: bool = model_field(True)
    # Keypoints the spatial softmax extracts per camera; each gives an expected (x, y), so a camera contributes
    # 2 x this many features per observation step.
    spatial_softmax_num_keypoints: int = model_field(32)
    # Working size (H, W) every camera is resized to before cropping. None: the largest camera, scaled down
    # (aspect kept) to at most 240x320 pixels of area, the paper's real-robot size: (480, 640) -> (240, 320),
    # PushT's 96x96 unchanged. Cameras of other sizes are resized to the same working size.
    resize_shape: tuple[int, int] | None = model_field(None)
    # Crop as a fraction of the working size (0.9: 81% of the frame's area, as the paper's 216x288 of 240x320),
    # random in training and centred at inference. crop_shape, when set, is the crop in pixels of the working
    # size instead (e.g. (84, 84) on PushT's 96x96, the paper's sim setting).
    crop_ratio: float = model_field(0.9)
    crop_shape: tuple[int, int] | None = model_field(None)
    # Random crop position per sample in training (augmentation); false crops the centre in training too.
    crop_is_random: bool = training_field(True)
    # One ResNet per camera instead of one shared by all (the paper shares; separate costs a trunk per camera).
    use_separate_rgb_encoder_per_camera: bool = model_field(False)

    # Noise schedule. Training always noises with this DDPM forward process (num_train_timesteps steps of
    # beta_schedule); these fields are part of the trained model and must match it at load time.
    # Number of noise levels of the forward process (the paper: 100).
    num_train_timesteps: int = model_field(100)
    # How the noise variance grows with t: "squaredcos_cap_v2" (cosine, the paper), "linear" or "scaled_linear".
    beta_schedule: str = model_field("squaredcos_cap_v2")
    # First and last beta of the linear schedules (unused by the cosine one).
    beta_start: float = model_field(0.0001)
    beta_end: float = model_field(0.02)
    # What the denoiser predicts: "epsilon" (the noise, the paper) or "sample" (the clean action chunk; it
    # learned sooner on keypoint PushT and on the two-camera task, so both CPU recipes set it).
    prediction_type: str = model_field("epsilon")
    # Clip each step's clean-sample estimate to [-clip_sample_range, clip_sample_range]: with min/max action
    # normalisation, [-1, 1] is exactly the range of the training actions. Sampling only: training never clips.
    clip_sample: bool = inference_field(True)
    clip_sample_range: float = inference_field(1.0)
    # Sampler at inference: DDIM with 10 steps by default (the paper's real-robot fast path; on PushT not worse
    # than DDPM-100, see BENCHMARKS.md). "DDPM" with num_inference_steps=None is the full 100-step chain,
    # "DPM++2M" a second-order solver for 4-8 steps. Both may be changed at load time without retraining.
    noise_scheduler_type: str = inference_field("DDIM")
    num_inference_steps: int | None = inference_field(10)
    # Distillation into a student that acts in one or two denoiser calls (distillation.py): the folder of the
    # teacher's checkpoint (a `pretrained_model`), given together with --policy.path=<the same folder>, so that
    # the student starts from the teacher's weights and settings. The student learns to map noise straight to
    # the chunk of the teacher's DDIM; its checkpoint acts without the teacher. Training only.
    distill_teacher_path: str | None = training_field(None)
    # Share of each distillation batch whose trajectories start from pure noise (what a one-step student sees);
    # the rest start at a later point of the teacher's grid, with the data noised to it (what the second and
    # later steps of a multistep student see).
    distill_pure_noise_share: float = training_field(0.5)
    # None: a diffusion model. N: a student distilled from its teacher's DDIM-N, set by distillation (the
    # teacher's num_inference_steps). A student acts only with noise_scheduler_type="consistency" at 1..N steps
    # (1 unless told otherwise) and a diffusion model never does: they are different functions of the noise.
    distilled_steps: int | None = model_field(None)
    # Loss on padded actions past an episode's end is kept by default (the reference); true masks it.
    do_mask_loss_for_padding: bool = training_field(False)
    # Noisy copies of each training sample's action chunk, each with its own noise and timestep, all denoised
    # against one encoding of its observation: the denoiser learns from several noise levels per image
    # encoded. Where the vision encoder is most of a step (cameras on a CPU) each extra copy costs only the
    # denoiser's share of it. 1 is the paper's training.
    noise_samples_per_observation: int = training_field(1)
    # Weight of an auxiliary loss that trains the observation encoder directly: a linear head reads the
    # observation features and regresses the current action, the chunk's first (mean squared error, added to
    # the denoising loss). Denoising gives the image encoder a weak, noisy gradient, and from scratch it starts
    # reading the cameras late; this target reaches it at once (BENCHMARKS.md). Training only: actions always
    # come from the denoiser. 0 (the paper) builds no head. Without cameras there is no encoder to train, so it
    # is ignored.
    aux_action_loss_weight: float = model_field(0.0)
    # Min-SNR loss weighting (Hang et al. 2023): the loss at noise level t is weighted by min(SNR_t, gamma)/SNR_t
    # with epsilon prediction (min(SNR_t, gamma) with sample prediction), so the nearly clean levels, easy and
    # many, stop dominating the gradient. None (the paper): every level weighs the same.
    min_snr_gamma: float | None = training_field(None)
    # Inference fast path (U-Net): FiLM precomputed per chunk, convolutions as matmuls. Same outputs as
    # the eager modules to float tolerance; false runs the eager modules (e.g. to debug a custom layer).
    fast_inference: bool = inference_field(True)
    # torch.compile the training loss and each denoising step at inference (LeRobot's `diffusion` names).
    # The first training step and the first chunk compile (about a minute on a CPU); the compiled code is
    # cached on disk (compiled.py), so a second start of the same model is warm in seconds. Off by default:
    # what it gains depends on the machine (BENCHMARKS.md). May be changed at load time.
    compile_model: bool = inference_field(False)
    # "default", "reduce-overhead" (CUDA graphs on a GPU, the same as "default" on a CPU), "max-autotune" or
    # "max-autotune-no-cudagraphs" (also tries generated matmul kernels: a longer first compile).
    compile_mode: str = inference_field("reduce-overhead")

    # EMA of the weights (reference schedule); every returned action uses the EMA weights when on. At load
    # time false acts with the live weights of an EMA checkpoint.
    use_ema: bool = inference_field(True)
    # decay = 1 - (1 + step / ema_inv_gamma) ** -ema_power, at most ema_max_decay (the reference's values).
    ema_inv_gamma: float = training_field(1.0)
    ema_power: float = training_field(0.75)
    ema_max_decay: float = training_field(0.9999)

    # Runtime guard: clamp returned actions to the range seen in training ([-1, 1] after min/max).
    clamp_actions: bool = inference_field(True)

    # Optimizer and schedule (reference: AdamW, cosine with warmup), used unless lerobot-train is given its own.
    # Peak learning rate, reached after the warmup, then cosine decay to 0 at the run's last step.
    optimizer_lr: float = training_field(1e-4)
    optimizer_betas: tuple[float, float] = training_field((0.95, 0.999))
    optimizer_eps: float = training_field(1e-8)
    # Weight decay of the denoiser's weight matrices (biases, norms and embeddings get none).
    optimizer_weight_decay: float = training_field(1e-6)
    # Weight decay of the observation encoder's parameters.
    optimizer_encoder_weight_decay: float = training_field(1e-6)
    # Gradients are clipped to this global norm before each step.
    optimizer_grad_clip_norm: float = training_field(10.0)
    # Steps of linear warmup from 0 to optimizer_lr.
    scheduler_warmup_steps: int = training_field(500)

    def __post_init__(self):
        super().__post_init__()
        if self.drop_n_last_frames is None:
            self.drop_n_last_frames = max(0, self.horizon - self.n_obs_steps - 7)
        if self.distill_teacher_path is not None and self.distilled_steps is None:
            self._become_student()
        self._validate()

    def _become_student(self) -> None:
        """The teacher's config (--policy.path) turned into its student's: its DDIM-N is what the student learns
        to shortcut, and the student acts with the one-step consistency sampler unless told otherwise."""
        if self.noise_scheduler_type != "DDIM":
            raise ConfigError(
                "noise_scheduler_type", self.noise_scheduler_type,
                "'DDIM' for a teacher to distil (its deterministic trajectories are what the student learns)",
            )
        self.distilled_steps = self.sampler_steps
        self.noise_scheduler_type, self.num_inference_steps = "consistency", 1

    def __setattr__(self, name, value):
        # lerobot-rollout --inference.type=rtc sets `rtc_config` on the loaded policy's config before it
        # connects the robot. Its loop hands the policy one observation per chunk, so a history of
        # n_obs_steps > 1 would hold frames a whole chunk apart, unlike training: refuse before the arm moves.
        if name == "rtc_config" and value is not None and getattr(value, "enabled", True) and self.n_obs_steps > 1:
            raise ConfigError("n_obs_steps", self.n_obs_steps, RTC_NEEDS_ONE_OBS)
        super().__setattr__(name, value)

    # --- validation -------------------------------------------------------------------------------
    def _validate_optimizer(self) -> None:
        for name in ("optimizer_lr", "optimizer_eps", "optimizer_grad_clip_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "a positive number")
        for name in ("optimizer_weight_decay", "optimizer_encoder_weight_decay", "scheduler_warmup_steps"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, getattr(self, name), "a number >= 0")
        if len(self.optimizer_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.optimizer_betas):
            raise ConfigError("optimizer_betas", self.optimizer_betas, "two numbers in [0, 1)")

    def _validate_sampler(self) -> None:
        if self.distilled_steps is None:
            if self.noise_scheduler_type in DISTILLED_SAMPLERS:
                raise ConfigError(
                    "noise_scheduler_type", self.noise_scheduler_type,
                    f"one of {', '.join(map(repr, SAMPLERS))}: {self.noise_scheduler_type!r} acts only with a "
                    "distilled student (distilled_steps set; see distill_teacher_path), and this is a diffusion model",
                )
            check_choice("noise_scheduler_type", self.noise_scheduler_type, SAMPLERS)
            return
        if not 1 <= self.distilled_steps <= self.num_train_timesteps:
            raise ConfigError(
                "distilled_steps", self.distilled_steps, f"None or 1..num_train_timesteps={self.num_train_timesteps}"
            )
        if self.noise_scheduler_type not in DISTILLED_SAMPLERS:
            raise ConfigError(
                "noise_scheduler_type", self.noise_scheduler_type,
                f"one of {', '.join(map(repr, DISTILLED_SAMPLERS))}: this is a student distilled from DDIM-"
                f"{self.distilled_steps} (distilled_steps), whose network the diffusion samplers cannot step with",
            )
        if self.num_inference_steps is None or not 1 <= self.num_inference_steps <= self.distilled_steps:
            raise ConfigError(
                "num_inference_steps", self.num_inference_steps,
                f"1..distilled_steps={self.distilled_steps} for a distilled student (1: one denoiser call per chunk)",
            )

    def _validate_limits(self) -> None:
        # Upper bounds on what a config (e.g. a downloaded one) could set to hang a robot or exhaust memory.
        for name, most in LIMITS.items():
            value = getattr(self, name, None)
            values = value if isinstance(value, (tuple, list)) else (value,)
            if any(v is not None and v > most for v in values):
                raise ConfigError(name, value, f"at most {most} (a larger value would hang or exhaust memory)")
        estimate = self.estimate_denoiser_parameters()
        if estimate > MAX_DENOISER_PARAMETERS:
            names = self.denoiser_size_fields
            raise ConfigError(
                "/".join(names), tuple(getattr(self, n) for n in names),
                f"settings that build a denoiser of at most {MAX_DENOISER_PARAMETERS / 1e9:.1f} billion "
                f"parameters; these build about {estimate / 1e9:.1f} billion (estimated before the dataset is "
                "known; the EMA copy doubles it)",
            )

    def _validate(self) -> None:
        if self.n_obs_steps < 1:
            raise ConfigError("n_obs_steps", self.n_obs_steps, "an integer >= 1")
        if not 0.0 <= self.aux_action_loss_weight <= 100.0:
            raise ConfigError("aux_action_loss_weight", self.aux_action_loss_weight, "a number in [0, 100] (0: off)")
        if self.min_snr_gamma is not None and not 0.0 < self.min_snr_gamma <= 1000.0:
            raise ConfigError("min_snr_gamma", self.min_snr_gamma, "None (off) or a number in (0, 1000], e.g. 5")
        if not 0.0 <= self.distill_pure_noise_share <= 1.0:
            raise ConfigError("distill_pure_noise_share", self.distill_pure_noise_share, "a fraction in [0, 1]")
        if self.noise_samples_per_observation < 1:
            raise ConfigError("noise_samples_per_observation", self.noise_samples_per_observation, "an integer >= 1")
        if self.horizon < 1:
            raise ConfigError("horizon", self.horizon, "an integer >= 1")
        max_action_steps = self.horizon - self.n_obs_steps + 1
        if not 1 <= self.n_action_steps <= max_action_steps:
            raise ConfigError(
                "n_action_steps",
                self.n_action_steps,
                f"1..horizon - n_obs_steps + 1 = {max_action_steps} (horizon={self.horizon}, "
                f"n_obs_steps={self.n_obs_steps})",
            )
        if self.drop_n_last_frames < 0:
            raise ConfigError("drop_n_last_frames", self.drop_n_last_frames, "an integer >= 0")
        self._validate_sampler()
        check_choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_choice("vision_backbone", self.vision_backbone, VISION_BACKBONES)
        check_choice("compile_mode", self.compile_mode, COMPILE_MODES)
        if self.num_train_timesteps < 1:
            raise ConfigError("num_train_timesteps", self.num_train_timesteps, "an integer >= 1")
        if self.num_inference_steps is not None and not (
            1 <= self.num_inference_steps <= self.num_train_timesteps
        ):
            raise ConfigError(
                "num_inference_steps",
                self.num_inference_steps,
                f"None or 1..num_train_timesteps={self.num_train_timesteps}",
            )
        if self.noise_scheduler_type == "DPM++2M" and self.sampler_steps >= self.num_train_timesteps:
            # Its step grid puts n + 1 points on T - 1 integers: from n = T on, two coincide (a zero step, NaN).
            raise ConfigError(
                "num_inference_steps",
                self.num_inference_steps,
                f"1..num_train_timesteps - 1 = {self.num_train_timesteps - 1} with noise_scheduler_type='DPM++2M' "
                "(None means num_train_timesteps)",
            )
        for name in ("crop_shape", "resize_shape"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or not 1 <= min(value) <= max(value) <= MAX_IMAGE_SIDE):
                raise ConfigError(name, value, f"None or two integers (H, W) in 1..{MAX_IMAGE_SIDE}")
        if not 0.0 < self.crop_ratio <= 1.0:
            raise ConfigError("crop_ratio", self.crop_ratio, "a fraction in (0, 1] (1: no crop)")
        if self.spatial_softmax_num_keypoints < 1:
            raise ConfigError("spatial_softmax_num_keypoints", self.spatial_softmax_num_keypoints, "an integer >= 1")
        self._validate_optimizer()
        if not 0.0 <= self.ema_max_decay < 1.0:
            raise ConfigError("ema_max_decay", self.ema_max_decay, "a number in [0, 1)")
        if self.ema_inv_gamma <= 0 or self.ema_power <= 0:
            raise ConfigError("ema_inv_gamma/ema_power", (self.ema_inv_gamma, self.ema_power), "positive numbers")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ConfigError("beta_start/beta_end", (self.beta_start, self.beta_end), "0 < beta_start < beta_end < 1")
        if self.clip_sample and self.clip_sample_range <= 0:
            raise ConfigError("clip_sample_range", self.clip_sample_range, "a positive number")
        action_norm = self.normalization_mapping.get("ACTION")
        if self.clip_sample and action_norm is not NormalizationMode.MIN_MAX:
            # Clipping to [-1, 1] only means "the trained range" when actions are min/max normalised.
            raise ConfigError(
                "clip_sample", self.clip_sample, f"false when ACTION normalisation is {action_norm} (not MIN_MAX)"
            )
        self._validate_limits()

    def validate_features(self) -> None:
        """Checks that need the dataset's features; LeRobot fills them in before building the policy."""
        if self.action_feature is None:
            raise ConfigError("output_features", list(self.output_features or {}), "a feature named 'action'")
        usable = (FeatureType.STATE, FeatureType.ENV, FeatureType.VISUAL)
        if not any(ft.type in usable for ft in (self.input_features or {}).values()):
            raise ConfigError(
                "input_features",
                list(self.input_features or {}),
                "at least one of observation.state, observation.environment_state, observation.image(s)",
            )
        if not self.image_features:
            return
        channels = {key: ft.shape[0] for key, ft in self.image_features.items()}
        if len(set(channels.values())) > 1:
            raise ConfigError("input_features", channels, "cameras with the same number of channels")
        crop, field = self.image_crop_shape, "crop_shape" if self.crop_shape else "crop_ratio"
        working = self.image_working_shape
        if self.crop_shape is not None and (crop[0] > working[0] or crop[1] > working[1]):
            raise ConfigError("crop_shape", self.crop_shape, f"at most the working image size {working}")
        fmap = tuple(resnet_feature_size(side) for side in crop)
        if min(fmap) < MIN_FEATURE_MAP:
            value = self.crop_shape if self.crop_shape else self.crop_ratio
            raise ConfigError(
                field, value,
                f"a crop that leaves the ResNet a feature map of at least {MIN_FEATURE_MAP}x{MIN_FEATURE_MAP}: "
                f"crop {crop} of working size {working} gives {fmap[0]}x{fmap[1]} (raise crop_ratio/crop_shape "
                f"or resize_shape; a side of at least {32 * (MIN_FEATURE_MAP - 1) + 1} px is needed)",
            )

    @property
    def image_working_shape(self) -> tuple[int, int] | None:
        """(H, W) every camera is resized to; None without cameras."""
        if not self.image_features:
            return None
        if self.resize_shape is not None:
            return tuple(self.resize_shape)
        h, w = max((tuple(ft.shape[1:]) for ft in self.image_features.values()), key=lambda hw: hw[0] * hw[1])
        scale = min(1.0, (AUTO_WORKING_AREA / (h * w)) ** 0.5)
        return max(1, round(h * scale)), max(1, round(w * scale))

    @property
    def image_crop_shape(self) -> tuple[int, int] | None:
        """(H, W) of the crop taken from the working size."""
        working = self.image_working_shape
        if working is None:
            return None
        if self.crop_shape is not None:
            return tuple(self.crop_shape)
        return max(1, int(working[0] * self.crop_ratio)), max(1, int(working[1] * self.crop_ratio))

    # --- what LeRobot reads -------------------------------------------------------------------------
    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1 - self.n_obs_steps + self.horizon))

    @property
    def reward_delta_indices(self) -> None:
        return None

    @property
    def sampler_steps(self) -> int:
        return self.num_inference_steps or self.num_train_timesteps

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineAnnealingWithWarmupSchedulerConfig:
        return CosineAnnealingWithWarmupSchedulerConfig(num_warmup_steps=self.scheduler_warmup_steps)

    # What each registered type defines (register_policy_type sets denoiser_type).
    denoiser_type: ClassVar[str]
    # The fields estimate_denoiser_parameters reads that set its size, named when it is too large.
    denoiser_size_fields: ClassVar[tuple[str, ...]]

    def estimate_denoiser_parameters(self) -> int:
        """The weights (biases and norms left out, well under 1%) of the denoiser this config builds, from its
        fields alone, for ASSUMED_ACTION_DIM and ASSUMED_OBS_FEATURES: counted without building it."""
        raise NotImplementedError


def register_policy_type(policy_type: str, denoiser_type: str, denoiser: str):
    """Class decorator: the config of `--policy.type=policy_type`, whose network is `denoiser` ("module:Class"
    of this package, imported when a policy is built). LeRobot finds the policy and processors by the config's
    name; modeling_ and processor_diffusion_plus.py provide them for every registered type."""

    def register(cls):
        cls.denoiser_type = denoiser_type
        registry.register_denoiser(denoiser_type, policy_type, cls, denoiser)
        return PreTrainedConfig.register_subclass(policy_type)(cls)

    return register


@register_policy_type("diffusion_plus", "unet", "denoiser_unet:UNet1dDenoiser")
@dataclass
class DiffusionPlusConfig(DiffusionPlusBaseConfig):
    """Diffusion Policy with the 1D temporal U-Net denoiser (the paper's DP-C)."""

    # Channels of each U-Net level; every level but the last halves the time axis. (256, 512, 1024) is the
    # paper's real-robot size (63.5M); (64, 128, 256) (4.5M) is practical on a CPU.
    down_dims: tuple[int, ...] = model_field((256, 512, 1024))
    # Temporal convolution width (odd, so the length is kept).
    kernel_size: int = model_field(5)
    # GroupNorm groups in every residual block; must divide every entry of down_dims.
    n_groups: int = model_field(8)
    # Width of the sinusoidal diffusion-step embedding, fed with the observation features to FiLM.
    diffusion_step_embed_dim: int = model_field(128)
    # FiLM with a per-channel scale and bias (the paper); false uses the bias only.
    use_film_scale_modulation: bool = model_field(True)

    denoiser_size_fields = ("down_dims", "kernel_size", "diffusion_step_embed_dim", "n_obs_steps")

    def estimate_denoiser_parameters(self) -> int:
        # The layers of denoiser_unet.py.
        A, O, n_obs = ASSUMED_ACTION_DIM, ASSUMED_OBS_FEATURES, self.n_obs_steps
        dims, k = tuple(self.down_dims), self.kernel_size
        if not dims:
            return 0
        E = self.diffusion_step_embed_dim
        film = (E + O * n_obs) * (2 if self.use_film_scale_modulation else 1)

        def block(cin: int, cout: int) -> int:  # two convolutions, FiLM, a 1x1 residual where channels change
            return k * cout * (cin + cout) + film * cout + (cin * cout if cin != cout else 0)

        levels = list(zip((A, *dims[:-1]), dims))
        down = sum(block(i, o) + block(o, o) + 3 * o * o for i, o in levels) - 3 * dims[-1] ** 2
        up = sum(block(2 * o, i) + block(i, i) + 4 * i * i for i, o in levels[1:])
        mid, head, step = 2 * block(dims[-1], dims[-1]), k * dims[0] ** 2 + dims[0] * A, 8 * E * E
        return down + mid + up + head + step

    def _validate(self) -> None:
        super()._validate()
        if len(self.down_dims) < 1 or min(self.down_dims) < 1:
            raise ConfigError("down_dims", self.down_dims, "one or more positive channel counts")
        if self.n_groups < 1 or any(d % self.n_groups for d in self.down_dims):
            raise ConfigError("n_groups", self.n_groups, f"a divisor of every entry of down_dims={self.down_dims}")
        if self.diffusion_step_embed_dim < 4 or self.diffusion_step_embed_dim % 2:
            raise ConfigError("diffusion_step_embed_dim", self.diffusion_step_embed_dim, "an even integer >= 4")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError("kernel_size", self.kernel_size, "an odd integer >= 1 (keeps the length)")
        # Each level but the last halves the time axis, so that many halvings must divide the horizon.
        factor = 2 ** (len(self.down_dims) - 1)
        if self.horizon % factor:
            raise ConfigError(
                "horizon",
                self.horizon,
                f"a multiple of 2^(len(down_dims) - 1) = {factor} for down_dims={self.down_dims}",
            )


@register_policy_type("diffusion_plus_transformer", "transformer", "denoiser_transformer:TransformerDenoiser")
@dataclass
class DiffusionPlusTransformerConfig(DiffusionPlusBaseConfig):
    """Diffusion Policy with the transformer denoiser (the paper's DP-T)."""

    # Decoder blocks, attention heads and token width (the paper: 8 x 4 heads x 256, about 9M parameters).
    n_layer: int = model_field(8)
    n_head: int = model_field(4)
    n_emb: int = model_field(256)
    # Dropout on the token embeddings and inside attention (the paper: 0 and 0.3; 0.01 on PushT).
    p_drop_emb: float = training_field(0.0)
    p_drop_attn: float = training_field(0.3)
    # An action token attends only to itself and earlier ones, and to the observations up to its own step.
    causal_attn: bool = model_field(True)
    # 0: observation tokens go through an MLP; > 0: through a transformer encoder of that many layers.
    n_cond_layers: int = model_field(0)
    # Also condition every block on the step and observations by adaLN-Zero (DiT): a scale and shift of each
    # LayerNorm and a gate on each branch, from the condition. Off: the paper's DP-T, conditioned through
    # cross-attention only. On, every action token sees every observation step through it (as the U-Net's
    # FiLM), whatever causal_attn hides from its cross-attention.
    adaln: bool = model_field(False)

    # The paper's transformer recipe: AdamW (0.9, 0.95), decay 1e-3 on weight matrices, 1000 warmup steps.
    optimizer_betas: tuple[float, float] = training_field((0.9, 0.95))
    optimizer_weight_decay: float = training_field(1e-3)
    scheduler_warmup_steps: int = training_field(1000)

    denoiser_size_fields = ("n_layer", "n_emb", "n_cond_layers")

    def estimate_denoiser_parameters(self) -> int:
        # The layers of denoiser_transformer.py.
        A, O, C = ASSUMED_ACTION_DIM, ASSUMED_OBS_FEATURES, self.n_emb
        # A decoder block: self- and cross-attention (4 C x C each) and an MLP 4 C wide (8 C x C).
        blocks = 16 * C * C * self.n_layer
        cond = 12 * C * C * self.n_cond_layers if self.n_cond_layers else 8 * C * C
        # adaLN: 9 C x C per block and the condition vector's (1 + n_obs_steps) C x C.
        adaln = (9 * self.n_layer + 1 + self.n_obs_steps) * C * C if self.adaln else 0
        return blocks + cond + adaln + C * (2 * A + O + self.horizon + 1 + self.n_obs_steps)

    def _validate(self) -> None:
        super()._validate()
        for name in ("n_layer", "n_head", "n_emb"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "an integer >= 1")
        if self.n_emb < 4 or self.n_emb % 2 or self.n_emb % self.n_head:
            raise ConfigError("n_emb", self.n_emb, f"an even integer >= 4 that is a multiple of n_head={self.n_head}")
        if self.n_cond_layers < 0:
            raise ConfigError("n_cond_layers", self.n_cond_layers, "an integer >= 0")
        for name in ("p_drop_emb", "p_drop_attn"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "a probability in [0, 1)")


__all__ = ["DiffusionPlusBaseConfig", "DiffusionPlusConfig", "DiffusionPlusTransformerConfig"]
