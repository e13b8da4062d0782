"""Pre/post-processors: LeRobot's standard steps, so eval and rollout overrides find them by name.

Pre: rename_observations_processor -> to_batch_processor -> device_processor -> normalizer_processor.
Post: unnormalizer_processor -> device_processor (cpu). Normalisation follows the config's
`normalization_mapping`, which covers every input type the policy accepts (STATE, ENV, VISUAL) and ACTION.
"""

from __future__ import annotations

from typing import Any

import torch

from lerobot.processor import PolicyAction, PolicyProcessorPipeline, make_default_pre_post_processors

from . import registry
from .configuration_diffusion_plus import DiffusionPlusBaseConfig

Pipelines = tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]


def make_diffusion_plus_pre_post_processors(
    config: DiffusionPlusBaseConfig, dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None
) -> Pipelines:
    return make_default_pre_post_processors(config, dataset_stats)


# LeRobot's factory looks up `make_<policy type>_pre_post_processors` here: every registered type shares the
# same pipeline (e.g. make_diffusion_plus_transformer_pre_post_processors).
for _policy_type in registry.policy_types():
    globals()[f"make_{_policy_type}_pre_post_processors"] = make_diffusion_plus_pre_post_processors
