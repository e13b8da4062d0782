"""Behaviour of both policy types: shapes, gradients, learning, EMA, chunking, save/load, guards."""


import pytest
import torch

from conftest import POLICY_TYPES, make_batch, make_config, make_policy
from lerobot_policy_diffusion_plus.ema import ema_decay
from lerobot_policy_diffusion_plus.errors import CheckpointError, ObservationError


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
@pytest.mark.parametrize("layout", ["state_only", "one_camera", "two_cameras"])
def test_shapes_and_gradients(policy_type, layout):
    config = make_config(policy_type, layout)
    policy = make_policy(config)
    batch = make_batch(config)
    loss, _ = policy(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable), "every trainable weight gets a gradient"
    assert all(not p.requires_grad for p in policy.ema.model.parameters())
    policy.eval()
    chunk = policy.predict_action_chunk({k: v for k, v in batch.items() if k.startswith("observation")})
    assert chunk.shape == (3, config.n_action_steps, 2)
    policy.reset()
    action = policy.select_action(make_batch(config, time_axis=False))
    assert action.shape == (3, 2)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_loss_decreases_on_a_tiny_batch(policy_type):
    torch.manual_seed(0)
    config = make_config(policy_type, p_drop_attn=0.0) if policy_type.endswith("transformer") else make_config(policy_type)
    policy = make_policy(config)
    batch = make_batch(config, batch_size=8)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)

    def mean_loss():
        step = policy.noise_step.clone()  # same noise and timesteps each time
        with torch.no_grad():
            loss = sum(policy(batch)[0].item() for _ in range(8)) / 8
        policy.noise_step.copy_(step)
        return loss

    before = mean_loss()
    for _ in range(150):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert mean_loss() < 0.5 * before


def test_ema_follows_the_reference_schedule():
    assert ema_decay(0, 1.0, 0.75, 0.9999) == 0.0
    assert ema_decay(1, 1.0, 0.75, 0.9999) == 0.0
    assert ema_decay(2, 1.0, 0.75, 0.9999) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(11, 1.0, 0.75, 0.9999) == pytest.approx(1 - 11**-0.75)
    assert ema_decay(10**9, 1.0, 0.75, 0.9999) == 0.9999


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_update_averages_weights_and_actions_use_them(policy_type):
    config = make_config(policy_type, noise_scheduler_type="DDIM", num_inference_steps=10)
    policy = make_policy(config)
    live = dict(policy.model.named_parameters())
    averaged = dict(policy.ema.model.named_parameters())
    name = next(iter(live))
    for step in range(3):
        expected = averaged[name].detach().clone()
        with torch.no_grad():
            live[name].add_(1.0)
        decay = ema_decay(step, config.ema_inv_gamma, config.ema_power, config.ema_max_decay)
        expected = decay * expected + (1 - decay) * live[name]
        policy.update()
        torch.testing.assert_close(averaged[name], expected)
    assert int(policy.ema.step) == 3
    # Actions come from the averaged weights: perturbing the live ones changes nothing.
    before, after = _chunks_around_live_weight_change(policy)
    torch.testing.assert_close(after, before)


def test_without_ema_the_live_weights_act():
    config = make_config("diffusion_plus", use_ema=False, noise_scheduler_type="DDIM", num_inference_steps=10)
    policy = make_policy(config)
    assert policy.ema is None
    policy.update()  # a no-op, still safe to call from lerobot-train
    before, after = _chunks_around_live_weight_change(policy)
    assert not torch.allclose(after, before)


def _chunks_around_live_weight_change(policy):
    """Action chunks for the same observation and noise, before and after perturbing the live weights."""
    policy.eval()
    obs = {k: v for k, v in make_batch(policy.config).items() if k.startswith("observation")}
    noise = torch.randn(3, policy.config.horizon, 2)
    before = policy.predict_action_chunk(obs, noise=noise)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(torch.randn_like(p))
    return before, policy.predict_action_chunk(obs, noise=noise)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_save_load_round_trip_is_exact(policy_type, tmp_path):
    config = make_config(policy_type, "one_camera", noise_scheduler_type="DDIM", num_inference_steps=10)
    policy = make_policy(config)
    batch = make_batch(config)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    for _ in range(3):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
    policy.save_pretrained(tmp_path)
    loaded = type(policy).from_pretrained(tmp_path, strict=True)
    assert type(loaded.config) is type(config)
    state, loaded_state = policy.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys() and any(k.startswith("ema.") for k in state)
    for key in state:
        torch.testing.assert_close(loaded_state[key], state[key], msg=key)
    policy.eval()
    obs = {k: v for k, v in batch.items() if k.startswith("observation")}
    noise = torch.randn(3, config.horizon, 2)
    torch.testing.assert_close(loaded.predict_action_chunk(obs, noise=noise), policy.predict_action_chunk(obs, noise=noise))


