"""The names the configs choose between, and where each denoiser and sampler is implemented.

Standard library only: the configuration module checks names against these while LeRobot parses the command
line, without importing torch's network code. Implementations are named as "module:attribute" of this
package and imported when first used.

A new denoiser is its module (an `nn.Module` with `from_config(config, action_dim, obs_feature_dim)`, see
denoiser_common.Denoiser) and its config subclass in configuration_diffusion_plus.py, declared with
`@register_policy_type`; the policy and processors LeRobot looks up by name, and the policy server's list,
follow from that. A new sampler is a step-table builder (samplers.StepTable, which may bring its own step
function) named in SAMPLERS, or in DISTILLED_SAMPLERS for a distilled student.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# noise_scheduler_type -> its step-table builder, (alphas_cumprod, num_inference_steps) -> samplers.StepTable.
SAMPLERS = {
    "DDPM": "samplers:ddpm_table",
    "DDIM": "samplers:ddim_table",
    "DPM++2M": "samplers:dpm_solver_pp_2m_table",
}
# The samplers of a distilled student (distillation.py): (alphas_cumprod, num_inference_steps, distilled_steps)
# -> samplers.StepTable. A student acts only with these, and a diffusion model never does: a student's
# network is no longer a noise predictor that the samplers above could step with.
DISTILLED_SAMPLERS = {
    "consistency": "samplers:consistency_table",
}


@dataclass(frozen=True)
class DenoiserEntry:
    policy_type: str  # LeRobot's --policy.type
    config_class: type
    denoiser: str  # "module:Class" of the network


# denoiser_type -> its entry, filled by the config classes' registration.
DENOISERS: dict[str, DenoiserEntry] = {}


def register_denoiser(denoiser_type: str, policy_type: str, config_class: type, denoiser: str) -> None:
    if denoiser_type in DENOISERS or policy_type in policy_types():
        raise ValueError(f"denoiser {denoiser_type!r} or policy type {policy_type!r} is already registered")
    DENOISERS[denoiser_type] = DenoiserEntry(policy_type, config_class, denoiser)


def policy_types() -> tuple[str, ...]:
    return tuple(entry.policy_type for entry in DENOISERS.values())


def load(ref: str):
    """The object a "module:attribute" reference of this package names, importing its module."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)
