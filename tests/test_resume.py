"""lerobot-train --resume=true continues with the same EMA, optimizer, LR and noise: same weights as straight."""

import json
import os
import shutil

import torch
from safetensors.torch import load_file

from cli import run_cli, train_args


def test_resume_reproduces_a_straight_run(pusht_dataset, tmp_path):
    extra = ["--policy.down_dims=[16,32,64]", "--policy.scheduler_warmup_steps=5", "--save_freq=10", "--batch_size=8"]
    straight = tmp_path / "straight"
    result = run_cli("lerobot-train", *train_args("diffusion_plus", pusht_dataset, straight, 20, *extra))
    assert result.returncode == 0, result.stderr[-3000:]

    # The "interrupted" run: the same output folder as it stood after the step-10 checkpoint.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed, symlinks=True)
    shutil.rmtree(resumed / "checkpoints" / "000020")
    os.remove(resumed / "checkpoints" / "last")
    os.symlink("000010", resumed / "checkpoints" / "last")
    config_path = resumed / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    config = json.loads(config_path.read_text())
    config["output_dir"] = str(resumed)
    config_path.write_text(json.dumps(config))
    result = run_cli("lerobot-train", f"--config_path={config_path}", "--resume=true")
    assert result.returncode == 0, result.stderr[-3000:]

    a = load_file(straight / "checkpoints" / "000020" / "pretrained_model" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "000020" / "pretrained_model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert int(b["ema.step"]) == 20
    for key in a:
        torch.testing.assert_close(b[key], a[key], msg=key)
    # And the optimizer moved the same way.
    opt_a = load_file(straight / "checkpoints" / "000020" / "training_state" / "optimizer_state.safetensors")
    opt_b = load_file(resumed / "checkpoints" / "000020" / "training_state" / "optimizer_state.safetensors")
    for key in opt_a:
        torch.testing.assert_close(opt_b[key], opt_a[key], msg=key)