def test_chunking_follows_the_reference_layout():
    """The newest n_obs_steps observations condition the chunk; actions n_obs_steps-1 .. +n_action_steps run."""
    from lerobot_policy_diffusion_plus import samplers

    config = make_config("diffusion_plus", noise_scheduler_type="DDIM", num_inference_steps=10)
    policy = make_policy(config).eval()
    frames = [make_batch(config, batch_size=1, time_axis=False, seed=i) for i in range(3)]
    noise = torch.randn(1, config.horizon, 2)
    # Independently: encode the last two observations (oldest first) and run the sampler by hand.
    history = {k: torch.stack([frames[1][k], frames[2][k]], dim=1) for k in config.input_features}
    net = policy.ema.model
    features = net.obs_encoder(history)
    table = samplers.make_step_table("DDIM", policy.alphas_cumprod, 10)
    full = samplers.denoise(
        lambda x, i: net(x, table.timesteps[i].expand(1), features), noise, table, "epsilon", 1.0
    )
    expected = full[:, 1 : 1 + config.n_action_steps].clamp(-1, 1)

    policy.select_action(frames[0])  # starts a chunk and fills the queue
    policy.reset()
    policy.select_action(frames[0])
    for _ in range(config.n_action_steps - 1):  # drain the first chunk
        policy.select_action(frames[1])
    got = [policy.select_action(frames[2], noise=noise)]  # history is now (frames[1], frames[2])
    got += [policy.select_action(frames[0]) for _ in range(config.n_action_steps - 1)]
    torch.testing.assert_close(torch.stack(got, dim=1), expected)


def test_memory_stays_flat_over_a_long_rollout():
    import tracemalloc

    config = make_config("diffusion_plus", num_inference_steps=1, noise_scheduler_type="DDIM")
    policy = make_policy(config).eval()
    obs = make_batch(config, batch_size=1, time_axis=False)
    for _ in range(500):
        policy.select_action(obs)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(5_000):
        policy.select_action(obs)
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 200_000, f"Python memory grew by {grown} bytes over 5,000 steps"
    assert len(policy._obs_history) == config.n_obs_steps and len(policy._action_queue) < config.n_action_steps


def test_sampler_can_change_on_a_loaded_policy(tmp_path):
    config = make_config("diffusion_plus")
    make_policy(config).save_pretrained(tmp_path)
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    policy = DiffusionPlusPolicy.from_pretrained(
        tmp_path, cli_overrides=["--noise_scheduler_type=DDIM", "--num_inference_steps=10"]
    )
    assert policy.config.noise_scheduler_type == "DDIM" and policy.config.sampler_steps == 10
    calls = []
    denoiser = policy.ema.model.denoiser
    original = denoiser.conditioned

    def counting(*args, **kwargs):
        step = original(*args, **kwargs)
        return lambda x, i: calls.append(i) or step(x, i)

    denoiser.conditioned = counting
    policy.select_action(make_batch(config, batch_size=1, time_axis=False))
    assert calls == list(range(10))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_observation_is_refused(bad):
    config = make_config("diffusion_plus")
    policy = make_policy(config).eval()
    obs = make_batch(config, batch_size=1, time_axis=False)
    obs["observation.environment_state"][0, 3] = bad
    with pytest.raises(ObservationError, match="observation.environment_state"):
        policy.select_action(obs)


def test_missing_observation_is_refused():
    config = make_config("diffusion_plus")
    policy = make_policy(config).eval()
    obs = make_batch(config, batch_size=1, time_axis=False)
    del obs["observation.state"]
    with pytest.raises(ObservationError, match="observation.state"):
        policy.select_action(obs)


def test_actions_are_clamped_to_the_trained_range():
    config = make_config("diffusion_plus", clip_sample=False)
    policy = make_policy(config).eval()
    with torch.no_grad():  # make the denoiser's output huge so raw samples leave [-1, 1]
        policy.ema.model.denoiser.head[-1].bias.fill_(-50.0)
    obs = {k: v for k, v in make_batch(config).items() if k.startswith("observation")}
    chunk = policy.predict_action_chunk(obs)
    assert chunk.abs().max() <= 1.0
    policy.config.clamp_actions = False
    assert policy.predict_action_chunk(obs).abs().max() > 1.0


