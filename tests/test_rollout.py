"""lerobot-rollout drives checkpoints trained by lerobot-train on the dry-run SO-100, sync and RTC.

Each run lasts DURATION seconds at FPS; the dry-run robot logs every action it received and the measured
loop rate. Tolerance: the mean rate stays within 15% of FPS on this 2-core machine with other work on it.
"""

import json
import math
import re
import shlex
import sys
import types

import pytest

from cli import SMALL_ARGS, run_cli, train_args
from conftest import ROOT

sys.path.insert(0, str(ROOT / "examples" / "so100"))
from synthetic_dataset import write as write_dataset  # noqa: E402

FPS, DURATION, FPS_TOLERANCE = 10, 4, 0.15
CAMERA = "{front: {type: opencv, index_or_path: 0, width: 32, height: 32, fps: 10}}"
GUIDE = ROOT / "examples" / "so100" / "README.md"


def rollout_args(model_dir, log, inference: str) -> list[str]:
    """The dry-run command of examples/so100/README.md (the guide shows the same flags)."""
    return [
        f"--policy.path={model_dir}",
        "--policy.device=cpu",
        "--policy.noise_scheduler_type=DDIM",
        "--policy.num_inference_steps=10",
        "--robot.type=so100_dryrun",
        f"--robot.cameras={CAMERA}",
        f"--robot.action_log={log}",
        f"--inference.type={inference}",
        # RTC: 8 actions per chunk (the guide's RTC commands), so a chunk may take up to 4 ticks to compute.
        *(["--policy.n_action_steps=8"] if inference == "rtc" else []),
        f"--fps={FPS}",
        f"--duration={DURATION}",
        "--return_to_initial_position=false",
        "--play_sounds=false",
    ]


@pytest.fixture(scope="module")
def so100_dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("so100") / "data", episodes=3, frames=40)


@pytest.fixture(scope="module")
def checkpoints(so100_dataset, tmp_path_factory):
    """One checkpoint per policy type, trained for a few steps (built on first use)."""
    cache = {}

    def get(policy_type):
        if policy_type not in cache:
            out = tmp_path_factory.mktemp(policy_type) / "train"
            args = train_args(policy_type, so100_dataset, out, 4, *SMALL_ARGS[policy_type], "--policy.crop_shape=[28,28]")
            result = run_cli("lerobot-train", *args)
            assert result.returncode == 0, result.stderr[-4000:]
            cache[policy_type] = out / "checkpoints" / "last" / "pretrained_model"
        return cache[policy_type]

    return types.SimpleNamespace(get=get)


@pytest.mark.parametrize(
    "policy_type, inference",
    [
        ("diffusion_plus", "sync"),
        ("diffusion_plus", "rtc"),
        # The transformer runs the same policy class and RTC path (test_rtc.py checks its held actions); its
        # end-to-end rollout (about 40 s with its training) runs with `make test-all`.
        pytest.param("diffusion_plus_transformer", "rtc", marks=pytest.mark.slow),
    ],
)
def test_rollout_on_dryrun_robot(policy_type, inference, checkpoints, so100_dataset, tmp_path):
    log = tmp_path / "actions.jsonl"
    result = run_cli("lerobot-rollout", *rollout_args(checkpoints.get(policy_type), log, inference), timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "RTC inference error" not in result.stderr and "Fatal error" not in result.stderr, result.stderr[-4000:]

    records = [json.loads(line) for line in log.read_text().splitlines()]
    summary = records[-1]["summary"]
    actions = [r["action"] for r in records[:-1]]
    assert abs(summary["fps"] - FPS) <= FPS_TOLERANCE * FPS, summary
    # The first action waits for the first chunk; after that every tick sends one.
    assert len(actions) >= (1 - FPS_TOLERANCE) * FPS * (DURATION - 1), summary

    stats = json.loads((so100_dataset / "meta" / "stats.json").read_text())["action"]
    names = json.loads((so100_dataset / "meta" / "info.json").read_text())["features"]["action"]["names"]
    for action in actions:
        assert list(action) == names
        for i, name in enumerate(names):
            value = action[name]
            assert math.isfinite(value)
            assert stats["min"][i] - 1e-3 <= value <= stats["max"][i] + 1e-3, (name, value)


def test_guide_shows_the_tested_commands():
    """The guide's dry-run commands are these tests' commands, flag for flag (paths aside)."""
    def flags(args):
        return {a.split("=", 1)[0] if a.startswith(("--policy.path", "--robot.action_log")) else a for a in args}

    def policy_flags(args):  # what is not about the hardware, the device or the run's length
        return {a for a in args if a.startswith(("--policy.", "--inference.")) and not a.startswith(
            ("--policy.path", "--policy.device"))}

    dry, arm = [], []
    for block in re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words[:1] == ["lerobot-rollout"]:
                (dry if "--robot.type=so100_dryrun" in words else arm).append(words[1:])
    for inference in ("sync", "rtc"):
        tested = rollout_args("X", "X", inference)
        assert flags(tested) in [flags(c) for c in dry], inference
        assert policy_flags(tested) in [policy_flags(c) for c in arm], inference
    assert re.search(r"lerobot-train[^`]*--policy\.type=diffusion_plus", GUIDE.read_text())


def test_dryrun_robot_has_so100_features(monkeypatch, tmp_path):
    """Same motor names and features as LeRobot's so100_follower (its bus and cameras replaced by stand-ins)."""
    from lerobot.cameras.opencv import OpenCVCameraConfig
    from lerobot.robots import make_robot_from_config
    from lerobot.robots.so_follower import SO100Follower, SO100FollowerConfig
    from lerobot.robots.so_follower import so_follower as so_module

    from lerobot_policy_diffusion_plus import SO100DryrunConfig

    monkeypatch.setattr(so_module, "FeetechMotorsBus", lambda port, motors, calibration: types.SimpleNamespace(motors=motors))
    monkeypatch.setattr(so_module, "make_cameras_from_configs", lambda cfgs: {
        k: types.SimpleNamespace(height=c.height, width=c.width) for k, c in cfgs.items()})
    cams = {"front": OpenCVCameraConfig(index_or_path=0, width=40, height=24, fps=30)}
    real = SO100Follower(SO100FollowerConfig(port="/dev/null", cameras=cams, calibration_dir=tmp_path))
    dry = make_robot_from_config(SO100DryrunConfig(cameras=cams, calibration_dir=tmp_path, tracking=0.5))
    assert dry.observation_features == real.observation_features
    assert dry.action_features == real.action_features

    dry.connect()
    obs = dry.get_observation()
    assert obs["front"].shape == (24, 40, 3) and str(obs["front"].dtype) == "uint8"
    dry.send_action({k: 10.0 for k in dry.action_features})
    assert dry.get_observation()["elbow_flex.pos"] == 5.0, "moves halfway toward the command with tracking=0.5"
    dry.disconnect()
