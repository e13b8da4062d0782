"""Bad settings fail before any heavy work, and lerobot-train shows the user the field, value and what is allowed."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from cli import run_cli

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
    "dpm_at_every_train_step": ("diffusion_plus", ["--policy.noise_scheduler_type=DPM++2M",
                                                   "--policy.num_inference_steps=100"],
                                ["num_inference_steps=100", "1..num_train_timesteps - 1 = 99"]),
    "heads_do_not_divide": ("diffusion_plus_transformer", ["--policy.n_emb=30", "--policy.n_head=4"],
                            ["n_emb=30", "multiple of n_head=4"]),
    "unknown_compile_mode": ("diffusion_plus", ["--policy.compile_model=true", "--policy.compile_mode=fast"],
                             ["compile_mode='fast'", "'default', 'reduce-overhead', 'max-autotune'"]),
    "no_noise_samples": ("diffusion_plus", ["--policy.noise_samples_per_observation=0"],
                         ["noise_samples_per_observation=0", "an integer >= 1"]),
    # Each field within its own limit, billions of parameters together.
    "unet_too_large": ("diffusion_plus", ["--policy.down_dims=[4096,4096,4096]", "--policy.kernel_size=15"],
                       ["down_dims/kernel_size/diffusion_step_embed_dim/n_obs_steps=",
                        "((4096, 4096, 4096), 15, 128, 2)",
                        "at most 1.0 billion parameters", "about 6.9 billion"]),
    "transformer_too_large": ("diffusion_plus_transformer", ["--policy.n_layer=48", "--policy.n_emb=4096",
                                                             "--policy.n_head=64"],
                              ["n_layer/n_emb/n_cond_layers=(48, 4096, 0)", "at most 1.0 billion parameters"]),
}


# Each of these through the real lerobot-train (one per policy type): the message reaches the user's terminal.
CLI_CASES = ["horizon_not_divisible", "heads_do_not_divide"]


def _parse_train_flags(policy_type: str, flags: list[str]):
    """Parse like lerobot-train does (draccus on LeRobot's TrainPipelineConfig, the policy class picked by
    --policy.type among the registered ones), without the ~30 s of a console script's start-up."""
    import draccus
    from lerobot.configs.train import TrainPipelineConfig

    args = [f"--policy.type={policy_type}", "--policy.device=cpu", "--dataset.repo_id=local/bad", *flags]
    return draccus.parse(config_class=TrainPipelineConfig, args=args)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parsing_the_train_flags_names_the_field_and_allowed_values(case):
    from draccus.utils import DecodingError

    from lerobot_policy_diffusion_plus.errors import ConfigError

    policy_type, flags, expected = CASES[case]
    with pytest.raises(DecodingError) as info:
        _parse_train_flags(policy_type, flags)
    assert isinstance(info.value.__cause__, ConfigError), repr(info.value.__cause__)
    _assert_names(str(info.value), expected)  # str(DecodingError) is what lerobot-train prints after "error:"


def test_good_train_flags_parse():
    cfg = _parse_train_flags("diffusion_plus_transformer", ["--policy.n_emb=32", "--policy.n_head=4"])
    assert (cfg.policy.type, cfg.policy.n_emb, cfg.policy.n_head) == ("diffusion_plus_transformer", 32, 4)


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    missing = tmp_path_factory.mktemp("nodata") / "absent"
    return _train_each(CLI_CASES, lambda case: (CASES[case][0], missing, CASES[case][1]))


def _train_each(cases, setup):
    """lerobot-train once per case, two at a time (each run is mostly interpreter start-up).

    `setup(case)` gives (policy type, dataset root, extra flags)."""

    def run(case):
        policy_type, root, flags = setup(case)
        args = [f"--policy.type={policy_type}", "--policy.device=cpu", "--policy.push_to_hub=false",
                "--dataset.repo_id=local/bad", f"--dataset.root={root}", f"--output_dir={root}_{case}_out", *flags]
        return case, run_cli("lerobot-train", *args, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, cases))


def _assert_names(shown: str, expected: list[str]) -> None:
    for text in expected:
        assert text in shown, f"{text!r} not in:\n{shown[-2000:]}"


