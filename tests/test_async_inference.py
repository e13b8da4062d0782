"""LeRobot's async inference with this policy: our policy server, LeRobot's robot_client, the dry-run SO-100.

One server (`python -m lerobot_policy_diffusion_plus.policy_server`) serves the whole module, on a free
localhost port; it starts while the checkpoint trains. The round trip runs LeRobot's robot_client as a
user would; the load-time checks speak the server's gRPC protocol directly, as the client does.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from cli import SMALL_ARGS, run_cli, train_args

grpc = pytest.importorskip("grpc", reason="LeRobot's async inference needs pip install 'lerobot[async]'")

from diffusion_plus_tools.so100_synthetic import write as write_dataset  # noqa: E402

FPS = 10
ACTIONS_PER_CHUNK = 8  # neither the default n_action_steps (4) nor the most the checkpoint allows (16)
STARTUP_S = 240  # importing torch and LeRobot takes 10-40 s here, more with other jobs on the 2 cores
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(log) -> str:
    return log.read_text()[-4000:] if log else ""


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s\n{tail(log)}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen, sig=signal.SIGINT, grace: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("so100") / "data", episodes=2, frames=30, camera=None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Our policy server on a free port; its log (LeRobot also writes logs/ under its working directory)."""
    cwd = tmp_path_factory.mktemp("server")
    port, log = free_port(), cwd / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lerobot_policy_diffusion_plus.policy_server", "--host=127.0.0.1",
             f"--port={port}", f"--fps={FPS}"],
            cwd=cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield proc, f"127.0.0.1:{port}", log
    finally:
        stop(proc, signal.SIGTERM, grace=10)


def server_ready(server):
    proc, address, log = server
    wait_for(lambda: "PolicyServer started" in log.read_text(), STARTUP_S, "policy server start", proc, log)
    return address


@pytest.fixture(scope="module")
def checkpoint(dataset, server, tmp_path_factory):
    """A tiny state-only diffusion_plus trained for 2 steps by lerobot-train, with one observation.

    Its actions are not clamped to the training range: that they stay in range must come from the sampler
    landing on a clean sample and from the server unnormalising with the dataset's statistics."""
    out = tmp_path_factory.mktemp("train") / "run"
    args = train_args("diffusion_plus", dataset, out, 2, *SMALL_ARGS["diffusion_plus"],
                      "--policy.n_obs_steps=1", "--policy.clamp_actions=false")
    result = run_cli("lerobot-train", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return out / "checkpoints" / "last" / "pretrained_model"


def remote_call(address: str, checkpoint, actions_per_chunk: int, observe: bool, cameras: dict | None = None):
    """What robot_client does: Ready, the policy instructions, then (observe) one observation, one chunk.
    `cameras`: {name: (height, width)} of the client robot's cameras."""
    from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import send_bytes_in_chunks
    from lerobot.utils.feature_utils import hw_to_dataset_features

    from lerobot_policy_diffusion_plus.so100_dryrun import MOTORS

    joints = {f"{m}.pos": float for m in MOTORS}
    robot_features = {**joints, **{name: (h, w, 3) for name, (h, w) in (cameras or {}).items()}}
    features = hw_to_dataset_features(robot_features, "observation", use_video=False)
    spec = RemotePolicyConfig("diffusion_plus", str(checkpoint), features, actions_per_chunk, "cpu")
    with grpc.insecure_channel(address) as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty(), timeout=30)
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(spec)), timeout=120)
        if not observe:
            return None
        obs = TimedObservation(time.time(), 0, {**dict.fromkeys(joints, 1.0), "task": ""}, must_go=True)
        stub.SendObservations(send_bytes_in_chunks(pickle.dumps(obs), services_pb2.Observation), timeout=30)
        reply = stub.GetActions(services_pb2.Empty(), timeout=60)
        assert reply.data, "the server answered no chunk"
        return pickle.loads(reply.data)  # nosec: our own server


