"""Training options: off, the loss is the paper's; on, each does what its config field says; streaming and
map-style training learn from the same chunks."""

import pytest
import torch
import torch.nn.functional as F
from conftest import POLICY_TYPES, make_batch, make_config, make_policy
from test_config_errors import _assert_names, _parse_train_flags

from lerobot_policy_diffusion_plus import samplers


def _reference_loss(policy, batch, seed_step):
    """The paper's loss computed here from the policy's parts: eps ~ N(0, I), t ~ U{0..T-1} drawn from the
    policy's per-step generator, x_t = sqrt(a) x0 + sqrt(1 - a) eps, MSE of the denoiser's output on eps."""
    policy.noise_step.copy_(seed_step)
    g = policy._step_generator(torch.device("cpu"))
    x0 = batch["action"]
    eps = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 100, (x0.shape[0],), generator=g)
    a = policy.model.alphas_cumprod[t].view(-1, 1, 1)
    features = policy.model.encode({k: batch[k] for k in policy.model.input_keys})
    out = policy.model.denoiser(a.sqrt() * x0 + (1 - a).sqrt() * eps, t, features)
    return F.mse_loss(out, eps)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_with_the_new_options_off_the_loss_is_the_papers(policy_type):
    policy = make_policy(make_config(policy_type))
    policy.eval()  # no dropout: the reference and the policy see the same network
    batch = make_batch(policy.config, batch_size=5)
    step = policy.noise_step.clone()
    reference = _reference_loss(policy, batch, step)
    policy.noise_step.copy_(step)
    loss, _ = policy(batch)
    assert loss.item() == reference.item()  # bitwise: the default path is unchanged


def _end_of_episode_batch(config, batch_size=4):
    """Sample 0 is the last frame of an episode: every action after the current one is padding (repeated)."""
    batch = make_batch(config, batch_size=batch_size)
    first = config.n_obs_steps - 1
    batch["action_is_pad"][0, first + 1 :] = True
    return batch


def test_streaming_chunk_past_map_style_padding_is_left_out():
    config = make_config("diffusion_plus")
    policy = make_policy(config)
    batch = _end_of_episode_batch(config)
    step = policy.noise_step.clone()
    per_sample, _ = policy(batch, reduction="none")
    policy.noise_step.copy_(step)
    mean, _ = policy(batch)
    assert per_sample[0].item() == 0.0 and (per_sample[1:] > 0).all()
    torch.testing.assert_close(mean, per_sample[1:].mean())
    # A chunk with exactly as much padding as map-style allows (horizon - n_obs_steps - drop_n_last_frames = 7)
    # is kept.
    batch["action_is_pad"][0] = False
    batch["action_is_pad"][0, -7:] = True
    policy.noise_step.copy_(step)
    per_sample, _ = policy(batch, reduction="none")
    assert per_sample[0].item() > 0