def _shown(result, expected: list[str]) -> str:
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    _assert_names(shown, expected)
    return shown


@pytest.mark.parametrize("case", CLI_CASES)
def test_lerobot_train_shows_the_reason(case, cli_results):
    shown = _shown(cli_results[case], CASES[case][2])
    # It failed while parsing the config, before looking for the (absent) dataset.
    assert "Creating dataset" not in shown


def _vector(dim):
    return {"dtype": "float32", "shape": (dim,), "names": None}


def _camera(size):
    return {"dtype": "image", "shape": (size, size, 3), "names": ["height", "width", "channel"]}


# Settings that depend on the dataset: checked once its features are known, before the model is built.
DATASET_CASES = {
    "no_observation": ({"action": _vector(2)}, [], ["input_features=[]", "at least one of observation.state"]),
    "no_action": ({"observation.state": _vector(2), "reward_like": _vector(1)}, [],
                  ["output_features=[]", "a feature named 'action'"]),
    "camera_too_small": ({"observation.images.a": _camera(32), "action": _vector(2)},
                         [], ["crop_ratio=0.9", "feature map of at least 3x3", "gives 1x1"]),
    "crop_larger_than_camera": ({"observation.image": _camera(96), "action": _vector(2)},
                                ["--policy.crop_shape=[100,100]"],
                                ["crop_shape=(100, 100)", "at most the working image size (96, 96)"]),
}


def _write_dataset(root, features, frames=12):
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.create(repo_id="local/bad", fps=10, features=features, root=root, use_videos=False)
    for _ in range(frames):
        frame = {"task": "test"}
        for key, ft in features.items():
            frame[key] = np.zeros(ft["shape"], np.uint8 if ft["dtype"] == "image" else np.float32)
        ds.add_frame(frame)
    ds.save_episode()
    ds.finalize()


