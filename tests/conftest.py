"""Shared fixtures: small policy configs for each input layout and a tiny PushT dataset.

PushT data comes from the 206 human demos in `../shared/data/pusht_cchi_v7_replay.zarr` (`ZARR=/path` points
elsewhere, as in examples/pusht/demo.sh). A fresh clone has no such store: the tests that need PushT data
then use a small store in the same layout, written from a few episodes of the scripted expert (`pusht_zarr`),
so nothing is skipped. `ZARR=/nonexistent pytest ...` runs that variant where the human store is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The test models are tiny: one thread avoids thread hand-off costs that dominate their runtime.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ZARR = Path(os.environ.get("ZARR") or ROOT.parent / "shared" / "data" / "pusht_cchi_v7_replay.zarr")
HUMAN_DATA = ZARR.exists()
# Without the human store these expert episodes stand in for it: 51, 55 and 49 steps, the shortest of
# test_expert.py's fresh seeds (which shares them), so the store and the datasets made from it stay small.
EXPERT_SEEDS = (5000, 5003, 5009)

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
        "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
    },
    "two_cameras": {
        "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
    },
}
ACTION = {"action": PolicyFeature(FeatureType.ACTION, (2,))}


def make_config(policy_type: str, layout: str = "state_only", **overrides):
    kwargs = {
        "device": "cpu",
        "input_features": dict(LAYOUTS[layout]),
        "output_features": dict(ACTION),
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
def expert_episode():
    """`pusht_expert.run_episode(seed)`, each seed planned once per session (the stand-in store and
    test_expert.py share episodes). An episode recorded with images also serves a request without: the images
    are the only difference."""
    from diffusion_plus_tools.pusht_expert import run_episode

    cache: dict[tuple[int, bool], dict] = {}

    def episode(seed: int, with_images: bool = False) -> dict:
        for key in ((seed, True), (seed, with_images)):
            if key in cache:
                return cache[key]
        cache[seed, with_images] = run_episode(seed, with_images=with_images)
        return cache[seed, with_images]

    return episode


def write_expert_zarr(path: Path, episodes: list[dict]) -> Path:
    """A zarr v2 store with the arrays, dtypes and shapes of the human one (shared/data/README.md), holding
    expert episodes recorded with images. data/keypoint (the paper's 9 keypoints) and data/n_contacts, which
    the converter does not read, are stand-ins: the T's 8 gym-pusht vertices plus the block position; 0."""
    import numpy as np
    import zarr

    from diffusion_plus_tools.pusht_data import block_keypoints

    frames = [f for e in episodes for f in e["frames"]]
    agent = np.array([f["observation.state"] for f in frames])
    block = np.concatenate([e["block_poses"] for e in episodes])
    n = len(frames)
    arrays = {
        "data/img": np.stack([f["observation.image"] for f in frames]).astype(np.float32),
        "data/state": np.concatenate([agent, block], axis=1).astype(np.float32),
        "data/action": np.array([f["action"] for f in frames], np.float32),
        "data/keypoint": np.concatenate([block_keypoints(block).reshape(n, 8, 2), block[:, None, :2]], axis=1)
        .astype(np.float32),
        "data/n_contacts": np.zeros((n, 1), np.float32),
        "meta/episode_ends": np.cumsum([e["length"] for e in episodes]).astype(np.int64),
    }
    store = zarr.open(str(path), mode="w")
    for name, value in arrays.items():
        store[name] = value
    return path


@pytest.fixture(scope="session")
def pusht_zarr(tmp_path_factory, expert_episode) -> Path:
    """The human PushT store if present, else one written from the expert episodes of EXPERT_SEEDS."""
    if HUMAN_DATA:
        return ZARR
    episodes = [expert_episode(seed, with_images=True) for seed in EXPERT_SEEDS]
    return write_expert_zarr(tmp_path_factory.mktemp("data") / "pusht_expert.zarr", episodes)


@pytest.fixture(scope="session")
def pusht_dataset(tmp_path_factory, pusht_zarr) -> Path:
    """The first 3 episodes of `pusht_zarr` (human or expert) as a keypoint-only LeRobotDataset."""
    from diffusion_plus_tools.pusht_zarr import convert

    root = tmp_path_factory.mktemp("data") / "pusht3"
    convert(pusht_zarr, root, episodes=3, with_images=False, force=False)
    return root