def test_mismatched_checkpoint_names_the_fields_and_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    make_policy(make_config("diffusion_plus", down_dims=(16, 32, 64))).save_pretrained(tmp_path)
    other = make_config("diffusion_plus", down_dims=(16, 32))
    with pytest.raises(CheckpointError, match=r"down_dims: trained \[16, 32, 64\], asked \[16, 32\]"):
        DiffusionPlusPolicy.from_pretrained(tmp_path, config=other)
    # A weights file that lost a tensor (same settings) names the key.
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.startswith("model.denoiser."))
    del state[key]
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=r"model\.denoiser\.") as info:
        DiffusionPlusPolicy.from_pretrained(tmp_path)
    assert "do not match" in str(info.value) and key in str(info.value)


def test_corrupted_weights_fail_clearly(tmp_path):
    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        DiffusionPlusPolicy.from_pretrained(tmp_path)


def test_transformer_optimizer_groups_follow_the_paper():
    config = make_config("diffusion_plus_transformer", "one_camera")
    policy = make_policy(config)
    groups = policy.get_optim_params()
    by_decay = {g["weight_decay"]: g["params"] for g in groups}
    assert set(by_decay) == {1e-3, 0.0, 1e-6}
    decayed = {id(p) for p in by_decay[1e-3]}
    denoiser = policy.model.denoiser
    assert id(denoiser.pos_emb) not in decayed and id(denoiser.cond_pos_emb) not in decayed
    assert all(id(m.weight) not in decayed for m in denoiser.modules() if isinstance(m, torch.nn.LayerNorm))
    assert id(denoiser.head.weight) in decayed and id(denoiser.head.bias) not in decayed
    encoder_ids = {id(p) for p in policy.model.obs_encoder.parameters()}
    assert {id(p) for p in by_decay[1e-6]} == encoder_ids
    every = [id(p) for g in groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in policy.model.parameters())


def test_transformer_attention_is_causal():
    config = make_config("diffusion_plus_transformer")
    denoiser = make_policy(config).model.denoiser.eval()
    x = torch.randn(2, config.horizon, 2)
    t = torch.tensor([5, 50])
    obs = torch.randn(2, config.n_obs_steps, 18)
    base = denoiser(x, t, obs)
    changed = x.clone()
    changed[:, 9] += 5.0
    out = denoiser(changed, t, obs)
    torch.testing.assert_close(out[:, :9], base[:, :9])  # earlier tokens never see token 9
    assert not torch.allclose(out[:, 9:], base[:, 9:])
    config_full = make_config("diffusion_plus_transformer", causal_attn=False)
    full = make_policy(config_full).model.denoiser.eval()
    assert not torch.allclose(full(changed, t, obs)[:, :9], full(x, t, obs)[:, :9])


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """Weights come from safetensors and settings from JSON: pickle is never involved."""
    import pickle

    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted while loading a policy")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert DiffusionPlusPolicy.from_pretrained(tmp_path).ema is not None


def test_cross_attention_hides_later_observations_in_causal_mode():
    config = make_config("diffusion_plus_transformer")
    denoiser = make_policy(config).model.denoiser.eval()
    x, t = torch.randn(2, config.horizon, 2), torch.tensor([5, 50])
    obs = torch.randn(2, config.n_obs_steps, 18)
    later = obs.clone()
    later[:, 1] += 3.0  # the second observation step (memory token 2)
    base, out = denoiser(x, t, obs), denoiser(x, t, later)
    torch.testing.assert_close(out[:, 0], base[:, 0])  # action 0 sees the step token and observation 0 only
    assert not torch.allclose(out[:, 1:], base[:, 1:])


