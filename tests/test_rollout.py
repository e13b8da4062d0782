"""lerobot-rollout drives checkpoints trained by lerobot-train on the dry-run SO-100, sync and RTC.

The data is examples/so100/synthetic_dataset.py's: two 480x640 cameras (`front`, `wrist`), as SO-100/Koch
users record them, whose target blobs the pointing joints' actions follow. The policies are small (a tiny
denoiser, the images resized to 96x128, 2 training steps of batch 2, one observation step as RTC needs).
Each run lasts DURATION seconds at FPS; the dry-run robot logs every action it received, the measured loop
rate and the ticks that sent no action. The rate itself is not checked: it depends on what else runs on this
2-core machine. The runs that only concern the loop (compilation, NaN actions) use a state-only checkpoint.
"""

import io
import json
import math
import re
import shlex
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from cli import BIN, SMALL_ARGS, run_cli, train_args
from conftest import ROOT
from diffusion_plus_tools import so100_synthetic as synthetic_dataset
from diffusion_plus_tools.lerobot_cli import capture, start, stop

FPS, DURATION = 10, 4
# The guide's setting: the most for horizon 16 and one observation; under RTC a chunk may take 8 ticks.
N_ACTION_STEPS = 16
CAMERAS, HEIGHT, WIDTH = ("front", "wrist"), 480, 640
CAMERA = (
    "{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 10}, "
    "wrist: {type: opencv, index_or_path: 1, width: 640, height: 480, fps: 10}}"
)
# Small and quick: a tiny U-Net, the 480x640 frames resized to 96x128 (cropped to 90% of it), one observation
# step (LeRobot's RTC loop gives the policy one observation per chunk), 2 steps of batch 2.
TRAIN_FLAGS = ["--policy.resize_shape=[96,128]", "--policy.n_obs_steps=1", "--batch_size=2"]
STEPS = 2
# The smallest U-Net: with two cameras the ResNet already takes most of a 100 ms tick on this CPU.
SMALL = {
    **SMALL_ARGS,
    "diffusion_plus": ["--policy.down_dims=[16,32,64]", "--policy.diffusion_step_embed_dim=16"],
}
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
        f"--policy.n_action_steps={N_ACTION_STEPS}",
        f"--fps={FPS}",
        f"--duration={DURATION}",
        "--return_to_initial_position=false",
        "--play_sounds=false",
    ]


@pytest.fixture(scope="module")
def so100_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("so100") / "data"
    return synthetic_dataset.write(root, episodes=3, frames=40, camera=CAMERAS, height=HEIGHT, width=WIDTH)


@pytest.fixture(scope="module")
def checkpoints(so100_dataset, tmp_path_factory):
    """One checkpoint per policy type, trained for a few steps (built on first use)."""
    cache = {}

    def get(policy_type):
        if policy_type not in cache:
            out = tmp_path_factory.mktemp(policy_type) / "train"
            args = train_args(policy_type, so100_dataset, out, STEPS, *SMALL[policy_type], *TRAIN_FLAGS)
            args = [a for a in args if a != "--batch_size=16"]  # TRAIN_FLAGS' batch size instead of train_args'
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
    # Not clamped to the training range: in range must come from the sampler and the unnormalisation.
    args = [*rollout_args(checkpoints.get(policy_type), log, inference), "--policy.clamp_actions=false"]
    result = run_cli("lerobot-rollout", *args, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "RTC inference error" not in result.stderr and "Fatal error" not in result.stderr, result.stderr[-4000:]

    records = [json.loads(line) for line in log.read_text().splitlines()]
    summary = records[-1]["summary"]
    actions = [r["action"] for r in records[:-1]]
    # Once the first chunk arrived every tick sent an action (under RTC: the queue never ran dry), and the
    # policy planned more than one chunk.
    assert summary["ticks_without_action"] == 0, summary
    assert len(actions) > N_ACTION_STEPS, summary

    stats = json.loads((so100_dataset / "meta" / "stats.json").read_text())["action"]
    names = json.loads((so100_dataset / "meta" / "info.json").read_text())["features"]["action"]["names"]
    for action in actions:
        assert list(action) == names
        for i, name in enumerate(names):
            value = action[name]
            assert math.isfinite(value)
            assert stats["min"][i] - 1e-3 <= value <= stats["max"][i] + 1e-3, (name, value)


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory):
    """A state-only diffusion_plus with a two-level U-Net (the least to compile), trained for 2 steps."""
    root = tmp_path_factory.mktemp("state")
    data = synthetic_dataset.write(root / "data", episodes=2, frames=30, camera=None)
    args = train_args("diffusion_plus", data, root / "train", STEPS, "--policy.down_dims=[16,32]",
                      "--policy.diffusion_step_embed_dim=16", "--policy.n_obs_steps=1", "--batch_size=4")
    args = [a for a in args if a != "--batch_size=16"]
    result = run_cli("lerobot-train", *args)
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "train" / "checkpoints" / "last" / "pretrained_model"


