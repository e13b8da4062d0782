"""Bad settings fail before any heavy work, and lerobot-train shows the user the field, value and what is allowed."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from cli import run_cli
from conftest import make_config
from lerobot.configs import FeatureType, PolicyFeature
from lerobot_policy_diffusion_plus.errors import ConfigError

# (policy type, bad flags, what the user must read)
CASES = {
    "horizon_not_divisible": ("diffusion_plus", ["--policy.horizon=10"],
                              ["horizon=10", "multiple of 2^(len(down_dims) - 1) = 4"]),
    "too_many_action_steps": ("diffusion_plus", ["--policy.n_action_steps=16"],
                              ["n_action_steps=16", "horizon - n_obs_steps + 1 = 15"]),
    "no_obs_steps": ("diffusion_plus", ["--policy.n_obs_steps=0"], ["n_obs_steps=0", ">= 1"]),
    "unknown_sampler": ("diffusion_plus", ["--policy.noise_scheduler_type=Euler"],
                        ["noise_scheduler_type='Euler'", "'DDPM', 'DDIM'"]),
    "unknown_beta_schedule": ("diffusion_plus", ["--policy.beta_schedule=cosine"],
                              ["beta_schedule='cosine'", "'squaredcos_cap_v2'"]),
    "unknown_prediction_type": ("diffusion_plus_transformer", ["--policy.prediction_type=v_prediction"],
                                ["prediction_type='v_prediction'", "'epsilon', 'sample'"]),
    "zero_inference_steps": ("diffusion_plus", ["--policy.num_inference_steps=0"],
                             ["num_inference_steps=0", "1..num_train_timesteps=100"]),
    "too_many_inference_steps": ("diffusion_plus", ["--policy.num_inference_steps=101"],
                                 ["num_inference_steps=101", "1..num_train_timesteps=100"]),
    "heads_do_not_divide": ("diffusion_plus_transformer", ["--policy.n_emb=30", "--policy.n_head=4"],
                            ["n_emb=30", "multiple of n_head=4"]),
}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Run every bad command once, two at a time (each is mostly interpreter start-up)."""
    missing = tmp_path_factory.mktemp("nodata") / "absent"

    def run(case):
        policy_type, flags, _ = CASES[case]
        args = [f"--policy.type={policy_type}", "--policy.device=cpu", "--policy.push_to_hub=false",
                "--dataset.repo_id=local/absent", f"--dataset.root={missing}", f"--output_dir={missing}_out", *flags]
        return case, run_cli("lerobot-train", *args, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("case", sorted(CASES))
def test_lerobot_train_shows_the_reason(case, cli_results):
    result = cli_results[case]
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    for text in CASES[case][2]:
        assert text in shown, f"{text!r} not in lerobot-train output:\n{shown[-2000:]}"
    # It failed while parsing the config, before looking for the (absent) dataset.
    assert "Creating dataset" not in shown


def test_crop_larger_than_the_camera_is_named_by_lerobot_train(tmp_path):
    """Checked once the dataset's image size is known, before the model is built."""
    from conftest import ZARR
    from convert_zarr import convert

    if not ZARR.exists():
        pytest.skip("human PushT zarr not present")
    convert(ZARR, tmp_path / "img", episodes=1, with_images=True, force=False)
    result = run_cli("lerobot-train", "--policy.type=diffusion_plus", "--policy.device=cpu",
                     "--policy.push_to_hub=false", "--dataset.repo_id=local/pusht", f"--dataset.root={tmp_path / 'img'}",
                     f"--output_dir={tmp_path / 'out'}", "--policy.crop_shape=[100,100]", timeout=300)
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    assert "crop_shape=(100, 100)" in shown and "at most the image size (96, 96)" in shown, shown[-2000:]
    assert "Creating optimizer" not in shown


FEATURE_CASES = {
    "no_observation": ({}, {"action": PolicyFeature(FeatureType.ACTION, (2,))}, "input_features"),
    "no_action": ({"observation.state": PolicyFeature(FeatureType.STATE, (2,))}, {}, "output_features"),
    "cameras_differ": (
        {"observation.images.a": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
         "observation.images.b": PolicyFeature(FeatureType.VISUAL, (3, 64, 64))},
        {"action": PolicyFeature(FeatureType.ACTION, (2,))},
        "same (C, H, W)",
    ),
    "crop_larger_than_image": (
        {"observation.image": PolicyFeature(FeatureType.VISUAL, (3, 64, 64))},
        {"action": PolicyFeature(FeatureType.ACTION, (2,))},
        "crop_shape=(84, 84)",
    ),
}


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_dataset_features_are_checked_before_the_model_is_built(case):
    inputs, outputs, text = FEATURE_CASES[case]
    config = make_config("diffusion_plus", input_features=inputs, output_features=outputs, crop_shape=(84, 84))
    with pytest.raises(ConfigError, match=re.escape(text)):
        config.validate_features()
