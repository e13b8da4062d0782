"""Checkpoint compatibility: a saved policy loads only into the network it was trained as.

`from_pretrained` rebuilds the policy from its config, where command-line overrides have already been
applied, then loads `model.safetensors`. An override of a field that shapes the network or its inputs
(a crop, a mask, a group count) can leave every weight shape intact and still change the actions, so the
model-defining fields are saved beside the weights (`model_fields`, JSON as bytes) and compared by name at
load time. Only inference settings (sampler, step count, actions per chunk, EMA use, fast path, compilation) may change.
Weights must also be complete, of the right shapes and finite.
"""

from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .errors import CheckpointError

# Fields of every policy type that define the trained network or what it sees.
BASE_MODEL_FIELDS = (
    "n_obs_steps", "horizon", "vision_backbone", "spatial_softmax_num_keypoints", "resize_shape",
    "crop_ratio", "crop_shape", "use_separate_rgb_encoder_per_camera", "num_train_timesteps", "beta_schedule",
    "beta_start", "beta_end", "prediction_type", "clip_sample", "clip_sample_range", "normalization_mapping",
)
DENOISER_MODEL_FIELDS = {
    "unet": ("down_dims", "kernel_size", "n_groups", "diffusion_step_embed_dim", "use_film_scale_modulation"),
    "transformer": ("n_layer", "n_head", "n_emb", "causal_attn", "n_cond_layers"),
}


def model_fields(config) -> dict:
    fields = {name: getattr(config, name) for name in BASE_MODEL_FIELDS + DENOISER_MODEL_FIELDS[config.denoiser_type]}
    # The backbone's normalisation layers follow from two fields; what matters is which layers were built.
    fields["backbone_norm"] = (
        "frozen_batchnorm" if config.pretrained_backbone_weights else
        "groupnorm" if config.use_group_norm else "batchnorm"
    )
    return {k: _plain(v) for k, v in fields.items()}


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    return getattr(value, "value", value)  # enums by value


def encode(fields: dict) -> Tensor:
    return torch.tensor(list(json.dumps(fields, sort_keys=True).encode()), dtype=torch.uint8)


def decode(tensor: Tensor) -> dict:
    return json.loads(bytes(tensor.tolist()).decode())


def load_strict(model: nn.Module, model_file: str, drop_prefix: str | None = None) -> None:
    """Load `model_file` into `model`, or raise CheckpointError saying which fields or keys disagree."""
    try:
        # On the CPU: from_pretrained moves the policy to its device afterwards (per rank under DDP).
        state = load_file(model_file, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read weights {model_file}: truncated or corrupted ({e})") from e
    if drop_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    expected = model.state_dict()
    _check_fields(state, expected, model_file)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"weights in {model_file} do not match the policy config: "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}, "
            f"wrong shape {wrong_shape[:10]}"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"weights in {model_file} contain NaN or Inf ({bad[:10]}{'...' if len(bad) > 10 else ''}); "
            "refusing to load a policy that could send non-finite actions"
        )
    model.load_state_dict(state, strict=True)


def _check_fields(state: dict, expected: dict, model_file: str) -> None:
    if "model_fields" in state:
        saved, wanted = decode(state["model_fields"]), decode(expected["model_fields"])
        differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        if differ:
            details = ", ".join(f"{k}: trained {saved.get(k)!r}, asked {wanted.get(k)!r}" for k in differ)
            raise CheckpointError(
                f"{model_file} was trained with other settings than this config asks for ({details}); these "
                "define the network or its inputs and must be as in training. Only inference settings "
                "(noise_scheduler_type, num_inference_steps, n_action_steps, use_ema, fast_inference, "
                "compile_model, compile_mode, clamp_actions) may change at load time"
            )
        state["model_fields"] = expected["model_fields"]
    # Checkpoints written before `model_fields` existed carry the schedule and a few settings as numbers.
    for key, fields in (("alphas_cumprod", "beta_schedule, beta_start, beta_end, num_train_timesteps"),
                        ("trained_settings", "horizon, n_obs_steps, prediction_type")):
        saved, wanted = state.get(key), expected[key].cpu()
        if saved is not None and (saved.shape != wanted.shape or not torch.allclose(saved, wanted, atol=1e-7)):
            raise CheckpointError(
                f"{model_file} was trained with other {fields} than this config asks for; set these "
                "as in training (inference-only settings such as noise_scheduler_type, "
                "num_inference_steps or n_action_steps may change at load time)"
            )
    if "model_fields" not in state:
        state["model_fields"] = expected["model_fields"]
