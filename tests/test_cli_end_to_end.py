"""lerobot-train and lerobot-eval drive both policy types end to end, offline, in subprocesses."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from cli import SMALL_ARGS, run_cli, train_args
from conftest import POLICY_TYPES


# The transformer runs the same lerobot-train / lerobot-eval path with another config: `slow` keeps the
# default suite under 10 minutes; its factory, save/load and policy steps are in the default suite.
@pytest.mark.parametrize(
    "policy_type", [POLICY_TYPES[0], pytest.param(POLICY_TYPES[1], marks=pytest.mark.slow)]
)
def test_train_then_eval_on_pusht(policy_type, pusht_dataset, tmp_path):
    out = tmp_path / "train"
    result = run_cli("lerobot-train", *train_args(policy_type, pusht_dataset, out, 30, *SMALL_ARGS[policy_type]))
    assert result.returncode == 0, result.stderr[-4000:]
    model_dir = out / "checkpoints" / "last" / "pretrained_model"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
                 "train_config.json"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "config.json").read_text())["type"] == policy_type
    weights = load_file(model_dir / "model.safetensors")
    assert int(weights["ema.step"]) == 30, "lerobot-train stepped the EMA once per optimizer step"
    assert any(k.startswith("ema.model.") for k in weights) and any(k.startswith("model.") for k in weights)

    eval_dir = tmp_path / "eval"
    result = run_cli(
        "lerobot-eval",
        f"--policy.path={model_dir}",
        "--env.type=pusht",
        "--env.obs_type=environment_state_agent_pos",
        "--eval.n_episodes=2",
        "--eval.batch_size=2",
        "--eval.use_async_envs=false",
        "--policy.device=cpu",
        "--policy.noise_scheduler_type=DDIM",
        "--policy.num_inference_steps=10",
        "--seed=100000",
        f"--output_dir={eval_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    overall = json.loads((eval_dir / "eval_info.json").read_text())["overall"]
    # 30 steps teach nothing: success and reward are not checked (their ranges hold whatever the policy does).
    assert overall["n_episodes"] == 2
    videos = overall["video_paths"]
    assert videos and all(Path(v).stat().st_size > 0 for v in videos), "lerobot-eval wrote the rollout videos"
