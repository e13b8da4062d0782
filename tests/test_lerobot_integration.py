"""LeRobot's own discovery, factory and processors drive the plugin."""

import importlib.metadata
import inspect
import json
import subprocess
import sys
from copy import deepcopy

import pytest
import torch

from conftest import POLICY_TYPES, SMALL, make_config, make_policy
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


def test_configuration_imports_no_network_code():
    """LeRobot imports the configuration module to parse --policy flags (and every plugin at start-up): it
    must not pull in the samplers, denoisers or encoder, only the lists of names it checks."""
    code = (
        "import sys\n"
        "import lerobot_policy_diffusion_plus.configuration_diffusion_plus\n"
        "print(sorted(m for m in sys.modules if m.startswith('lerobot_policy_diffusion_plus.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {m.rsplit(".", 1)[-1] for m in eval(result.stdout.strip().splitlines()[-1])}
    heavy = {"samplers", "compiled", "denoiser_common", "denoiser_unet", "denoiser_transformer",
             "unet_fast_path", "diffusion_model", "obs_encoder", "modeling_diffusion_plus", "checkpoint"}
    assert "registry" in loaded and not loaded & heavy, loaded


def test_every_registered_denoiser_has_its_policy_processors_and_server_entry():
    """One registration (registry.DENOISERS) gives LeRobot's policy type, policy class and processors, the
    denoiser the model builds, its FSDP block, and the policy server's list."""
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    from lerobot_policy_diffusion_plus import registry
    from lerobot_policy_diffusion_plus.policy_server import POLICY_TYPES as SERVED

    assert set(registry.policy_types()) == set(POLICY_TYPES) == set(SERVED)
    for denoiser_type, entry in registry.DENOISERS.items():
        config = make_config(entry.policy_type)
        assert type(config) is entry.config_class and config.denoiser_type == denoiser_type
        policy = get_policy_class(entry.policy_type)(config)
        assert type(policy).config_class is entry.config_class and policy.name == entry.policy_type
        assert type(policy.model.denoiser) is registry.load(entry.denoiser)
        block = type(policy.model.denoiser).block
        assert policy._no_split_modules == [block.__name__]
        assert any(isinstance(m, block) for m in policy.modules())
        make_pre_post_processors(config, dataset_stats=_dataset_stats())


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


# --- LeRobot's own policy tests (tests/policies/test_policies.py in huggingface/lerobot, not in the wheel),
# for both plugin types after plugin discovery: the checks that need no download.


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_lerobot_get_policy_and_config_classes(policy_type):
    """LeRobot's `test_get_policy_and_config_classes`: the policy's `config` parameter is annotated with a
    class the config class subclasses (a postponed, string annotation fails LeRobot's issubclass)."""
    from lerobot.policies.factory import get_policy_class, make_policy_config
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    policy_cls = get_policy_class(policy_type)
    policy_cfg = make_policy_config(policy_type, device="cpu")
    assert policy_cls.name == policy_type
    annotation = inspect.signature(policy_cls.__init__).parameters["config"].annotation
    assert isinstance(annotation, type), f"{policy_cls.__name__}.__init__ config annotation: {annotation!r}"
    assert issubclass(policy_cfg.__class__, annotation)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_lerobot_policy_defaults_and_save_load(policy_type, tmp_path):
    """LeRobot's `test_policy_defaults`: the default config (default-sized denoiser) builds from dataset
    features (one square 84x84 camera, 6-d state and action). And its `test_save_and_load_pretrained` (with
    the small denoiser: the default one is 0.6 GB to write): loading with `config=` gives the same weights."""
    from lerobot.configs import FeatureType
    from lerobot.policies.factory import get_policy_class, make_policy_config
    from lerobot.utils.feature_utils import dataset_to_policy_features
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    features = dataset_to_policy_features({
        "observation.images.laptop": {"dtype": "image", "shape": (84, 84, 3),
                                      "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (6,), "names": joints},
        "action": {"dtype": "float32", "shape": (6,), "names": joints},
    })
    policy_cls = get_policy_class(policy_type)
    for overrides in ({}, SMALL[policy_type]):
        policy_cfg = make_policy_config(policy_type, device="cpu", **overrides)
        policy_cfg.output_features = {k: ft for k, ft in features.items() if ft.type is FeatureType.ACTION}
        policy_cfg.input_features = {k: ft for k, ft in features.items() if ft.type is not FeatureType.ACTION}
        policy = policy_cls(policy_cfg)
    policy.save_pretrained(tmp_path / "saved")
    loaded = policy_cls.from_pretrained(tmp_path / "saved", config=policy_cfg)
    torch.testing.assert_close(list(policy.parameters()), list(loaded.parameters()), rtol=0, atol=0)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_lerobot_policy_on_pusht(policy_type, pusht_dataset, tmp_path):
    """LeRobot's `test_policy` on local PushT data: a train config validates, the factory makes the policy
    from the dataset's metadata, a forward (+ backward) leaves the batch as it was, and `select_action` on a
    gym-pusht observation leaves it as it was and gives an action the env steps with."""
    from torch.utils.data import DataLoader

    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.datasets.factory import make_dataset
    from lerobot.envs.factory import make_env, make_env_config
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.factory import make_policy as lerobot_make_policy
    from lerobot.policies.factory import make_policy_config, make_pre_post_processors
    from lerobot.policies.pretrained import PreTrainedPolicy
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    train_cfg = TrainPipelineConfig(
        dataset=DatasetConfig(repo_id="local/pusht", root=str(pusht_dataset), episodes=[0]),
        policy=make_policy_config(policy_type, push_to_hub=False, device="cpu", num_inference_steps=10,
                                  **SMALL[policy_type]),
        env=make_env_config("pusht", obs_type="environment_state_agent_pos"),
        output_dir=tmp_path / "out",
    )
    train_cfg.validate()
    dataset = make_dataset(train_cfg)
    make_pre_post_processors(train_cfg.policy, None)
    policy = lerobot_make_policy(train_cfg.policy, ds_meta=dataset.meta)
    assert isinstance(policy, PreTrainedPolicy)
    assert set(policy.config.input_features) == {"observation.state", "observation.environment_state"}

    batch = next(iter(DataLoader(dataset, num_workers=0, batch_size=2, shuffle=True, drop_last=True)))
    batch_ = deepcopy(batch)
    loss, _ = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert set(batch) == set(batch_), "batch keys changed by a forward pass"
    for k in batch:
        value, before = batch[k], batch_[k]
        assert torch.equal(value, before) if isinstance(value, torch.Tensor) else value == before, k

    envs = make_env(train_cfg.env, n_envs=2)
    suite = next(iter(envs))
    env = envs[suite][next(iter(envs[suite]))]
    try:
        policy.reset()
        observation, _ = env.reset(seed=train_cfg.seed)
        observation = preprocess_observation(observation)
        observation_ = deepcopy(observation)
        with torch.inference_mode():
            action = policy.select_action(observation).cpu().numpy()
        assert set(observation) == set(observation_)
        assert all(torch.equal(observation[k], observation_[k]) for k in observation), "observation changed"
        assert action.shape == (2, 2)
        env.step(action)
    finally:
        env.close()
