"""`--policy.repo_id=user/name` pushes weights (EMA included), config, processors and a model card; a folder laid
out like the pushed repo loads back. The Hub is unreachable here, so its three network calls are captured."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from cli import SMALL_ARGS, train_args

HERE = Path(__file__).parent


def test_push_payload_and_reload(pusht_dataset, tmp_path):
    capture = tmp_path / "hub"
    args = train_args("diffusion_plus", pusht_dataset, tmp_path / "train", 10, *SMALL_ARGS["diffusion_plus"])
    args = [a for a in args if a != "--policy.push_to_hub=false"]
    args += ["--policy.push_to_hub=true", "--policy.repo_id=someone/dp_pusht"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, str(HERE / "hub_push_capture.py"), str(capture), "--", *args],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    repo = capture / "someone" / "dp_pusht"
    files = {p.name for p in repo.iterdir()}
    for name in ("config.json", "model.safetensors", "train_config.json", "README.md",
                 "policy_preprocessor.json", "policy_postprocessor.json"):
        assert name in files, f"{name} not pushed: {sorted(files)}"
    assert any(n.endswith("normalizer_processor.safetensors") for n in files)
    weights = load_file(repo / "model.safetensors")
    assert int(weights["ema.step"]) == 10 and any(k.startswith("ema.model.") for k in weights)

    card = (repo / "README.md").read_text()
    assert "model_name: diffusion_plus" in card  # the policy type
    assert "datasets: local/pusht" in card  # the training data
    assert "| Training steps | 10 |" in card and "| Batch size | 16 |" in card  # the settings
    assert "| Optimizer | adamw |" in card

    from lerobot.policies.factory import make_pre_post_processors
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    policy = DiffusionPlusPolicy.from_pretrained(repo)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(repo))
    obs = pre({"observation.state": torch.tensor([200.0, 300.0]),
               "observation.environment_state": torch.full((16,), 250.0)})
    action = post(policy.select_action(obs))
    assert action.shape == (1, 2) and torch.isfinite(action).all()
