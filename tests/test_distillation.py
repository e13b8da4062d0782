"""Distillation into a one-step student: the teacher's trajectories as targets, the consistency sampler, the
refusals, and the student through lerobot-train (with a Hub push), loading and real-time chunking."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli import SMALL_ARGS, run_cli, train_args
from conftest import make_batch, make_config, make_policy
from lerobot.configs import PreTrainedConfig
from lerobot_policy_diffusion_plus import distillation, samplers
from lerobot_policy_diffusion_plus.errors import CheckpointError, ConfigError
from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A small teacher checkpoint folder (random weights: distillation copies any function of the noise)."""
    torch.manual_seed(0)
    policy = make_policy(make_config("diffusion_plus", n_action_steps=8))
    folder = tmp_path_factory.mktemp("teacher") / "pretrained_model"
    policy.save_pretrained(folder)
    return folder


def student_of(teacher: Path, *overrides: str) -> DiffusionPlusPolicy:
    """What lerobot-train builds from --policy.path=TEACHER --policy.distill_teacher_path=TEACHER."""
    config = PreTrainedConfig.from_pretrained(teacher, cli_overrides=[f"--distill_teacher_path={teacher}", *overrides])
    return DiffusionPlusPolicy.from_pretrained(teacher, config=config)


def test_a_teacher_config_becomes_a_one_step_student(teacher):
    student = student_of(teacher)
    cfg = student.config
    assert (cfg.distilled_steps, cfg.noise_scheduler_type, cfg.num_inference_steps) == (10, "consistency", 1)
    # It starts from the weights the teacher acts with, and averages anew.
    ema_teacher = DiffusionPlusPolicy.from_pretrained(teacher).inference_model.state_dict()
    for name, value in student.model.state_dict().items():
        torch.testing.assert_close(value, ema_teacher[name], rtol=0, atol=0)
    assert int(student.ema.step) == 0


def test_teacher_ends_are_the_teachers_ddim_from_each_start(teacher):
    model = DiffusionPlusPolicy.from_pretrained(teacher).inference_model
    torch.manual_seed(1)
    batch = make_batch(make_config("diffusion_plus"), batch_size=4)
    features = model.encode({k: batch[k] for k in model.input_keys})
    table = model.step_table("DDIM", 10, torch.device("cpu"))
    x_start = torch.randn(4, 16, 2)
    start = torch.tensor([0, 3, 9, 0])
    ends = distillation.teacher_ends(model, features, x_start, start, table, 1.0)
    # From t_0 the end is the teacher's own sampler's chunk.
    sampled = model.sample(features, "DDIM", 10, noise=x_start.clone())
    torch.testing.assert_close(ends[[0, 3]], sampled[[0, 3]])
    # From a later start, the DDIM formula (Song et al. eq. 12) step by step, written out here.
    acp = model.alphas_cumprod
    for row in (1, 2):
        x = x_start[row : row + 1]
        for t in table.timesteps[int(start[row]):]:
            eps = model.denoiser(x, t.view(1), features[row : row + 1])
            a, a_prev = acp[t], (acp[t - 10] if t >= 10 else torch.tensor(1.0))
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        torch.testing.assert_close(ends[row : row + 1], x, rtol=1e-5, atol=1e-5)


def test_consistency_sampler_grid_and_steps():
    acp = samplers.make_alphas_cumprod("squaredcos_cap_v2", 100, 1e-4, 0.02)
    assert samplers.consistency_table(acp, 1, 10).timesteps.tolist() == [90]
    assert samplers.consistency_table(acp, 2, 10).timesteps.tolist() == [90, 40]
    table = samplers.consistency_table(acp, 2, 10)
    assert table.stochastic and not samplers.consistency_table(acp, 1, 10).stochastic
    x, out, z = torch.randn(1, 16, 2), torch.randn(1, 16, 2), torch.randn(1, 16, 2)
    # Step 1 at t = 90 re-noises its clean estimate to t = 40; the last step returns the estimate itself.
    x_next, x0 = table.step(table.coef[0], out, x, "epsilon", None, z)
    a90, a40 = acp[90], acp[40]
    torch.testing.assert_close(x0, (x - (1 - a90).sqrt() * out) / a90.sqrt())
    torch.testing.assert_close(x_next, a40.sqrt() * x0 + (1 - a40).sqrt() * z)
    last, x0_last = table.step(table.coef[1], out, x, "sample", 1.0, z)
    assert torch.equal(last, x0_last) and torch.equal(last, out.clamp(-1, 1))
    with pytest.raises(ValueError, match="distilled_steps=10"):
        samplers.consistency_table(acp, 11, 10)