def test_robot_client_drives_dryrun_robot(server, checkpoint, dataset, tmp_path):
    address = server_ready(server)
    actions_log, client_log = tmp_path / "actions.jsonl", tmp_path / "client.log"
    with open(client_log, "w") as out:
        client = subprocess.Popen(
            [sys.executable, "-m", "lerobot.async_inference.robot_client",
             "--robot.type=so100_dryrun", f"--robot.action_log={actions_log}",
             f"--server_address={address}", "--policy_type=diffusion_plus",
             f"--pretrained_name_or_path={checkpoint}", "--policy_device=cpu",
             f"--actions_per_chunk={ACTIONS_PER_CHUNK}", f"--fps={FPS}", "--task=follow the path"],
            cwd=tmp_path, env=ENV, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        def received():
            return actions_log.exists() and len(actions_log.read_text().splitlines()) >= 2 * ACTIONS_PER_CHUNK
        wait_for(received, STARTUP_S, "actions at the dry-run robot", client, client_log)
    finally:
        stop(client)  # Ctrl-C: the client disconnects the robot, which writes its summary

    records = [json.loads(line) for line in actions_log.read_text().splitlines()]
    actions = [r["action"] for r in records if "action" in r]
    assert len(actions) >= 2 * ACTIONS_PER_CHUNK
    stats = json.loads((dataset / "meta" / "stats.json").read_text())["action"]
    names = json.loads((dataset / "meta" / "info.json").read_text())["features"]["action"]["names"]
    for action in actions:
        assert list(action) == names
        for i, name in enumerate(names):
            assert math.isfinite(action[name]), (name, action)
            assert stats["min"][i] - 1e-3 <= action[name] <= stats["max"][i] + 1e-3, (name, action[name])
    # --actions_per_chunk became the policy's n_action_steps: chunks of 8, not the default 4.
    shapes = set(re.findall(r"action shape: torch\.Size\(\[(\d+, \d+, \d+)\]\)", server[2].read_text()))
    assert shapes == {f"1, {ACTIONS_PER_CHUNK}, 6"}, shapes


def test_actions_per_chunk_capped_at_what_the_checkpoint_predicts(server, checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    most = config["horizon"] - config["n_obs_steps"] + 1
    chunk = remote_call(server_ready(server), checkpoint, actions_per_chunk=most + 10, observe=True)
    assert len(chunk) == most
    assert f"sending {most} actions per chunk" in server[2].read_text()


def test_a_distilled_student_serves_one_step_chunks(server, checkpoint, dataset, tmp_path):
    """A student of the checkpoint (lerobot-train --policy.path + --policy.distill_teacher_path) loads in the
    server unchanged and answers with its own one-step sampler."""
    args = train_args(None, dataset, tmp_path / "student", 2, f"--policy.path={checkpoint}",
                      f"--policy.distill_teacher_path={checkpoint}")
    result = run_cli("lerobot-train", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    student = tmp_path / "student" / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((student / "config.json").read_text())["noise_scheduler_type"] == "consistency"
    chunk = remote_call(server_ready(server), student, actions_per_chunk=ACTIONS_PER_CHUNK, observe=True)
    assert len(chunk) == ACTIONS_PER_CHUNK
    assert all(bool(a.get_action().isfinite().all()) for a in chunk)


def save_untrained(config, dataset, path):
    """What lerobot-train saves at step 0 (the same factory calls), without a training process."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    torch.manual_seed(0)
    meta = LeRobotDatasetMetadata("local/so100_synth", root=dataset)
    make_policy(config, ds_meta=meta).save_pretrained(path)
    for pipeline in make_pre_post_processors(config, dataset_stats=meta.stats):
        pipeline.save_pretrained(path)
    return path


def test_history_checkpoint_refused_at_load(server, dataset, tmp_path):
    """A checkpoint with n_obs_steps=2 is refused when the client names it, with how to fix it."""
    from lerobot_policy_diffusion_plus import DiffusionPlusConfig

    config = DiffusionPlusConfig(device="cpu", n_obs_steps=2, down_dims=(32, 64, 128),
                                 diffusion_step_embed_dim=32)
    path = save_untrained(config, dataset, tmp_path / "n_obs_steps_2")

    with pytest.raises(grpc.RpcError) as refused:
        remote_call(server_ready(server), path, actions_per_chunk=ACTIONS_PER_CHUNK, observe=False)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "n_obs_steps=2" in refused.value.details()
    assert "--policy.n_obs_steps=1" in refused.value.details()


def test_camera_of_another_size_refused_at_load(server, tmp_path):
    """LeRobot's server resizes every frame to the trained size before the policy sees it, so the policy's own
    size check never fires there: a client camera of another size, or a missing one, is refused when the
    client connects, naming the camera and both sizes; the recorded size is accepted."""
    from lerobot_policy_diffusion_plus import DiffusionPlusConfig

    data = write_dataset(tmp_path / "data", episodes=1, frames=4, camera="front", height=96, width=128)
    config = DiffusionPlusConfig(device="cpu", n_obs_steps=1, down_dims=(16, 32, 64), diffusion_step_embed_dim=16)
    path = save_untrained(config, data, tmp_path / "front_96x128")
    address = server_ready(server)

    remote_call(address, path, ACTIONS_PER_CHUNK, observe=False, cameras={"front": (96, 128)})
    refusals = [
        ({"front": (90, 160)}, "camera observation.images.front sends 90x160 (HxW) frames but the policy was "
                               "trained on 96x128"),
        ({"wrist": (96, 128)}, "the client has no camera observation.images.front"),
    ]
    for cameras, reason in refusals:
        with pytest.raises(grpc.RpcError) as refused:
            remote_call(address, path, ACTIONS_PER_CHUNK, observe=False, cameras=cameras)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason in refused.value.details()