def state_rollout_args(model_dir, log, inference: str, duration: int) -> list[str]:
    return [
        f"--policy.path={model_dir}", "--policy.device=cpu", "--robot.type=so100_dryrun",
        f"--robot.action_log={log}", f"--inference.type={inference}", f"--policy.n_action_steps={N_ACTION_STEPS}",
        f"--fps={FPS}", f"--duration={duration}", "--return_to_initial_position=false", "--play_sounds=false",
    ]


def test_use_torch_compile_runs_the_compiled_steps(state_checkpoint, tmp_path, monkeypatch):
    """`lerobot-rollout --use_torch_compile=true` (the guide's way: lerobot-rollout sets compile_model from it,
    over any --policy.compile_model) runs the denoising steps compiled by compiled.py, in the RTC loop, where
    LeRobot also wraps predict_action_chunk in a torch.compile of its own."""
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # compiled.py's cache goes under it
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    log, out = tmp_path / "actions.jsonl", tmp_path / "rollout.log"
    args = [*state_rollout_args(state_checkpoint, log, "rtc", duration=400), "--use_torch_compile=true",
            "--policy.compile_mode=default"]
    # The first chunk compiles (about a minute here); stop once more than a chunk of actions came after it.
    proc = start([str(BIN / "lerobot-rollout"), *args], out, threads=1)
    try:
        deadline = time.monotonic() + 360
        while not (log.exists() and len(log.read_text().splitlines()) > N_ACTION_STEPS):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-4000:]
            time.sleep(1)
    finally:
        stop(proc, signal.SIGINT)  # the loop ends, then the robot writes its summary
        proc.wait(60)
    text = out.read_text()
    assert proc.returncode == 0, text[-4000:]
    assert "RTC inference error" not in text, text[-4000:]
    assert re.search(r"compiling \S*_forward \(torch.compile mode=default\)", text), text[-4000:]
    assert any(p.is_file() for p in (cache / "lerobot_policy_diffusion_plus" / "torch_compile").rglob("*"))
    actions = [r["action"] for r in map(json.loads, log.read_text().splitlines()) if "action" in r]
    assert len(actions) > N_ACTION_STEPS and all(math.isfinite(v) for a in actions for v in a.values())


