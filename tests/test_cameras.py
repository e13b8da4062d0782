"""The image path at the sizes arms record: working size and crop, the whole frame seen, pretrained encoders,
each frame encoded once, RTC's observation history and its starvation warning, DDIM-10 by default."""

import logging

import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature

from conftest import make_batch, make_config, make_policy
from lerobot_policy_diffusion_plus.errors import ConfigError, ObservationError

SO100 = {
    "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 480, 640)),
    "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 480, 640)),
}
SMALL_UNET = {"down_dims": (16, 32, 64), "diffusion_step_embed_dim": 16, "n_groups": 4}


def so100_config(features=SO100, **overrides):
    from lerobot_policy_diffusion_plus import DiffusionPlusConfig

    config = DiffusionPlusConfig(
        device="cpu", input_features=dict(features),
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))}, **{**SMALL_UNET, **overrides},
    )
    config.validate_features()
    return config


def so100_obs(seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(batch, *ft.shape, generator=g) for k, ft in SO100.items()}


@pytest.mark.parametrize(
    "shape, working, crop",
    [((3, 480, 640), (240, 320), (216, 288)), ((3, 96, 96), (96, 96), (86, 86)), ((3, 720, 1280), (208, 370), (187, 333))],
)
def test_defaults_see_most_of_every_frame(shape, working, crop):
    config = so100_config({"observation.images.front": PolicyFeature(FeatureType.VISUAL, shape)})
    assert config.image_working_shape == working and config.image_crop_shape == crop
    assert crop[0] * crop[1] >= 0.8 * working[0] * working[1], "the training crop sees at least 80% of the frame"


def test_a_change_near_any_corner_of_a_640x480_camera_changes_the_features():
    policy = make_policy(so100_config()).eval()
    encode = policy.inference_model.obs_encoder.encode_frame
    obs = so100_obs()
    with torch.no_grad():
        base = encode(obs)
        # Corners of the region the centre crop keeps (5% margins): 40..80 px in from each edge.
        for rows in (slice(30, 70), slice(410, 450)):
            for cols in (slice(40, 80), slice(560, 600)):
                changed = {k: v.clone() for k, v in obs.items()}
                changed["observation.images.front"][..., rows, cols] = 5.0
                assert not torch.allclose(encode(changed), base, atol=1e-6), (rows, cols)


def test_inference_sees_the_features_training_computes():
    """Inference runs the EMA copy's ResNet partly in channels-last layout (faster on a CPU): the same features
    as training's layout, also after the weights change (an EMA step, a load, a write through `.data`)."""
    policy = make_policy(so100_config(crop_is_random=False))
    encoder = policy.inference_model.obs_encoder
    obs = {k: v[:, None] for k, v in so100_obs(batch=2).items()}
    trunk = encoder.rgb[0].backbone
    convs = [(i, c) for i, stage in enumerate(trunk) for c in stage.modules() if isinstance(c, torch.nn.Conv2d)]
    with torch.no_grad():
        for change in ("none", "EMA step", "load", "write of the default layout"):
            if change == "EMA step":
                for p in encoder.parameters():
                    p.mul_(1.05)
            elif change == "load":  # new tensors, in the default layout
                encoder.load_state_dict({k: 0.95 * v.contiguous() for k, v in encoder.state_dict().items()},
                                        assign=True)
            elif change != "none":
                for _, conv in convs:
                    conv.weight.data = conv.weight.data.contiguous().mul(1.02)
            encoder.train()
            trained = encoder(obs)
            encoder.eval()
            torch.testing.assert_close(encoder(obs), trained, atol=1e-5, rtol=1e-4, msg=change)
            # The stem, layer1 and layer2 run channels-last, layer3 and layer4 in the default layout.
            for i, conv in convs:
                layout = torch.channels_last if i < 6 else torch.contiguous_format
                assert conv.weight.is_contiguous(memory_format=layout), (change, i)


def test_inference_uses_weights_changed_through_data():
    """A write through `.data` (diffusers' EMAModel.copy_to, user code) leaves no trace in a tensor's version:
    inference must still act with the new weights, as a plain forward does."""
    policy = make_policy(make_config("diffusion_plus", "one_camera")).eval()
    model = policy.inference_model
    obs = {k: v[:1] for k, v in make_batch(policy.config, time_axis=False).items() if k in model.input_keys}
    noise = torch.randn(1, policy.config.horizon, 2, generator=torch.Generator().manual_seed(1))
    policy.select_action(obs, noise)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.obs_encoder.rgb[0].backbone.parameters():
            if p.dim() == 4:
                p.data.add_(0.05 * torch.randn(p.shape, generator=g))
        fast = model.encode_frame(obs)
    with torch.enable_grad():  # the training branch: the backbone's own weights as they are
        plain = model.encode_frame(obs).detach()
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
    policy.reset()
    expected = policy._sample_chunk(torch.stack([plain, plain], dim=1), noise)[:, 0]
    torch.testing.assert_close(policy.select_action(obs, noise), expected, atol=1e-5, rtol=1e-4)


