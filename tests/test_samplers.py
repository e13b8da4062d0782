"""Noise schedules and samplers against diffusers (an independent implementation), step by step."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from lerobot_policy_diffusion_plus import samplers

T = 100


@pytest.mark.parametrize("beta_schedule", samplers.BETA_SCHEDULES)
def test_alphas_cumprod_match_diffusers(beta_schedule):
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule)
    ours = samplers.make_alphas_cumprod(beta_schedule, T, 1e-4, 0.02)
    torch.testing.assert_close(ours, ref.alphas_cumprod, atol=1e-6, rtol=0)


def test_add_noise_matches_diffusers():
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", T, 1e-4, 0.02)
    x0, noise = torch.randn(5, 16, 2), torch.randn(5, 16, 2)
    t = torch.tensor([0, 1, 50, 98, 99])
    torch.testing.assert_close(samplers.add_noise(acp, x0, noise, t), ref.add_noise(x0, noise, t), atol=1e-5, rtol=0)


@pytest.mark.parametrize("beta_schedule", samplers.BETA_SCHEDULES)
@pytest.mark.parametrize("prediction_type", samplers.PREDICTION_TYPES)
@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize(
    "sampler,steps", [("DDPM", 100), ("DDPM", 25), ("DDIM", 100), ("DDIM", 10), ("DDIM", 3), ("DDIM", 7)]
)
def test_every_step_matches_diffusers(beta_schedule, prediction_type, clip_sample, sampler, steps):
    cls = DDPMScheduler if sampler == "DDPM" else DDIMScheduler
    ref = cls(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
        clip_sample_range=1.0,
    )
    ref.set_timesteps(steps)
    acp = samplers.make_alphas_cumprod(beta_schedule, T, 1e-4, 0.02)
    table = samplers.make_step_table(sampler, acp, steps)
    assert table.timesteps.tolist() == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 2, generator=g)
    clip = 1.0 if clip_sample else None
    for i, t in enumerate(ref.timesteps):
        out = torch.randn(x.shape, generator=g) * 1.5
        if sampler == "DDPM":
            # diffusers draws the step noise itself: draw the same numbers from an identically seeded generator.
            expected = ref.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
            z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        else:
            expected = ref.step(out, t, x, eta=0.0).prev_sample
            z = None
        got, _ = samplers.reverse_step(table.coef[i], out, x, prediction_type, clip, z)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=f"step {i} (t={int(t)})")
        x = expected


def test_denoise_loop_matches_diffusers_ddim():
    ref = DDIMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    ref.set_timesteps(10)
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", T, 1e-4, 0.02)
    table = samplers.make_step_table("DDIM", acp, 10)
    weight = torch.randn(2, 2)

    def model(x, t):  # any deterministic function of (x, t) will do
        return torch.tanh(x @ weight) * (1 + t / T)

    x_T = torch.randn(3, 16, 2)
    expected = x_T
    for t in ref.timesteps:
        expected = ref.step(model(expected, t), t, expected).prev_sample
    got = samplers.denoise(lambda x, i: model(x, table.timesteps[i]), x_T, table, "epsilon", 1.0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("beta_schedule", samplers.BETA_SCHEDULES)
@pytest.mark.parametrize("prediction_type", samplers.PREDICTION_TYPES)
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 10, T - 1])
def test_dpm_solver_pp_2m_matches_diffusers(beta_schedule, prediction_type, steps):
    """Whole loop, since the multistep solver carries the previous x0 from step to step."""
    ref = DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="linspace",
        final_sigmas_type="zero",
    )
    ref.set_timesteps(steps)
    acp = samplers.make_alphas_cumprod(beta_schedule, T, 1e-4, 0.02)
    table = samplers.make_step_table("DPM++2M", acp, steps)
    assert table.timesteps.tolist() == ref.timesteps.tolist()
    weight = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))

    def model(x, t):
        return torch.tanh(x @ weight) * (1 + t / T)

    x_T = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(2))
    expected = x_T
    for t in ref.timesteps:
        expected = ref.step(model(expected, t), t, expected).prev_sample
    got = samplers.denoise(lambda x, i: model(x, table.timesteps[i]), x_T, table, prediction_type, None)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_guide_x0_rewrites_the_clean_estimate():
    """A guide that pins x0 to a target makes every deterministic sampler end on that target."""
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", T, 1e-4, 0.02)
    target = torch.rand(2, 16, 2) * 2 - 1
    for sampler in ("DDIM", "DPM++2M"):
        table = samplers.make_step_table(sampler, acp, 4)
        got = samplers.denoise(lambda x, i: torch.randn_like(x), torch.randn(2, 16, 2), table, "epsilon", 1.0,
                               guide_x0=lambda x0: target)
        torch.testing.assert_close(got, target)


def test_timesteps_must_fit_the_schedule():
    with pytest.raises(ValueError, match="num_inference_steps"):
        samplers.inference_timesteps(100, 101)
    with pytest.raises(ValueError, match="num_inference_steps"):
        samplers.inference_timesteps(100, 0)
    # DPM++2M's grid: from n = T on two timesteps would coincide (a zero-length step, NaN actions).
    with pytest.raises(ValueError, match="num_inference_steps < 100"):
        samplers.inference_timesteps(100, 100, spacing="linspace")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: samplers.make_betas("cosine", 100, 1e-4, 0.02), "beta_schedule"),
        (lambda: samplers.make_step_table("Euler", torch.ones(10) * 0.5, 5), "noise_scheduler_type"),
        (lambda: samplers.training_target("v_prediction", torch.ones(1), torch.ones(1)), "prediction_type"),
    ],
)
def test_unknown_names_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class ReplayedGraph:
    """A denoiser run as CUDA graph replay runs it: every call writes its output into the same tensor."""

    def __init__(self, denoiser):
        self.denoiser, self.out = denoiser, None

    def __call__(self, x, i):
        y = self.denoiser(x, i)
        if self.out is None:
            self.out = torch.empty_like(y)
        return self.out.copy_(y)


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
@pytest.mark.parametrize("prediction_type", samplers.PREDICTION_TYPES)
@pytest.mark.parametrize("clip", [1.0, None])
def test_denoise_is_safe_when_the_denoiser_reuses_its_output(sampler, prediction_type, clip):
    """What a sampler keeps from one denoiser call to the next (DPM-Solver++'s previous x0) must not be the
    buffer the next call overwrites: the same chunk as with a denoiser that returns fresh tensors."""
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", T, 1e-4, 0.02)
    table = samplers.make_step_table(sampler, acp, 4)
    weight = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))

    def model(x, i):
        return torch.tanh(x @ weight) * (1 + i)

    x_T = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(2))
    fresh, replayed = (
        samplers.denoise(f, x_T, table, prediction_type, clip, generator=torch.Generator().manual_seed(3))
        for f in (model, ReplayedGraph(model))
    )
    torch.testing.assert_close(replayed, fresh, atol=0, rtol=0)


def one_step_table(alphas_cumprod, num_inference_steps):
    """A one-step sampler: the clean-sample estimate at t = T - 1, in two columns and its own step."""
    t = alphas_cumprod.shape[0] - 1
    a = alphas_cumprod[t].float()
    return samplers.StepTable(torch.tensor([t]), torch.stack([a.sqrt(), (1 - a).sqrt()])[None], step=one_step)


def one_step(row, out, x_t, prediction_type, clip, noise=None, guide_x0=None, prev_x0=None):
    sqrt_a, sqrt_1ma = row.unbind()
    x0 = (x_t - sqrt_1ma * out) / sqrt_a if prediction_type == "epsilon" else out
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    return x0, x0


def test_a_sampler_is_one_registry_entry(monkeypatch):
    """A sampler need not fit the built-in samplers' coefficient row: a table builder named in
    registry.SAMPLERS, whose table brings its own step, is enough for the config, the model and the policy."""
    from conftest import make_batch, make_config, make_policy

    from lerobot_policy_diffusion_plus import registry

    monkeypatch.setattr(samplers, "one_step_table", one_step_table, raising=False)
    monkeypatch.setitem(registry.SAMPLERS, "x0", "samplers:one_step_table")
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", T, 1e-4, 0.02)
    x_T, out = torch.randn(2, 16, 2), torch.randn(2, 16, 2)
    got = samplers.denoise(lambda x, i: out, x_T, samplers.make_step_table("x0", acp, 1), "epsilon", None)
    torch.testing.assert_close(got, (x_T - (1 - acp[-1]).sqrt() * out) / acp[-1].sqrt())

    config = make_config("diffusion_plus", noise_scheduler_type="x0", num_inference_steps=1)
    chunk = make_policy(config).eval().predict_action_chunk(make_batch(config))
    assert chunk.shape == (3, config.n_action_steps, 2) and chunk.abs().max() <= 1.0