@pytest.mark.parametrize("inference", ["sync", "rtc"])
def test_nan_actions_never_reach_the_robot(inference, state_checkpoint, tmp_path):
    """A network that outputs NaN: the policy refuses every chunk (ActionError) and the robot receives nothing.
    Sync: lerobot-rollout stops at the first one. RTC: LeRobot's RTC thread retries (10 times, 0.5 s apart),
    then ends the rollout by itself. The README's troubleshooting row says so."""
    log = tmp_path / "actions.jsonl"
    script = Path(__file__).parent / "nan_policy_rollout.py"
    result = capture([sys.executable, str(script), *state_rollout_args(state_checkpoint, log, inference, 120)],
                     threads=1, timeout=300)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    actions = [r["action"] for r in records if "action" in r]
    assert all(math.isfinite(v) for a in actions for v in a.values()), "a non-finite action reached the robot"
    assert records[-1]["summary"]["actions"] == 0, records[-1]
    assert "the sampled action chunk contains NaN or Inf" in result.stderr, result.stderr[-4000:]
    if inference == "sync":
        assert result.returncode != 0 and "ActionError" in result.stderr, result.stderr[-4000:]
    else:
        assert "RTC inference error (10/10)" in result.stderr, result.stderr[-4000:]
        assert "Fatal error in RTC thread" in result.stderr and "Duration limit" not in result.stderr
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `ActionError"))
    assert "RTC inference error" in row and "10" in row, row


def _frames(dataset, name):
    """(N, H, W, 3) uint8 frames of camera `name`, decoded from the dataset's PNG-in-parquet rows."""
    import pyarrow.parquet as pq
    from PIL import Image

    path = dataset / "data" / "chunk-000" / "file-000.parquet"
    cells = pq.read_table(path, columns=[f"observation.images.{name}"]).column(0).to_pylist()
    return np.stack([np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB")) for c in cells])


def _blob_centres(frames, colour, radius):
    """(N, 2) (row, column) centres of the disc painted in `colour` in each frame; checks it is whole."""
    mask = (frames == np.asarray(colour, dtype=np.uint8)).all(axis=-1)
    area = int(synthetic_dataset.blob_stamp(radius).sum())
    assert (mask.sum(axis=(1, 2)) == area).all(), "one whole target disc per frame"
    rows, cols = np.arange(frames.shape[1]), np.arange(frames.shape[2])
    return np.stack([(mask.sum(2) * rows).sum(1) / area, (mask.sum(1) * cols).sum(1) / area], axis=1)


@pytest.mark.parametrize("hold", [(0, 1), (5, 5), (10, 8)])
def test_synthetic_dataset_refuses_a_hold_that_cannot_advance(hold, tmp_path):
    """A target held 0 frames would never move on: refused, naming the setting, before any folder is made."""
    with pytest.raises(ValueError, match=r"hold must be \(MIN, END\) with 1 <= MIN < END"):
        synthetic_dataset.write(tmp_path / "data", hold=hold)
    assert not (tmp_path / "data").exists()


def test_dataset_actions_follow_the_camera_targets(so100_dataset):
    """The pointing joints' actions are what the target blobs' positions in the images say, exactly, and the
    targets move where the state (the previous command) cannot tell: the images are needed."""
    import pyarrow.parquet as pq

    sd = synthetic_dataset
    table = pq.read_table(so100_dataset / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    action, state = np.array(table["action"]), np.array(table["observation.state"])
    episode = np.array(table["episode_index"])
    info = json.loads((so100_dataset / "meta" / "info.json").read_text())["features"]
    assert [info[f"observation.images.{c}"]["shape"] for c in CAMERAS] == [[HEIGHT, WIDTH, 3]] * 2

    radius = sd.blob_radius(HEIGHT, WIDTH)
    front, wrist = (
        _blob_centres(_frames(so100_dataset, c), sd.BLOB_COLOURS[k], radius) for k, c in enumerate(CAMERAS)
    )
    pan, flex = sd.pointing(front, wrist, HEIGHT, WIDTH)
    np.testing.assert_allclose(action[:, sd.PAN], pan, atol=1e-3)
    np.testing.assert_allclose(action[:, sd.FLEX], flex, atol=1e-3)

    same_episode = episode[1:] == episode[:-1]
    np.testing.assert_array_equal(state[1:][same_episode], action[:-1][same_episode])  # state = last command
    # Where the target was put elsewhere, the command jumps: the state says the old place, only the image the new.
    moved = (np.abs(action - state)[:, [sd.PAN, sd.FLEX]] > 5.0).any(axis=1)
    assert all(moved[episode == e].sum() >= 2 for e in set(episode.tolist())), moved
    # Both pointing joints span a good part of their range.
    assert np.ptp(action[:, sd.PAN]) > 20 and np.ptp(action[:, sd.FLEX]) > 10


def test_dryrun_frames_show_the_datasets_targets(tmp_path):
    """The dry-run cameras draw the dataset's target: each camera its colour, one whole disc, moving."""
    from lerobot.cameras.opencv import OpenCVCameraConfig
    from lerobot.robots import make_robot_from_config

    from lerobot_policy_diffusion_plus import SO100DryrunConfig

    cams = {
        c: OpenCVCameraConfig(index_or_path=k, width=WIDTH, height=HEIGHT, fps=30) for k, c in enumerate(CAMERAS)
    }
    robot = make_robot_from_config(SO100DryrunConfig(cameras=cams, calibration_dir=tmp_path))
    robot.connect()
    frames = {c: [] for c in CAMERAS}
    for _ in range(30):
        obs = robot.get_observation()
        for c in CAMERAS:
            frames[c].append(obs[c])
        robot.send_action(dict.fromkeys(robot.action_features, 0.0))
    robot.disconnect()
    radius = synthetic_dataset.blob_radius(HEIGHT, WIDTH)
    for k, c in enumerate(CAMERAS):
        centres = _blob_centres(np.stack(frames[c]), synthetic_dataset.BLOB_COLOURS[k], radius)
        assert len({tuple(x) for x in centres}) > 10, "the target moves"


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