def test_adaln_blocks_start_as_identity_then_read_step_and_observations():
    """adaLN-Zero: at initialisation every gate is zero, so the output ignores step and observations; after
    training steps both reach every action token through the modulation, even the one the causal memory mask
    keeps from the later observation."""
    config = make_config("diffusion_plus_transformer", adaln=True)
    policy = make_policy(config)
    denoiser = policy.model.denoiser
    x, t = torch.randn(2, config.horizon, 2), torch.tensor([5, 50])
    obs = torch.randn(2, config.n_obs_steps, 18)
    later = obs.clone()
    later[:, 1] += 3.0
    with torch.no_grad():
        denoiser.eval()
        plain = denoiser.head(denoiser.ln_f(denoiser.input_emb(x) + denoiser.pos_emb))
        torch.testing.assert_close(denoiser(x, t, obs), plain)
        torch.testing.assert_close(denoiser(x, t.flip(0), later), plain)
    denoiser.train()
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    for _ in range(3):
        loss = (denoiser(x, t, obs) - x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    denoiser.eval()
    with torch.no_grad():
        base = denoiser(x, t, obs)
        assert not torch.allclose(denoiser(x, t, later)[:, 0], base[:, 0])
        assert not torch.allclose(denoiser(x, t.flip(0), obs), base)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_decoder_matches_torch_reference(causal):
    """Our decoder is the paper's: torch's own norm-first nn.TransformerDecoder with the same weights and masks
    gives the same output (an implementation we did not write, so head splitting, the k/v packing, residuals
    and both masks are checked against it)."""
    config = make_config("diffusion_plus_transformer", n_layer=3, n_head=4, causal_attn=causal)
    denoiser = make_policy(config).model.denoiser.eval()
    C, T = config.n_emb, config.horizon
    layer = torch.nn.TransformerDecoderLayer(
        C, config.n_head, 4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    reference = torch.nn.TransformerDecoder(layer, config.n_layer).eval()
    with torch.no_grad():
        for ours, theirs in zip(denoiser.blocks, reference.layers, strict=True):
            for attn, torch_attn in ((ours.self_attn, theirs.self_attn), (ours.cross_attn, theirs.multihead_attn)):
                torch_attn.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key_value.weight]))
                torch_attn.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key_value.bias]))
                torch_attn.out_proj.load_state_dict(attn.proj.state_dict())
            theirs.linear1.load_state_dict(ours.mlp[0].state_dict())
            theirs.linear2.load_state_dict(ours.mlp[3].state_dict())
            norms = zip((ours.ln_self, ours.ln_cross, ours.ln_mlp), (theirs.norm1, theirs.norm2, theirs.norm3))
            for norm, torch_norm in norms:
                torch_norm.load_state_dict(norm.state_dict())

    x, t = torch.randn(3, T, 2), torch.tensor([0, 7, 99])
    obs = torch.randn(3, config.n_obs_steps, 18)
    memory = denoiser._memory(t, obs)
    h = denoiser.input_emb(x) + denoiser.pos_emb
    # Float masks, -inf where attention is not allowed (torch's convention; the paper's masks).
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(T) if causal else None
    memory_mask = None
    if causal:
        tq, s = torch.arange(T)[:, None], torch.arange(1 + config.n_obs_steps)[None, :]
        memory_mask = torch.zeros(T, s.shape[1]).masked_fill(s > tq + 1, float("-inf"))
    expected = denoiser.head(denoiser.ln_f(reference(h, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)))
    torch.testing.assert_close(denoiser(x, t, obs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "override,settings",
    [
        ("--beta_schedule=linear", "beta_schedule"),
        ("--horizon=24", "horizon"),
        ("--prediction_type=sample", "prediction_type"),
        ("--num_train_timesteps=50", "num_train_timesteps"),
        ("--n_obs_steps=3", "n_obs_steps"),
    ],
)
def test_load_time_overrides_that_change_the_model_are_refused(tmp_path, override, settings):
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=settings) as info:
        DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=[override])
    assert "n_action_steps" in str(info.value) and "may change at load time" in str(info.value)  # and what may


# Fields of kind "model", saved with the weights. aux_action_loss_weight was missing from the hand-kept list
# these tags replaced; without cameras it builds nothing, so only this check refuses it.
@pytest.mark.parametrize(
    "override,field",
    [
        ("--aux_action_loss_weight=0.5", "aux_action_loss_weight"),
        ("--use_group_norm=false", "backbone_norm"),
        ("--crop_ratio=0.8", "crop_ratio"),
        ("--n_groups=2", "n_groups"),
        ('--normalization_mapping={"STATE": "MEAN_STD", "ENV": "MIN_MAX", "ACTION": "MIN_MAX"}',
         "normalization_mapping"),
    ],
)
def test_load_time_overrides_of_model_fields_are_refused(tmp_path, override, field):
    from lerobot_policy_diffusion_plus.configuration_diffusion_plus import fields_of_kind
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=rf"\({field}: trained ") as info:
        DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=[override])
    inference = fields_of_kind(DiffusionPlusPolicy.config_class, "inference")
    assert f"Only inference settings ({', '.join(inference)}) may change at load time" in str(info.value)