def test_an_untrained_student_is_the_teachers_one_step_estimate(teacher):
    student = student_of(teacher).eval()
    model = DiffusionPlusPolicy.from_pretrained(teacher).inference_model
    batch = make_batch(student.config, batch_size=2)
    features = model.encode({k: batch[k] for k in model.input_keys})
    noise = torch.randn(2, 16, 2)
    chunk = student.inference_model.sample(features, "consistency", 1, noise=noise.clone())
    a = model.alphas_cumprod[90]
    eps = model.denoiser(noise, torch.full((2,), 90), features)
    torch.testing.assert_close(chunk, ((noise - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1))


def test_distillation_brings_the_student_to_its_teacher(teacher):
    """On a tiny dataset of 8 observations the training loss falls, and the 1-step student's estimate from a
    fixed noise moves toward the teacher's DDIM-10 chunk from the same noise (before clipping: an untrained
    estimate at t = 90 is far out of range, and clipping would hide how far)."""
    torch.manual_seed(0)
    student = student_of(teacher)
    model = DiffusionPlusPolicy.from_pretrained(teacher).inference_model
    batch = make_batch(student.config, batch_size=8, seed=3)
    obs = {k: batch[k] for k in model.input_keys}
    noise = torch.randn(8, 16, 2)
    with torch.no_grad():
        target = model.sample(model.encode(obs), "DDIM", 10, noise=noise.clone())

    def gap() -> float:
        m = student.model
        with torch.no_grad():
            out = m.denoiser(noise, torch.full((8,), 90), m.encode(obs))
        a = m.alphas_cumprod[90]
        return ((noise - (1 - a).sqrt() * out) / a.sqrt() - target).pow(2).mean().item()

    before = gap()
    optimizer = torch.optim.Adam(student.model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        loss, _ = student.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-30:]) / 30 < 0.5 * sum(losses[:30]) / 30
    assert gap() < 0.5 * before, (before, gap())


def test_refusals_name_the_field(teacher, tmp_path):
    # A diffusion model cannot act with the student's sampler, and a student with no other.
    with pytest.raises(ConfigError, match="noise_scheduler_type='consistency'.*distilled student"):
        PreTrainedConfig.from_pretrained(teacher, cli_overrides=["--noise_scheduler_type=consistency"])
    student = student_of(teacher)
    folder = tmp_path / "student"
    student.save_pretrained(folder)
    for sampler in ("DDIM", "DDPM", "DPM++2M"):
        expected = re.escape(f"noise_scheduler_type='{sampler}'") + ".*distilled from DDIM-10"
        with pytest.raises(ConfigError, match=expected):
            PreTrainedConfig.from_pretrained(folder, cli_overrides=[f"--noise_scheduler_type={sampler}"])
    with pytest.raises(ConfigError, match="num_inference_steps=11.*1..distilled_steps=10"):
        PreTrainedConfig.from_pretrained(folder, cli_overrides=["--num_inference_steps=11"])
    # The student's weights with a diffusion model's config, or a teacher's weights called a student.
    with pytest.raises(CheckpointError, match="distilled_steps"):
        config = PreTrainedConfig.from_pretrained(folder, cli_overrides=["--distilled_steps=null",
                                                                         "--noise_scheduler_type=DDIM"])
        DiffusionPlusPolicy.from_pretrained(folder, config=config)
    with pytest.raises(CheckpointError, match="distilled_steps"):
        config = PreTrainedConfig.from_pretrained(teacher, cli_overrides=[
            "--distilled_steps=10", "--noise_scheduler_type=consistency", "--num_inference_steps=1"])
        DiffusionPlusPolicy.from_pretrained(teacher, config=config)
    # Only a deterministic teacher sampler can be distilled.
    with pytest.raises(ConfigError, match="noise_scheduler_type='DDPM'.*'DDIM' for a teacher"):
        PreTrainedConfig.from_pretrained(teacher, cli_overrides=[f"--distill_teacher_path={teacher}",
                                                                 "--noise_scheduler_type=DDPM"])
    with pytest.raises(ConfigError, match=r"distill_pure_noise_share=1.5: expected a fraction in \[0, 1\]"):
        PreTrainedConfig.from_pretrained(teacher, cli_overrides=[f"--distill_teacher_path={teacher}",
                                                                 "--distill_pure_noise_share=1.5"])
    # A student is started from its teacher, not from scratch.
    with pytest.raises(ConfigError, match="distill_teacher_path=.*--policy.path"):
        make_policy(make_config("diffusion_plus", distill_teacher_path=str(teacher)))
    # A teacher folder without weights, or another network, is refused when training starts.
    config = PreTrainedConfig.from_pretrained(teacher, cli_overrides=[f"--distill_teacher_path={tmp_path}"])
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        DiffusionPlusPolicy.from_pretrained(teacher, config=config).forward(make_batch(config))
    other = tmp_path / "other"
    make_policy(make_config("diffusion_plus", kernel_size=3)).save_pretrained(other)
    config = PreTrainedConfig.from_pretrained(teacher, cli_overrides=[f"--distill_teacher_path={other}"])
    with pytest.raises(CheckpointError, match="kernel_size: teacher 3, student 5"):
        DiffusionPlusPolicy.from_pretrained(teacher, config=config).forward(make_batch(config))


