"""The recipe files under examples/ are partial lerobot-train configs: they parse as a user passes them
(`--config_path=FILE` plus the dataset), command-line flags override them, and the PushT one trains."""

import json
from pathlib import Path

import pytest
from cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("examples/*/train_*.json"))


def _parse(recipe: str, *flags: str):
    from lerobot.configs.train import TrainPipelineConfig

    import lerobot_policy_diffusion_plus  # noqa: F401  (registers the policy types, as lerobot-train does)

    args = ["--dataset.repo_id=local/data", "--dataset.root=/nonexistent", *flags]
    return TrainPipelineConfig.from_pretrained(str(ROOT / recipe), cli_args=args)


def test_the_documented_recipes_exist():
    assert {"examples/pusht/train_cpu_30min.json", "examples/pusht/train_transformer_cpu.json",
            "examples/so100/train_cpu.json", "examples/so100/train_gpu.json"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_parses_with_every_field_it_sets(recipe):
    written = json.loads((ROOT / recipe).read_text())
    cfg = _parse(recipe)
    assert cfg.policy.type == written["policy"]["type"]
    for name, value in written["policy"].items():
        if name == "device":  # LeRobot falls back to the CPU when the named device is absent (the GPU recipe here)
            continue
        got = getattr(cfg.policy, name)
        assert (list(got) if isinstance(got, tuple) else got) == value, name
    for name in ("steps", "batch_size"):
        assert getattr(cfg, name) == written[name]


def test_flags_override_a_recipe():
    cfg = _parse("examples/pusht/train_cpu_30min.json", "--steps=7", "--policy.optimizer_lr=3e-4")
    assert (cfg.steps, cfg.policy.optimizer_lr, cfg.policy.down_dims) == (7, 3e-4, (64, 128, 256))


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.startswith("examples/pusht/")])
def test_lerobot_train_runs_the_pusht_recipe(pusht_dataset, tmp_path, recipe):
    out = tmp_path / "out"
    result = run_cli("lerobot-train", f"--config_path={recipe}",
                     "--dataset.repo_id=local/pusht3", f"--dataset.root={pusht_dataset}", "--steps=3",
                     "--save_freq=3", "--batch_size=8", f"--output_dir={out}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    written = json.loads((ROOT / recipe).read_text())["policy"]
    assert (saved["type"], saved["optimizer_lr"]) == (written["type"], written["optimizer_lr"])