def test_inference_fields_may_change_at_load_time(tmp_path):
    """clip_sample only affects sampling: an inference field, as the sampler and its step count."""
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    config = make_config("diffusion_plus", noise_scheduler_type="DDIM", num_inference_steps=10)
    make_policy(config).save_pretrained(tmp_path)
    overrides = ["--clip_sample=false", "--clip_sample_range=2.0", "--n_action_steps=8",
                 "--clamp_actions=false", "--noise_scheduler_type=DPM++2M", "--num_inference_steps=4",
                 "--fast_inference=false"]
    policy = DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=overrides)
    assert policy.config.clip_sample is False and policy.model.clip_sample_range is None
    assert policy.predict_action_chunk(make_batch(config)).shape == (3, 8, 2)


def test_checkpoint_fields_saved_by_an_earlier_version_still_load(tmp_path):
    """Fields are compared on the names both sides know: a checkpoint whose `model_fields` still holds
    clip_sample (a model field until it became an inference one) and not aux_action_loss_weight loads."""
    from safetensors.torch import load_file, save_file

    from lerobot_policy_diffusion_plus import checkpoint
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    make_policy(make_config("diffusion_plus")).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    fields = checkpoint.decode(state["model_fields"])
    del fields["aux_action_loss_weight"]
    state["model_fields"] = checkpoint.encode({**fields, "clip_sample": True, "clip_sample_range": 1.0})
    save_file(state, weights)
    policy = DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=["--clip_sample=false"])
    assert policy.config.clip_sample is False
    with pytest.raises(CheckpointError, match="horizon: trained 16, asked 24"):
        DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=["--horizon=24"])


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_every_config_field_has_a_kind(policy_type):
    """Each field this package declares says whether it is part of the model, so a new one cannot be
    forgotten by the load-time check; only LeRobot's own fields (device, features, hub settings) have none."""
    from dataclasses import fields

    from lerobot_policy_diffusion_plus.configuration_diffusion_plus import (
        FIELD_KINDS,
        DiffusionPlusBaseConfig,
        fields_of_kind,
    )

    cls = type(make_config(policy_type))
    kinds = {f.name: f.metadata.get("kind") for f in fields(cls)}
    ours = {name for c in cls.__mro__ if issubclass(c, DiffusionPlusBaseConfig)
            for name in c.__dict__.get("__annotations__", {}) if name in kinds}
    assert {name: kinds[name] for name in ours if kinds[name] not in FIELD_KINDS} == {}
    assert sum(len(fields_of_kind(cls, kind)) for kind in FIELD_KINDS) == len(ours)
    assert {"clip_sample", "clip_sample_range", "n_action_steps", "use_ema"} <= set(fields_of_kind(cls, "inference"))
    assert {"n_obs_steps", "horizon", "aux_action_loss_weight"} <= set(fields_of_kind(cls, "model"))


def test_use_ema_false_at_load_time_acts_with_the_live_weights(tmp_path):
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    policy = make_policy(make_config("diffusion_plus"))
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.1)  # live weights differ from the EMA copy
    policy.save_pretrained(tmp_path)
    loaded = DiffusionPlusPolicy.from_pretrained(tmp_path, cli_overrides=["--use_ema=false"])
    assert loaded.ema is None
    for (name, p), q in zip(policy.model.named_parameters(), loaded.model.parameters()):
        torch.testing.assert_close(q, p, msg=name)


def test_per_sample_loss_for_sample_weighting():
    config = make_config("diffusion_plus")
    policy = make_policy(config)
    batch = make_batch(config, batch_size=4)
    step = policy.noise_step.clone()
    per_sample, _ = policy(batch, reduction="none")
    policy.noise_step.copy_(step)
    mean, _ = policy(batch)
    assert per_sample.shape == (4,)
    torch.testing.assert_close(per_sample.mean(), mean)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_noise_samples_per_observation_equals_a_repeated_batch(policy_type):
    """K noisy copies per sample against one encoding: the loss of the batch with every sample repeated K
    times (a state-only encoder is deterministic), and per sample the mean over its copies."""
    k = 3
    config = make_config(policy_type, noise_samples_per_observation=k)
    policy = make_policy(config)
    single = make_policy(make_config(policy_type))
    single.load_state_dict(policy.state_dict())
    batch = make_batch(config, batch_size=4)
    repeated = {key: v.repeat_interleave(k, dim=0) for key, v in batch.items()}
    # Eval mode: no dropout in the transformer; the noise draws do not depend on the mode.
    policy.eval()
    single.eval()
    for reduction in ("mean", "none"):
        single.noise_step.copy_(policy.noise_step)
        ours, _ = policy(batch, reduction=reduction)
        reference, _ = single(repeated, reduction=reduction)
        if reduction == "none":
            assert ours.shape == (4,)
            reference = reference.view(4, k).mean(1)
        torch.testing.assert_close(ours, reference)


