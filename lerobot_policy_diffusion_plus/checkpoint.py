"""Checkpoint compatibility: a saved policy loads only into the network it was trained as.

`from_pretrained` rebuilds the policy from its config, where command-line overrides have already been
applied, then loads `model.safetensors`. An override of a field that shapes the network or its inputs
(a crop, a mask, a group count) can leave every weight shape intact and still change the actions, so the
config fields declared of kind "model" (configuration_diffusion_plus.py) are saved beside the weights
(`model_fields`, JSON as bytes) and compared by name at load time. Fields of kind "inference" (sampler, step
count, actions per chunk, EMA use, clipping, fast path, compilation) may change. Weights must also be complete,
of the right shapes and finite.
"""

from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .configuration_diffusion_plus import fields_of_kind
from .errors import CheckpointError

# The backbone's normalisation layers follow from two fields; what matters is which layers were built.
BACKBONE_NORM_FIELDS = ("pretrained_backbone_weights", "use_group_norm")


def model_fields(config) -> dict:
    names = [name for name in fields_of_kind(config, "model") if name not in BACKBONE_NORM_FIELDS]
    fields = {name: getattr(config, name) for name in names}
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


def differing_fields(saved: dict, wanted: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The model fields whose values differ, compared on the names both know: a field's kind may change between
    versions (clip_sample was saved until it became an inference field), and a newer model field is unknown to
    an older checkpoint."""
    return sorted(k for k in saved.keys() & wanted.keys() if k not in ignore and saved[k] != wanted[k])


def load_strict(model: nn.Module, model_file: str, drop_prefix: str | None = None) -> bool:
    """Load `model_file` into the policy `model`; a CheckpointError names the fields or keys that differ.
    True when these are a teacher's weights loaded into the student being distilled from it."""
    try:
        # On the CPU: from_pretrained moves the policy to its device afterwards (per rank under DDP).
        state = load_file(model_file, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read weights {model_file}: truncated or corrupted ({e})") from e
    if drop_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    expected = model.state_dict()
    # Distillation starts a student (distilled_steps set) from its teacher's checkpoint (not distilled).
    student = model.config.distill_teacher_path is not None
    from_teacher = _check_fields(state, expected, model_file, fields_of_kind(model.config, "inference"), student)
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
    return from_teacher


def _check_fields(
    state: dict, expected: dict, model_file: str, inference_fields: tuple[str, ...], student: bool
) -> bool:
    from_teacher = False
    if "model_fields" in state:
        saved, wanted = decode(state["model_fields"]), decode(expected["model_fields"])
        if student and saved.get("distilled_steps") is None:
            from_teacher = True
            saved["distilled_steps"] = wanted["distilled_steps"]
        differ = differing_fields(saved, wanted)
        if differ:
            details = ", ".join(f"{k}: trained {saved[k]!r}, asked {wanted[k]!r}" for k in differ)
            raise CheckpointError(
                f"{model_file} was trained with other settings than this config asks for ({details}); these "
                "define the network or its inputs and must be as in training. Only inference settings "
                f"({', '.join(inference_fields)}) may change at load time"
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
        from_teacher = student  # a teacher older than distillation
    return from_teacher
