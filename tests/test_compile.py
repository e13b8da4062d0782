"""compile_model: the compiled training loss and denoising steps are the eager ones to float tolerance, and
a second start reuses the compiled code from the disk cache. The training checks are `slow` (make test-all).

Small models: the first call of each path still compiles for 10-60 s here. Each test compiles into its own
temporary cache directory, so nothing depends on what an earlier run left behind.
"""

import pytest
import torch
from conftest import make_batch, make_config, make_policy
from torch._dynamo.utils import counters

from lerobot_policy_diffusion_plus import compiled

# Two U-Net levels instead of three: half the kernels to compile, the same code path.
SMALLER = {"diffusion_plus": {"down_dims": (16, 32)}, "diffusion_plus_transformer": {}}
# Dropout draws from a different RNG stream when compiled: off, so that training steps compare exactly.
NO_DROPOUT = {"diffusion_plus": {}, "diffusion_plus_transformer": {"p_drop_emb": 0.0, "p_drop_attn": 0.0}}


@pytest.fixture(autouse=True)
def fresh_compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    torch._dynamo.reset()
    compiled._compiled.clear()
    yield tmp_path / "lerobot_policy_diffusion_plus" / "torch_compile"
    torch._dynamo.reset()
    compiled._compiled.clear()


def _policy(policy_type: str, **overrides):
    config = make_config(policy_type, n_obs_steps=2, horizon=8, n_action_steps=4, **SMALLER[policy_type], **overrides)
    return config, make_policy(config)


def _chunk(policy, batch, noise, compile_model: bool):
    policy.reset()
    policy.config.compile_model, policy.config.compile_mode = compile_model, "default"
    return policy.predict_action_chunk(batch, noise=noise)


@pytest.mark.parametrize("policy_type", ["diffusion_plus", "diffusion_plus_transformer"])
def test_compiled_chunk_equals_eager_and_restarts_from_the_disk_cache(policy_type, fresh_compile_cache):
    config, policy = _policy(policy_type)
    policy.eval()
    batch = make_batch(config, batch_size=1)
    noise = torch.randn(1, config.horizon, config.action_feature.shape[0])
    eager = _chunk(policy, batch, noise, compile_model=False)
    torch.testing.assert_close(_chunk(policy, batch, noise, compile_model=True), eager, rtol=1e-4, atol=1e-5)
    assert any(fresh_compile_cache.iterdir()), "compiled code was not written to the cache directory"
    # A second start: nothing compiled in memory, only the cache directory left.
    torch._dynamo.reset()
    compiled._compiled.clear()
    counters.clear()
    torch.testing.assert_close(_chunk(policy, batch, noise, compile_model=True), eager, rtol=1e-4, atol=1e-5)
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1
    assert counters["inductor"]["fxgraph_cache_miss"] == 0


# Compiling a backward takes 0.5-2 minutes here, too long for the default suite: the compiled loss is the
# same function for both denoisers, and the default suite checks compiled inference for both.
@pytest.mark.slow
@pytest.mark.parametrize("policy_type", ["diffusion_plus", "diffusion_plus_transformer"])
def test_compiled_training_step_equals_eager(policy_type):
    config, eager_policy = _policy(policy_type, **NO_DROPOUT[policy_type])
    _, policy = _policy(policy_type, **NO_DROPOUT[policy_type])
    policy.load_state_dict(eager_policy.state_dict())
    policy.config.compile_model, policy.config.compile_mode = True, "default"
    batch = make_batch(config, batch_size=4)
    losses, grads = [], []
    for p in (eager_policy.train(), policy.train()):
        loss, _ = p.forward(batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([q.grad.flatten() for q in p.model.parameters() if q.grad is not None]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)