def test_two_unrelated_96x96_images_give_different_features():
    config = make_config("diffusion_plus", "one_camera")
    policy = make_policy(config).eval()
    encode = policy.inference_model.obs_encoder.encode_frame
    with torch.no_grad():
        a = encode({"observation.state": torch.zeros(1, 2), "observation.image": torch.randn(1, 3, 96, 96)})
        b = encode({"observation.state": torch.zeros(1, 2), "observation.image": torch.randn(1, 3, 96, 96)})
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize(
    "overrides, field",
    [({}, "crop_ratio"), ({"crop_shape": (28, 28)}, "crop_shape"), ({"resize_shape": (48, 64)}, "crop_ratio")],
)
def test_a_feature_map_below_3x3_is_refused_by_name(overrides, field):
    small = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 32, 32))}
    features = small if "resize_shape" not in overrides else SO100
    with pytest.raises(ConfigError, match=rf"invalid policy setting {field}=.*feature map of at least 3x3"):
        so100_config(features, **overrides)


def test_cameras_of_different_sizes_share_one_working_size():
    features = {**SO100, "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 240, 320))}
    config = so100_config(features)
    policy = make_policy(config)
    batch = {k: torch.rand(2, 2, *ft.shape) for k, ft in features.items()}
    batch["action"] = torch.rand(2, config.horizon, 6) * 2 - 1
    loss, _ = policy(batch)
    assert torch.isfinite(loss)
    policy.eval()
    obs = {k: torch.rand(1, *ft.shape) for k, ft in features.items()}
    assert policy.select_action(obs).shape == (1, 6)


def _fake_imagenet_file(path):
    """A resnet18 state dict with non-default BatchNorm statistics, as a downloaded file would have."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(3)
    for name, buf in net.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    torch.save(net.state_dict(), path)
    return net.state_dict()


def test_pretrained_weights_from_a_file_with_frozen_batchnorm_and_ema(tmp_path):
    from torchvision.ops.misc import FrozenBatchNorm2d

    weights = tmp_path / "resnet18.pth"
    reference = _fake_imagenet_file(weights)
    config = make_config("diffusion_plus", "one_camera", pretrained_backbone_weights=str(weights))
    policy = make_policy(config)
    trunk = policy.model.obs_encoder.rgb[0].backbone
    torch.testing.assert_close(trunk[0].weight, reference["conv1.weight"])
    assert isinstance(trunk[1], FrozenBatchNorm2d)
    torch.testing.assert_close(trunk[1].running_mean, reference["bn1.running_mean"])

    # Training steps leave the statistics alone, and the EMA copy has the same ones.
    from conftest import make_batch

    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    for seed in range(2):
        loss, _ = policy(make_batch(config, seed=seed))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
    ema_trunk = policy.ema.model.obs_encoder.rgb[0].backbone
    for mod, ema_mod in ((trunk[1], ema_trunk[1]), (trunk[4][0].bn1, ema_trunk[4][0].bn1)):
        torch.testing.assert_close(mod.running_var, ema_mod.running_var)
    torch.testing.assert_close(trunk[1].running_var, reference["bn1.running_var"])

    # Loading the checkpoint never reads the original file.
    policy.save_pretrained(tmp_path / "ckpt")
    weights.unlink()
    loaded = _load(tmp_path / "ckpt")
    obs = make_batch(config, batch_size=1, time_axis=False)
    noise = torch.randn(1, config.horizon, 2)
    policy.eval()
    torch.testing.assert_close(loaded.select_action(obs, noise=noise), policy.select_action(obs, noise=noise))


def _load(path):
    from lerobot.policies.factory import get_policy_class

    return get_policy_class("diffusion_plus").from_pretrained(path)


def test_pretrained_weights_by_torchvision_name_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    name = "ResNet18_Weights.IMAGENET1K_V1"
    config = make_config("diffusion_plus", "one_camera", pretrained_backbone_weights=name)
    with pytest.raises(ConfigError, match="pretrained_backbone_weights.*HF_HUB_OFFLINE"):
        make_policy(config)
    # Once the file is in torch's hub cache (as a download would leave it), it is used without a network.
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    reference = _fake_imagenet_file(cached)
    policy = make_policy(config)
    torch.testing.assert_close(policy.model.obs_encoder.rgb[0].backbone[0].weight, reference["conv1.weight"])


def test_each_frame_is_encoded_once_with_the_same_actions():
    config = so100_config(resize_shape=(96, 128), n_action_steps=1)
    policy = make_policy(config).eval()
    calls = []
    policy.inference_model.obs_encoder.rgb[0].backbone[0].register_forward_hook(  # the trunk's first conv
        lambda mod, inp, out: calls.append(inp[0].shape[0]))
    first, second = so100_obs(1), so100_obs(2)
    noise = torch.randn(1, config.horizon, 6)
    policy.select_action(first, noise=noise)
    assert calls == [2], "after reset the history repeats one frame: its two cameras are encoded once"
    cached = policy.select_action(second, noise=noise)
    assert calls == [2, 2], "the next chunk encodes only the new frame"
    stacked = {k: torch.stack([first[k], second[k]], dim=1) for k in SO100}
    reencoded = policy.predict_action_chunk(stacked, noise=noise)[:, 0]
    torch.testing.assert_close(cached, reencoded)


def test_a_caller_may_reuse_its_observation_tensors_in_place():
    """A frame waits unencoded in the history until the next chunk (here 4 steps apart): writing the next frame
    into the same tensors must not change the frame the policy already holds."""
    config = make_config("diffusion_plus", "one_camera", n_obs_steps=2, n_action_steps=4)
    policy = make_policy(config).eval()
    frames = [make_batch(config, batch_size=1, time_axis=False, seed=s) for s in range(9)]
    frames = [{k: f[k] for k in config.input_features} for f in frames]
    noise = torch.randn(1, config.horizon, 2, generator=torch.Generator().manual_seed(0))
    fresh = [policy.select_action(f, noise) for f in frames]
    policy.reset()
    buffers = {k: torch.empty_like(v) for k, v in frames[0].items()}
    reused = []
    for f in frames:
        for k, v in f.items():
            buffers[k].copy_(v)
        reused.append(policy.select_action(buffers, noise))
    torch.testing.assert_close(torch.stack(reused), torch.stack(fresh))


def test_rtc_with_an_observation_history_is_refused_before_the_robot_moves():
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    policy = make_policy(make_config("diffusion_plus"))
    with pytest.raises(ConfigError, match=r"n_obs_steps=2: expected 1 for real-time chunking.*--policy.n_obs_steps=1"):
        policy.config.rtc_config = RTCConfig(enabled=True)  # what lerobot-rollout --inference.type=rtc does
    obs = {k: v[:, -1] for k, v in _batch(policy.config).items()}
    with pytest.raises(ObservationError, match="n_obs_steps=2 must be 1"):
        policy.predict_action_chunk(obs, inference_delay=0, prev_chunk_left_over=None)
    one = make_policy(make_config("diffusion_plus", n_obs_steps=1))
    one.config.rtc_config = RTCConfig(enabled=True)
    assert one.predict_action_chunk(obs, inference_delay=0).shape == (3, one.config.n_action_steps, 2)


def _batch(config):
    from conftest import make_batch

    return {k: v for k, v in make_batch(config).items() if k.startswith("observation")}


def test_rtc_that_cannot_keep_up_says_so(caplog):
    policy = make_policy(make_config("diffusion_plus", n_obs_steps=1, n_action_steps=4)).eval()
    obs = {k: v[:1, 0] for k, v in _batch(policy.config).items()}
    prev = torch.rand(4, 2) * 2 - 1
    with caplog.at_level(logging.WARNING):
        policy.predict_action_chunk(obs, inference_delay=2, prev_chunk_left_over=prev)  # 2 left for 2 ticks: fine
        assert not caplog.records
        policy.predict_action_chunk(obs, inference_delay=5, prev_chunk_left_over=prev)
    (record,) = caplog.records
    for text in ("cannot keep up", "5 control ticks", "between chunks", "n_action_steps=4", "nothing of this chunk",
                 "--policy.n_action_steps (at most 16)", "--fps", "--policy.num_inference_steps"):
        assert text in record.getMessage(), text


def test_ddim_10_is_the_default_sampler():
    config = make_config("diffusion_plus")
    assert config.noise_scheduler_type == "DDIM" and config.sampler_steps == 10
    policy = make_policy(config).eval()
    table = policy.inference_model.step_table(config.noise_scheduler_type, config.sampler_steps, torch.device("cpu"))
    assert len(table.timesteps) == 10
