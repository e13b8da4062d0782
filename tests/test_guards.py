"""Nothing wrong reaches an arm: non-finite weights and actions, load-time changes to the network, limits on
what could hang, the action queue under a changed chunk length, and the centre crop the paper evaluated with."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_batch, make_config, make_policy
from lerobot_policy_diffusion_plus.errors import ActionError, CheckpointError, ConfigError
from lerobot_policy_diffusion_plus.obs_encoder import crop


def _policy_class(policy_type):
    from lerobot.policies.factory import get_policy_class

    return get_policy_class(policy_type)


def test_a_nan_weight_is_refused_at_load(tmp_path):
    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.startswith("ema.") and k.endswith("bias"))
    state[key][0] = float("nan")
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="NaN or Inf") as info:
        _policy_class("diffusion_plus").from_pretrained(tmp_path)
    assert key in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_action_never_leaves_the_policy(bad):
    config = make_config("diffusion_plus")
    policy = make_policy(config).eval()
    with torch.no_grad():
        policy.ema.model.denoiser.head[-1].bias[0] = bad  # a weight that went bad on a live policy
    with pytest.raises(ActionError, match="NaN or Inf"):
        policy.select_action(make_batch(config, batch_size=1, time_axis=False))
    assert not policy._action_queue, "nothing was queued"


@pytest.mark.parametrize(
    "policy_type, override, field",
    [
        ("diffusion_plus", "--crop_shape=[80,80]", "crop_shape"),
        ("diffusion_plus", "--n_groups=8", "n_groups"),
        ("diffusion_plus", "--resize_shape=[90,90]", "resize_shape"),
        ("diffusion_plus", "--use_film_scale_modulation=false", "use_film_scale_modulation"),
        ("diffusion_plus_transformer", "--causal_attn=false", "causal_attn"),
        ("diffusion_plus_transformer", "--n_cond_layers=1", "n_cond_layers"),
        ("diffusion_plus_transformer", "--adaln=true", "adaln"),
        ("diffusion_plus_transformer", "--crop_ratio=0.8", "crop_ratio"),
    ],
)
def test_architecture_overrides_at_load_are_refused_by_name(tmp_path, policy_type, override, field):
    make_policy(make_config(policy_type, "one_camera")).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=f"{field}: trained") as info:
        _policy_class(policy_type).from_pretrained(tmp_path, cli_overrides=[override])
    assert "may change at load time" in str(info.value)


def test_inference_settings_may_change_at_load(tmp_path):
    make_policy(make_config("diffusion_plus", "one_camera")).save_pretrained(tmp_path)
    overrides = ["--noise_scheduler_type=DDPM", "--num_inference_steps=20", "--n_action_steps=8",
                 "--fast_inference=false", "--clamp_actions=false", "--compile_model=true", "--compile_mode=default"]
    policy = _policy_class("diffusion_plus").from_pretrained(tmp_path, cli_overrides=overrides)
    assert policy.config.sampler_steps == 20 and policy.config.n_action_steps == 8
    assert policy.config.compile_model and policy.config.compile_mode == "default"


@pytest.mark.parametrize(
    "policy_type, field, value",
    [
        ("diffusion_plus", "num_train_timesteps", 1_000_000),
        ("diffusion_plus", "num_inference_steps", 5000),
        ("diffusion_plus", "horizon", 4096),
        ("diffusion_plus", "down_dims", (64, 128, 100_000)),
        ("diffusion_plus", "resize_shape", (100_000, 100_000)),
        ("diffusion_plus_transformer", "n_layer", 10_000),
        ("diffusion_plus_transformer", "n_emb", 1 << 20),
    ],
)
def test_settings_that_could_hang_or_exhaust_memory_are_refused(policy_type, field, value):
    with pytest.raises(ConfigError, match=field):
        make_config(policy_type, **{field: value})


def test_the_action_queue_holds_a_whole_chunk_after_n_action_steps_changes():
    config = make_config("diffusion_plus", n_action_steps=2)
    policy = make_policy(config).eval()
    obs = make_batch(config, batch_size=1, time_axis=False)
    policy.select_action(obs)
    policy.select_action(obs)  # the 2-action chunk is used up
    policy.config.n_action_steps = 6  # changed on the live policy, no reset
    noise = torch.randn(1, config.horizon, 2)
    first = policy.select_action(obs, noise=noise)
    assert len(policy._action_queue) == 5, "the new chunk is queued whole"
    rest = [policy.select_action(obs) for _ in range(5)]
    chunk = torch.stack([first, *rest], dim=1)
    assert chunk.shape == (1, 6, 2) and torch.isfinite(chunk).all()


@pytest.mark.parametrize("size, out", [((97, 99), (84, 84)), ((99, 100), (84, 85)), ((101, 98), (86, 84))])
def test_centre_crop_is_torchvisions(size, out):
    from torchvision.transforms.functional import center_crop

    images = torch.arange(2 * 3 * size[0] * size[1], dtype=torch.float32).view(2, 3, *size)
    torch.testing.assert_close(crop(images, out, random=False), center_crop(images, list(out)), rtol=0, atol=0)