def test_a_loaded_student_keeps_its_weights_and_needs_no_teacher(teacher, tmp_path):
    student = student_of(teacher)
    student.ema.step.fill_(7)
    folder = tmp_path / "student"
    student.save_pretrained(folder)
    loaded = DiffusionPlusPolicy.from_pretrained(folder)  # a resume or an evaluation: not a new start
    assert int(loaded.ema.step) == 7 and not loaded._teacher
    obs = {k: v[:1, -1] for k, v in make_batch(loaded.config).items() if k.startswith("observation")}
    loaded.eval().reset()
    action = loaded.select_action(obs)
    assert action.shape == (1, 2) and torch.isfinite(action).all() and action.abs().max() <= 1


@pytest.mark.parametrize("steps", [1, 2])
def test_real_time_chunking_holds_the_delayed_actions_of_a_student(teacher, tmp_path, steps):
    config = make_config("diffusion_plus", n_obs_steps=1, n_action_steps=8)
    folder = tmp_path / "teacher1"
    make_policy(config).save_pretrained(folder)
    student = student_of(folder, f"--num_inference_steps={steps}").eval()
    obs = {k: v[:1, -1] for k, v in make_batch(student.config).items() if k.startswith("observation")}
    prev = torch.rand(6, 2) * 0.5 + 0.2
    chunk = student.predict_action_chunk(obs, inference_delay=2, prev_chunk_left_over=prev)
    assert chunk.shape == (1, 8, 2)
    assert torch.equal(chunk[0, :2], prev[:2]), "the delayed actions are the previous chunk's, exactly"
    assert torch.isfinite(chunk).all() and chunk.abs().max() <= 1


def test_distillation_through_lerobot_train_with_a_hub_push(pusht_dataset, tmp_path):
    """lerobot-train trains a teacher, then distils it (--policy.path + --policy.distill_teacher_path) and pushes
    the student; the pushed folder acts in one step with LeRobot's processors."""
    teacher_run = tmp_path / "teacher"
    result = run_cli("lerobot-train", *train_args("diffusion_plus", pusht_dataset, teacher_run, 10,
                                                  *SMALL_ARGS["diffusion_plus"]))
    assert result.returncode == 0, result.stderr[-3000:]
    teacher_model = teacher_run / "checkpoints" / "000010" / "pretrained_model"
    args = train_args(None, pusht_dataset, tmp_path / "student", 10,
                      f"--policy.path={teacher_model}", f"--policy.distill_teacher_path={teacher_model}",
                      "--policy.push_to_hub=true", "--policy.repo_id=someone/dp_student")
    args = [a for a in args if a != "--policy.push_to_hub=false"]
    capture = tmp_path / "hub"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, str(HERE / "hub_push_capture.py"), str(capture), "--", *args],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    repo = capture / "someone" / "dp_student"
    assert int(load_file(repo / "model.safetensors")["ema.step"]) == 10

    from lerobot.policies.factory import make_pre_post_processors

    student = DiffusionPlusPolicy.from_pretrained(repo)
    teacher = DiffusionPlusPolicy.from_pretrained(teacher_model)
    assert (student.config.noise_scheduler_type, student.config.num_inference_steps) == ("consistency", 1)
    pre, post = make_pre_post_processors(student.config, pretrained_path=str(repo))
    obs = pre({"observation.state": torch.tensor([200.0, 300.0]),
               "observation.environment_state": torch.full((16,), 250.0)})
    chunks = [p.predict_action_chunk({k: v.unsqueeze(1).repeat(1, 2, *[1] * (v.dim() - 1)) for k, v in obs.items()
                                      if k.startswith("observation")}) for p in (student, teacher)]
    assert chunks[0].shape == chunks[1].shape == (1, student.config.n_action_steps, 2)
    assert all(c.abs().max() <= 1 for c in chunks)
    action = post(student.select_action(obs))
    assert action.shape == (1, 2) and torch.isfinite(action).all()