def test_streaming_and_map_style_train_on_the_same_chunks(pusht_dataset):
    """Every frame streaming reads, filtered as the loss filters it, is exactly the set of start frames
    LeRobot's map-style sampler draws with the policy's drop_n_last_frames."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.sampler import EpisodeAwareSampler

    config = make_config("diffusion_plus")
    policy = make_policy(config)
    fps = 10
    delta = {"action": [i / fps for i in config.action_delta_indices]}
    dataset = LeRobotDataset("local/pusht3", root=pusht_dataset, delta_timestamps=delta)
    assert dataset.fps == fps
    sampler = EpisodeAwareSampler(
        dataset.meta.episodes["dataset_from_index"], dataset.meta.episodes["dataset_to_index"],
        drop_n_last_frames=config.drop_n_last_frames,
    )
    model = policy.model
    pads = torch.stack([dataset[i]["action_is_pad"] for i in range(len(dataset))])
    kept = pads[:, model.first_action :].sum(1) <= model.max_end_padding
    assert set(torch.nonzero(kept).flatten().tolist()) == set(sampler.indices)
    assert (~kept).sum() == config.drop_n_last_frames * dataset.meta.total_episodes


def test_min_snr_weights_follow_the_formula():
    for prediction_type in ("epsilon", "sample"):
        policy = make_policy(make_config("diffusion_plus", min_snr_gamma=5.0, prediction_type=prediction_type))
        t = torch.arange(100)
        acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", 100, 1e-4, 0.02)
        snr = acp / (1 - acp)
        expected = snr.clamp(max=5.0) / (snr if prediction_type == "epsilon" else 1)
        torch.testing.assert_close(policy.model.snr_weight(t), expected)
    # Epsilon prediction: clean levels (high SNR) weigh less than 1, noisy ones 1.
    w = make_policy(make_config("diffusion_plus", min_snr_gamma=5.0)).model.snr_weight(torch.tensor([0, 99]))
    assert w[0] < 0.01 and w[1] == 1.0


def test_min_snr_changes_the_loss_only_by_the_weights():
    plain = make_policy(make_config("diffusion_plus"))
    weighted = make_policy(make_config("diffusion_plus", min_snr_gamma=5.0))  # epsilon: weights <= 1
    weighted.load_state_dict(plain.state_dict())
    batch = make_batch(plain.config, batch_size=16)
    weighted.noise_step.copy_(plain.noise_step)
    a, _ = plain(batch, reduction="none")
    b, _ = weighted(batch, reduction="none")
    assert not torch.equal(a, b) and (b <= a + 1e-6).all()


def test_aux_loss_trains_the_encoder_and_never_acts():
    config = make_config("diffusion_plus", "one_camera", aux_action_loss_weight=1.0, crop_is_random=False)
    policy = make_policy(config)
    head = policy.model.aux_head
    assert head is not None and head.out_features == 2  # the current action
    # Its weights are in the optimizer's encoder group.
    groups = policy.get_optim_params()
    assert any(head.weight is p for p in groups[-1]["params"])
    batch = make_batch(config, batch_size=2)
    step = policy.noise_step.clone()
    with_aux, _ = policy(batch)
    with_aux.backward()
    assert head.weight.grad.abs().sum() > 0
    assert policy.model.obs_encoder.rgb[0].backbone[0].weight.grad.abs().sum() > 0
    # The loss is the denoising loss plus the weighted regression of the current (first executed) action.
    policy.model.aux_weight = 0.0
    policy.noise_step.copy_(step)
    denoising, _ = policy(batch)
    features = policy.model.encode({k: batch[k] for k in policy.model.input_keys})
    regression = F.mse_loss(head(features.flatten(1)), batch["action"][:, config.n_obs_steps - 1])
    torch.testing.assert_close(with_aux, denoising + regression)
    # Actions do not read the head.
    policy.eval()
    obs = {k: v for k, v in make_batch(config, batch_size=1).items() if k in config.input_features}
    noise = torch.randn(1, config.horizon, 2)
    first = policy.predict_action_chunk(obs, noise=noise)
    with torch.no_grad():
        policy.inference_model.aux_head.weight.add_(1.0)
    second = policy.predict_action_chunk(obs, noise=noise)
    torch.testing.assert_close(first, second)


def test_aux_loss_without_cameras_builds_nothing():
    policy = make_policy(make_config("diffusion_plus", aux_action_loss_weight=1.0))
    assert policy.model.aux_head is None


@pytest.mark.parametrize("policy_type, flag, expected", [
    ("diffusion_plus", "--policy.aux_action_loss_weight=-1", ["aux_action_loss_weight=-1", "a number in [0, 100]"]),
    ("diffusion_plus", "--policy.min_snr_gamma=0", ["min_snr_gamma=0", "None (off) or a number in (0, 1000]"]),
    ("diffusion_plus_transformer", "--policy.adaln=maybe", ["adaln", "parse 'maybe' into a bool"]),
])
def test_bad_training_options_are_named(policy_type, flag, expected):
    from draccus.utils import DecodingError

    with pytest.raises(DecodingError) as info:
        _parse_train_flags(policy_type, [flag])
    _assert_names(str(info.value), expected)
