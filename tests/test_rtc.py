"""Real-time chunking: the weight mask, the x0 rewrite, and the policy's RTC call as lerobot-rollout makes it."""

import math

import pytest
import torch

from conftest import POLICY_TYPES, make_config, make_policy
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.rollout.inference.rtc import _normalize_prev_actions_length, supports_rtc_inference
from lerobot_policy_diffusion_plus import rtc


def test_prefix_weights_hold_then_decay_to_zero():
    w = rtc.prefix_weights(delay=2, overlap=6, total=8, schedule="LINEAR")
    assert w.shape == (8,)
    assert w[:2].tolist() == [1.0, 1.0]
    assert w[6:].tolist() == [0.0, 0.0]
    soft = w[2:6]
    assert torch.all(soft < 1) and torch.all(soft > 0) and torch.all(soft[1:] < soft[:-1])
    torch.testing.assert_close(soft, torch.tensor([4, 3, 2, 1]) / 5)
    exp = rtc.prefix_weights(2, 6, 8, "EXP")
    c = torch.tensor([4, 3, 2, 1]) / 5
    torch.testing.assert_close(exp[2:6], c * torch.expm1(c) / (math.e - 1))
    assert torch.all(exp[2:6] < soft), "the paper's exponential decays faster than linear"
    assert rtc.prefix_weights(2, 6, 8, "ZEROS").tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert rtc.prefix_weights(2, 6, 8, "ONES").tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    # A delay longer than the overlap holds only what exists.
    assert rtc.prefix_weights(9, 3, 8).tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_lerobot_padding_rows_are_not_overlap():
    prev = torch.rand(5, 6) + 0.1
    padded = _normalize_prev_actions_length(prev, target_steps=10)  # what the RTC loop passes
    assert rtc.overlap_length(padded) == 5
    assert rtc.overlap_length(torch.zeros(10, 6)) == 0


def test_guide_maps_chunk_positions_onto_the_horizon():
    prev = torch.full((4, 2), 0.5)
    guide = rtc.make_guide(prev, delay=1, start=1, horizon=16, chunk_len=8)
    x0 = torch.zeros(3, 16, 2)
    out = guide(x0)
    assert out[:, 0].eq(0).all(), "horizon position 0 is the past step: never guided"
    assert out[:, 1].eq(0.5).all(), "returned position 0 (delayed) is held exactly"
    assert (out[:, 2:5] > 0).all() and (out[:, 2:5] < 0.5).all()
    assert out[:, 5:].eq(0).all()
    assert rtc.make_guide(None, 3, 1, 16, 8) is None
    assert rtc.make_guide(torch.zeros(10, 2), 3, 1, 16, 8) is None


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
@pytest.mark.parametrize("sampler", ["DDIM", "DDPM", "DPM++2M"])
def test_policy_rtc_holds_the_delayed_actions(policy_type, sampler):
    torch.manual_seed(0)
    # 8 executed actions: the chunk spans the whole 6-action left-over compared below. One observation:
    # RTC gives the policy one per chunk.
    cfg = make_config(policy_type, noise_scheduler_type=sampler, num_inference_steps=10, n_action_steps=8, n_obs_steps=1)
    policy = make_policy(cfg).eval()
    assert supports_rtc_inference(policy)
    obs = {k: torch.randn(1, *ft.shape) for k, ft in cfg.input_features.items()}
    noise = torch.randn(1, cfg.horizon, 2)
    torch.manual_seed(1)  # DDPM draws noise at every step
    plain = policy.predict_action_chunk(obs, noise=noise)
    assert plain.shape == (1, cfg.n_action_steps, 2)
    policy.reset()
    torch.manual_seed(1)
    same = policy.predict_action_chunk(obs, noise=noise, inference_delay=2, prev_chunk_left_over=None)
    torch.testing.assert_close(same, plain, rtol=0, atol=0)

    policy.reset()
    prev = torch.rand(6, 2) * 2 - 1  # what is left of the last chunk, normalised
    cfg.rtc_config = RTCConfig(execution_horizon=10)  # as lerobot-rollout sets it
    torch.manual_seed(1)
    guided = policy.predict_action_chunk(
        obs, noise=noise, inference_delay=3, prev_chunk_left_over=_normalize_prev_actions_length(prev, 10)
    )
    assert torch.equal(guided[0, :3], prev[:3]), "actions executed during inference equal the previous chunk"
    err_plain = (plain[0, 3:6] - prev[3:6]).abs().mean()
    err_guided = (guided[0, 3:6] - prev[3:6]).abs().mean()
    assert err_guided < err_plain, "the soft region is pulled toward the previous chunk"


def test_a_reset_from_another_thread_during_a_chunk_does_not_break_it():
    """LeRobot's RTC thread asks for chunks while the rollout's main thread may call `reset()`: the chunk must
    use the history it pushed to, not the empty one the reset swapped in ("stack expects a non-empty list")."""
    policy = make_policy(make_config("diffusion_plus", n_obs_steps=1)).eval()
    history = policy._obs_history
    original_push = type(history).push

    def push_then_reset(self, obs):
        original_push(self, obs)
        policy.reset()  # what the other thread does at the worst moment

    history.push = push_then_reset.__get__(history)
    obs = {k: torch.randn(1, *ft.shape) for k, ft in policy.config.input_features.items()}
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (1, policy.config.n_action_steps, 2) and torch.isfinite(chunk).all()
