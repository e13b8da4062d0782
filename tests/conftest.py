"""Shared fixtures: small policy configs for each input layout and a tiny PushT dataset from the human demos."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The test models are tiny: one thread avoids thread hand-off costs that dominate their runtime.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ZARR = ROOT.parent / "shared" / "data" / "pusht_cchi_v7_replay.zarr"
sys.path.insert(0, str(ROOT / "examples" / "pusht"))

from lerobot.configs import FeatureType, PolicyFeature  # noqa: E402

from lerobot_policy_diffusion_plus import DiffusionPlusConfig, DiffusionPlusTransformerConfig  # noqa: E402

POLICY_TYPES = ["diffusion_plus", "diffusion_plus_transformer"]
CONFIGS = {"diffusion_plus": DiffusionPlusConfig, "diffusion_plus_transformer": DiffusionPlusTransformerConfig}
# Small denoisers so the suite stays fast; every other field keeps its default.
SMALL = {
    "diffusion_plus": {"down_dims": (16, 32, 64), "diffusion_step_embed_dim": 16, "n_groups": 4},
    "diffusion_plus_transformer": {"n_layer": 2, "n_head": 2, "n_emb": 32},
}
LAYOUTS = {
    "state_only": {
        "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
    },
    "one_camera": {
        "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
        "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
    },
    "two_cameras": {
        "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
    },
}
ACTION = {"action": PolicyFeature(FeatureType.ACTION, (2,))}


def make_config(policy_type: str, layout: str = "state_only", **overrides):
    kwargs = {
        "device": "cpu",
        "input_features": dict(LAYOUTS[layout]),
        "output_features": dict(ACTION),
        "crop_shape": (28, 28),
        **SMALL[policy_type],
        **overrides,
    }
    return CONFIGS[policy_type](**kwargs)


def make_policy(config):
    from lerobot.policies.factory import get_policy_class

    return get_policy_class(config.type)(config)


def make_batch(config, batch_size: int = 3, time_axis: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random normalised inputs (with the training time axis) and actions in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    T = config.n_obs_steps
    batch = {}
    for key, ft in config.input_features.items():
        shape = (batch_size, T, *ft.shape) if time_axis else (batch_size, *ft.shape)
        batch[key] = torch.randn(shape, generator=g)
    batch["action"] = torch.rand(batch_size, config.horizon, 2, generator=g) * 2 - 1
    batch["action_is_pad"] = torch.zeros(batch_size, config.horizon, dtype=torch.bool)
    return batch


@pytest.fixture(scope="session")
def pusht_dataset(tmp_path_factory) -> Path:
    """The first 3 human PushT episodes as a keypoint-only LeRobotDataset."""
    if not ZARR.exists():
        pytest.skip(f"{ZARR} not present")
    from convert_zarr import convert

    root = tmp_path_factory.mktemp("data") / "pusht3"
    convert(ZARR, root, episodes=3, with_images=False, force=False)
    return root
