"""LeRobot's own discovery, factory and processors drive the plugin."""

import importlib.metadata
import json
import subprocess
import sys

import pytest
import torch

from conftest import POLICY_TYPES, make_config, make_policy
from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature


def test_distribution_name_keeps_underscores():
    # LeRobot imports distributions whose METADATA Name starts with "lerobot_policy_" (underscores).
    assert importlib.metadata.metadata("lerobot_policy_diffusion_plus")["Name"] == "lerobot_policy_diffusion_plus"


def test_plugin_discovery_registers_both_types():
    """In a fresh interpreter, LeRobot's plugin discovery alone makes both --policy.type values resolve."""
    code = (
        "import json\n"
        "from lerobot.configs.policies import PreTrainedConfig\n"
        "before = set(PreTrainedConfig.get_known_choices())\n"
        "from lerobot.utils.import_utils import register_third_party_plugins\n"
        "register_third_party_plugins()\n"
        "from lerobot.policies.factory import get_policy_class, make_policy_config\n"
        "out = {}\n"
        "for name in ['diffusion_plus', 'diffusion_plus_transformer']:\n"
        "    out[name] = [name in before, get_policy_class(name).__name__, type(make_policy_config(name, device='cpu')).__name__]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["diffusion_plus"] == [False, "DiffusionPlusPolicy", "DiffusionPlusConfig"]
    assert out["diffusion_plus_transformer"] == [
        False,
        "DiffusionPlusTransformerPolicy",
        "DiffusionPlusTransformerConfig",
    ]


def _dataset_stats():
    stats = {}
    for key, dim in [("observation.state", 2), ("observation.environment_state", 16), ("action", 2)]:
        stats[key] = {"min": torch.full((dim,), 10.0), "max": torch.full((dim,), 500.0),
                      "mean": torch.full((dim,), 250.0), "std": torch.full((dim,), 100.0)}
    stats["observation.image"] = {"min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1),
                                  "mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}
    return stats


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_factory_builds_policy_and_processors(policy_type):
    from lerobot.policies.factory import make_pre_post_processors

    config = make_config(policy_type)
    pre, post = make_pre_post_processors(config, dataset_stats=_dataset_stats())
    names = [type(step).__name__ for step in pre.steps]
    assert names == [
        "RenameObservationsProcessorStep",
        "AddBatchDimensionProcessorStep",
        "DeviceProcessorStep",
        "NormalizerProcessorStep",
    ]
    assert [type(step).__name__ for step in post.steps] == ["UnnormalizerProcessorStep", "DeviceProcessorStep"]
    policy = make_policy(config)
    assert policy.name == policy_type


def test_make_policy_with_dataset_meta(pusht_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy as lerobot_make_policy

    meta = LeRobotDatasetMetadata("local/pusht", root=pusht_dataset)
    config = make_config("diffusion_plus", input_features={}, output_features={})
    policy = lerobot_make_policy(config, ds_meta=meta)
    assert set(policy.config.input_features) == {"observation.state", "observation.environment_state"}
    assert policy.config.output_features["action"].shape == (2,)


def test_every_accepted_input_type_is_normalised():
    """STATE, ENV and VISUAL inputs and the ACTION target all go through the normaliser (none pass raw)."""
    from lerobot.policies.factory import make_pre_post_processors

    features = {
        "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
        "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
    }
    config = make_config("diffusion_plus", input_features=features)
    assert config.normalization_mapping["ENV"] is NormalizationMode.MIN_MAX
    pre, post = make_pre_post_processors(config, dataset_stats=_dataset_stats())
    raw = {
        "observation.state": torch.full((2,), 500.0),
        "observation.environment_state": torch.full((16,), 10.0),
        "observation.image": torch.full((3, 32, 32), 0.75),
        "action": torch.full((2,), 255.0),
    }
    out = pre(dict(raw))
    torch.testing.assert_close(out["observation.state"], torch.ones(1, 2))  # max -> +1
    torch.testing.assert_close(out["observation.environment_state"], -torch.ones(1, 16))  # min -> -1
    torch.testing.assert_close(out["observation.image"], torch.ones(1, 3, 32, 32))  # (0.75 - 0.5) / 0.25
    torch.testing.assert_close(out["action"], torch.zeros(1, 2))  # midpoint -> 0
    torch.testing.assert_close(post(torch.tensor([[1.0, -1.0]])), torch.tensor([[500.0, 10.0]]))