@pytest.fixture(scope="module")
def bad_datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_datasets")
    for case, (features, _, _) in DATASET_CASES.items():
        _write_dataset(base / case, features)
    return base


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_make_policy_names_dataset_feature_problems(case, bad_datasets):
    """LeRobot's factory (what lerobot-train calls) on the dataset's metadata refuses before building a model."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy

    from lerobot_policy_diffusion_plus.errors import ConfigError

    _, flags, expected = DATASET_CASES[case]
    cfg = _parse_train_flags("diffusion_plus", flags).policy
    with pytest.raises(ConfigError) as info:
        make_policy(cfg, ds_meta=LeRobotDatasetMetadata("local/bad", root=bad_datasets / case))
    _assert_names(str(info.value), expected)


def test_lerobot_train_names_a_dataset_feature_problem(bad_datasets):
    """One of the cases above through the real lerobot-train: it stops before the model is built."""
    case = "camera_too_small"
    result = _train_each([case], lambda c: ("diffusion_plus", bad_datasets / c, DATASET_CASES[c][1]))[case]
    shown = _shown(result, DATASET_CASES[case][2])
    assert "Creating optimizer" not in shown, "it failed before the model was built"


# The same checks built directly (no CLI start-up), for settings that used to pass and fail later or obscurely.
DIRECT_CASES = {
    "n_groups_zero": ("diffusion_plus", {"n_groups": 0}, "n_groups=0: expected a divisor of every entry"),
    "n_emb_too_small": ("diffusion_plus_transformer", {"n_emb": 2, "n_head": 1}, "n_emb=2: expected an even integer >= 4"),
    "dpm_at_every_step": ("diffusion_plus", {"noise_scheduler_type": "DPM++2M", "num_inference_steps": 100},
                          "num_inference_steps=100: expected 1..num_train_timesteps - 1 = 99"),
    "lr_zero": ("diffusion_plus", {"optimizer_lr": 0.0}, "optimizer_lr=0.0: expected a positive number"),
    "betas_out_of_range": ("diffusion_plus_transformer", {"optimizer_betas": (1.0, 0.95)},
                           "optimizer_betas=(1.0, 0.95): expected two numbers in [0, 1)"),
    "negative_warmup": ("diffusion_plus", {"scheduler_warmup_steps": -1}, "scheduler_warmup_steps=-1: expected a number >= 0"),
    "no_keypoints": ("diffusion_plus", {"spatial_softmax_num_keypoints": 0}, "spatial_softmax_num_keypoints=0"),
    "negative_drop": ("diffusion_plus", {"drop_n_last_frames": -1}, "drop_n_last_frames=-1: expected an integer >= 0"),
}


@pytest.mark.parametrize("case", sorted(DIRECT_CASES))
def test_config_names_the_field_and_allowed_values(case):
    from conftest import make_config

    from lerobot_policy_diffusion_plus.errors import ConfigError

    policy_type, overrides, message = DIRECT_CASES[case]
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(policy_type, **overrides)


@pytest.mark.parametrize(
    "policy_type, overrides",
    [
        ("diffusion_plus", {}),
        ("diffusion_plus", {"down_dims": (64, 128, 256), "diffusion_step_embed_dim": 128, "n_groups": 8}),
        ("diffusion_plus", {"down_dims": (32, 64, 128, 256), "kernel_size": 3, "n_obs_steps": 4,
                            "use_film_scale_modulation": False}),
        ("diffusion_plus_transformer", {}),
        ("diffusion_plus_transformer", {"n_layer": 8, "n_head": 4, "n_emb": 256}),
        ("diffusion_plus_transformer", {"n_layer": 3, "n_head": 4, "n_emb": 64, "n_cond_layers": 2, "horizon": 32}),
        ("diffusion_plus_transformer", {"n_layer": 4, "n_emb": 128, "adaln": True}),
    ],
)
def test_denoiser_size_estimate_matches_the_built_network(policy_type, overrides):
    from conftest import make_config

    from lerobot_policy_diffusion_plus.configuration_diffusion_plus import ASSUMED_ACTION_DIM, ASSUMED_OBS_FEATURES
    from lerobot_policy_diffusion_plus.diffusion_model import make_denoiser

    config = make_config(policy_type, **overrides)
    built = make_denoiser(config, ASSUMED_ACTION_DIM, ASSUMED_OBS_FEATURES)
    real = sum(p.numel() for p in built.parameters())
    assert config.estimate_denoiser_parameters() == pytest.approx(real, rel=0.1)


def test_the_papers_unet_is_far_below_the_size_bound():
    from lerobot_policy_diffusion_plus import DiffusionPlusConfig
    from lerobot_policy_diffusion_plus.configuration_diffusion_plus import MAX_DENOISER_PARAMETERS

    assert 60e6 < DiffusionPlusConfig().estimate_denoiser_parameters() < MAX_DENOISER_PARAMETERS / 10


def test_dpm_solver_at_its_largest_step_count_is_accepted():
    from conftest import make_config

    assert make_config("diffusion_plus", noise_scheduler_type="DPM++2M", num_inference_steps=99).sampler_steps == 99


def test_actions_per_chunk_do_not_change_the_training_data():
    """n_action_steps is a deployment knob: any value samples the same frames and action windows in training."""
    from conftest import make_config

    configs = [make_config("diffusion_plus", n_action_steps=n) for n in (1, 4, 8, 15)]
    assert {c.drop_n_last_frames for c in configs} == {7}, "the reference's 7 at its defaults"
    assert len({tuple(c.action_delta_indices) for c in configs}) == 1
    # A longer horizon skips more end frames (at most 7 padded actions per chunk); a set value is kept.
    assert make_config("diffusion_plus", horizon=32).drop_n_last_frames == 32 - 2 - 7
    assert make_config("diffusion_plus", horizon=8).drop_n_last_frames == 0
    assert make_config("diffusion_plus", drop_n_last_frames=3).drop_n_last_frames == 3


@pytest.mark.parametrize("field,value", [("tracking", 0.0), ("report_every_s", 0.0)])
def test_dryrun_robot_names_a_bad_setting(field, value, tmp_path):
    from lerobot_policy_diffusion_plus.errors import ConfigError
    from lerobot_policy_diffusion_plus.so100_dryrun import SO100DryrunConfig

    with pytest.raises(ConfigError, match=re.escape(f"invalid robot setting {field}={value!r}")):
        SO100DryrunConfig(calibration_dir=tmp_path, **{field: value})