def test_camera_of_another_size_is_refused_at_inference():
    config = make_config("diffusion_plus", "one_camera")
    policy = make_policy(config).eval()
    obs = make_batch(config, batch_size=1, time_axis=False)
    obs["observation.image"] = torch.randn(1, 3, 48, 48)
    with pytest.raises(ObservationError, match=r"observation.image has shape \(3, 48, 48\)"):
        policy.select_action(obs)


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"beta_end": 1.5, "beta_schedule": "linear"}, "beta_start/beta_end"),
        ({"clip_sample_range": 0.0}, "clip_sample_range"),
        ({"ema_inv_gamma": 0.0}, "ema_inv_gamma"),
        ({"diffusion_step_embed_dim": 7}, "diffusion_step_embed_dim"),
        ({"num_train_timesteps": 1_000_000}, "num_train_timesteps"),
        ({"crop_ratio": 1.5}, "crop_ratio"),
    ],
)
def test_more_bad_settings_are_named(overrides, field):
    from lerobot_policy_diffusion_plus.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        make_config("diffusion_plus", **overrides)


def test_clipping_requires_min_max_actions():
    from lerobot.configs import NormalizationMode

    from lerobot_policy_diffusion_plus.errors import ConfigError

    mapping = {"STATE": NormalizationMode.MIN_MAX, "ENV": NormalizationMode.MIN_MAX,
               "ACTION": NormalizationMode.MEAN_STD}
    with pytest.raises(ConfigError, match="clip_sample"):
        make_config("diffusion_plus", normalization_mapping=mapping)
    assert make_config("diffusion_plus", normalization_mapping=mapping, clip_sample=False).clip_sample is False


@pytest.mark.parametrize(
    "policy_type,overrides",
    [
        ("diffusion_plus", {}),
        ("diffusion_plus", {"use_film_scale_modulation": False, "kernel_size": 3, "down_dims": (16, 32)}),
        ("diffusion_plus", {"noise_scheduler_type": "DPM++2M", "num_inference_steps": 4}),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_fast_inference_matches_the_eager_modules(policy_type, overrides, batch_size):
    """The default fast path (per-chunk conditioning, matmul convolutions) gives the eager path's actions."""
    overrides = {"noise_scheduler_type": "DDIM", "num_inference_steps": 10, **overrides}
    config = make_config(policy_type, **overrides)
    policy = make_policy(config).eval()
    assert config.fast_inference
    batch = make_batch(config, batch_size=batch_size)
    noise = torch.randn(batch_size, config.horizon, 2)
    fast = policy.predict_action_chunk(batch, noise=noise)
    config.fast_inference = False
    eager = policy.predict_action_chunk(batch, noise=noise)
    torch.testing.assert_close(fast, eager, atol=1e-5, rtol=0)
    assert not torch.equal(fast, policy.predict_action_chunk(batch))  # noise is actually used


@pytest.mark.parametrize("batch_size, adaln", [(1, False), (3, False), (3, True)])
def test_transformer_chunk_memory_matches_its_per_step_forward(batch_size, adaln):
    """The transformer encodes the condition memory for every sampling step at once; each step's denoiser
    output must equal a plain forward at that step."""
    config = make_config(
        "diffusion_plus_transformer", noise_scheduler_type="DDIM", num_inference_steps=10, adaln=adaln
    )
    denoiser = make_policy(config).eval().model.denoiser
    obs = torch.randn(batch_size, config.n_obs_steps, denoiser.cond_obs_emb.in_features)
    timesteps = torch.tensor([90, 50, 0])
    step = denoiser.conditioned(obs, timesteps)
    x = torch.randn(batch_size, config.horizon, 2)
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            torch.testing.assert_close(step(x, i), denoiser(x, t.repeat(batch_size), obs), atol=1e-5, rtol=0)
