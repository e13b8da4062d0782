"""The benchmark scripts: stage plans (dry runs, the commands they would run) and the data-path timer."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pusht_success_plans_every_stage_with_equal_budgets(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--workdir", str(tmp_path), "--dry-run",
         "--steps", "2000", "--eval-at", "1000", "2000", "--train-seeds", "1", "2"],
        capture_output=True, text=True, check=True,
    ).stdout
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    trains = [c for c in commands if "lerobot-train" in c and "--resume=true" not in c]
    resumes = [c for c in commands if "lerobot-train" in c and "--resume=true" in c]
    evals = [c for c in commands if "lerobot-eval" in c]
    assert "convert_zarr.py" in commands[0]
    # 4 policies x 2 seeds, each trained to step 1000 (then stopped), evaluated, resumed to 2000, evaluated.
    assert len(trains) == len(resumes) == 4 * 2 and len(evals) == 4 * 2 * 2
    assert all(c.endswith("# stopped after the step-1000 checkpoint") for c in trains)
    # Round-robin: every policy reaches step 1000 and is evaluated there before any is resumed.
    first_resume = commands.index(resumes[0])
    assert sum("lerobot-eval" in c and "_eval1000" in c for c in commands[:first_resume]) == 4 * 2
    for policy in ("diffusion_plus", "diffusion_plus_transformer", "diffusion", "act"):
        assert sum(f"--policy.type={policy} " in c for c in trains) == 2
    assert all("--steps=2000" in c and "--batch_size=64" in c and "--save_freq=1000" in c for c in trains)
    assert all("--dataset.streaming=true" in c for c in trains)
    # The same U-Net size for LeRobot's diffusion and ours; the same evaluation for every policy.
    unets = [c for c in trains if "--policy.type=diffusion_plus " in c or "--policy.type=diffusion " in c]
    assert all("--policy.down_dims=[64,128,256]" in c for c in unets)
    assert all("--eval.n_episodes=50" in c and "--seed=100000" in c for c in evals)
    assert all("--policy.noise_scheduler_type=DDIM" in c for c in evals if "/act_seed" not in c)


def test_pusht_success_refuses_eval_steps_outside_the_budget(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--workdir", str(tmp_path), "--dry-run",
         "--steps", "1000", "--eval-at", "5000"],
        capture_output=True, text=True,
    )
    assert run.returncode != 0 and "--eval-at" in run.stderr


def test_data_path_reads_the_same_windows_both_ways(pusht_dataset, tmp_path):
    """benchmarks/data_path.py times both readers on a real dataset and writes its figures."""
    import json

    out = tmp_path / "data_path.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/data_path.py"), "--root", str(pusht_dataset), "--samples", "20",
         "--json", str(out)],
        capture_output=True, text=True, check=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    result = json.loads(out.read_text())
    assert result["samples"] == 20
    assert result["random_access_ms_per_sample"] > 0 and result["streaming_ms_per_sample"] > 0
    assert result["same_windows"] is True


PS_STUB_TRAIN = r"""#!/usr/bin/env bash
for a in "$@"; do case $a in --output_dir=*) out=${a#*=};; --config_path=*) cfg=${a#*=};;
  --policy.type=*) type=${a#*=};; --steps=*) steps=${a#*=};; --save_freq=*) freq=${a#*=};;
  --policy.down_dims=*) dims=${a#*=};; esac; done
if [ -n "${cfg:-}" ]; then   # --resume: everything else comes from the run's folder
  out=$(dirname "$(dirname "$(dirname "$(dirname "$cfg")")")"); . "$out/stub.env"
  step=$((10#$(basename "$(readlink "$out/checkpoints/last")") + freq))
else
  mkdir -p "$out"; echo "type=$type steps=$steps freq=$freq dims=${dims:-null}" > "$out/stub.env"; step=$freq
fi
echo "$@" >> "$out/calls.log"
while [ "$step" -le "$steps" ]; do
  d=$out/checkpoints/$(printf %06d $step)/pretrained_model; mkdir -p "$d"
  echo '{}' > "$d/train_config.json"
  echo "{\"type\": \"$type\", \"down_dims\": ${dims:-null}, \"n_action_steps\": 8}" > "$d/config.json"
  ln -sfn "$(printf %06d $step)" "$out/checkpoints/last"; step=$((step + freq))
  if [ "$step" -le "$steps" ]; then sleep 8; fi   # a real run goes on training: the script must stop it
done
"""
PS_STUB_EVAL = r"""#!/usr/bin/env bash
for a in "$@"; do case $a in --output_dir=*) out=${a#*=};; --policy.path=*) ckpt=${a#*=};;
  --eval.n_episodes=*) n=${a#*=};; esac; done
step=$((10#$(basename "$(dirname "$ckpt")")))
mkdir -p "$out"; echo "{\"overall\": {\"pc_success\": $step.0, \"avg_max_reward\": 0.1, \"n_episodes\": $n}}" > "$out/eval_info.json"
echo "$@" > "$out/args"
"""


def test_pusht_success_trains_resumes_evaluates_and_records(tmp_path):
    """The real stage loop with stand-ins for lerobot-train/eval: each policy is stopped at the first evaluated
    step and resumed from its checkpoint to the next, rows carry what the checkpoint was trained with and how
    long training took up to it, and a rerun with other eval settings is refused instead of relabelling the
    old result."""
    bin_dir, work, results = tmp_path / "bin", tmp_path / "work", tmp_path / "rows.json"
    bin_dir.mkdir()
    for name, text in (("lerobot-train", PS_STUB_TRAIN), ("lerobot-eval", PS_STUB_EVAL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (work / "data/meta").mkdir(parents=True)
    (work / "data/meta/info.json").write_text(json.dumps({"total_episodes": 7}))
    env = {**os.environ, "PUSHT_SUCCESS_BIN": str(bin_dir)}
    cmd = [sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--workdir", str(work), "--results",
           str(results), "--policies", "diffusion_plus", "act", "--steps", "4", "--eval-at", "2", "4",
           "--eval-episodes", "3", "--down-dims", "8", "16"]
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    rows = {(r["policy"], r["steps"]): r for r in json.loads(results.read_text())}
    assert sorted(rows) == [("act", 2), ("act", 4), ("diffusion_plus", 2), ("diffusion_plus", 4)]
    assert all(r["pc_success"] == step for (_, step), r in rows.items()), "each row is its own checkpoint's eval"
    assert rows["diffusion_plus", 4]["down_dims"] == [8, 16] and rows["act", 4]["down_dims"] is None
    assert rows["diffusion_plus", 2]["sampler"] == "DDIM-10" and rows["act", 2]["sampler"] == "none (single pass)"
    assert {r["eval_episodes"] for r in rows.values()} == {3} and {r["episodes"] for r in rows.values()} == {7}
    calls = (work / "diffusion_plus_seed1000/calls.log").read_text().splitlines()
    assert len(calls) == 2 and "--resume=true" in calls[1], "stopped at step 2, resumed from its checkpoint"
    # A rerun records every evaluated step again: each row keeps the training time up to its own step, not the
    # total that later training (here a stand-in value) has brought the policy's timing file to.
    (work / "diffusion_plus_seed1000.train_s").write_text("999")
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(results.read_text()) == list(rows.values())
    assert all(r["train_wall_s"] is not None and r["train_wall_s"] < 999 for r in rows.values())
    # An older checkpoint evaluated only after training went past it: its training time is not known.
    shutil.rmtree(work / "act_seed1000_eval2")
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    late = {(r["policy"], r["steps"]): r for r in json.loads(results.read_text())}
    assert late["act", 2]["train_wall_s"] is None and late["act", 4] == rows["act", 4]
    rows = late
    again = subprocess.run([*cmd, "--sampler", "DDIM-20"], env=env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert again.returncode != 0 and "was evaluated with" in again.stderr
    assert json.loads(results.read_text()) == list(rows.values()), "the old rows are left as they were"
    # The same checkpoints evaluated with 4 actions per chunk: folders of their own, the flag passed to
    # lerobot-eval, rows added beside the checkpoint's own n_action_steps (8) with the same training time.
    subprocess.run([*cmd, "--n-action-steps", "4"], env=env, capture_output=True, text=True, timeout=60, check=True)
    both = json.loads(results.read_text())
    assert [r for r in both if r["n_action_steps"] == 8] == list(rows.values())
    a4 = {(r["policy"], r["steps"]): r for r in both if r["n_action_steps"] == 4}
    assert sorted(a4) == sorted(rows)
    assert "--policy.n_action_steps=4" in (work / "diffusion_plus_seed1000_eval4_a4/args").read_text()
    assert "--policy.n_action_steps" not in (work / "diffusion_plus_seed1000_eval4/args").read_text()
    assert all(a4[k]["train_wall_s"] == rows[k]["train_wall_s"] for k in rows)
    # The other way round (as if the _a4 evaluation had run first): a plain one made later reads its time.
    shutil.copy(work / "diffusion_plus_seed1000_eval4/train_wall_s", work / "diffusion_plus_seed1000_eval4_a4")
    shutil.rmtree(work / "diffusion_plus_seed1000_eval4")
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    again = {(r["policy"], r["steps"], r["n_action_steps"]): r for r in json.loads(results.read_text())}
    assert again["diffusion_plus", 4, 8]["train_wall_s"] == rows["diffusion_plus", 4]["train_wall_s"]


def test_pusht_success_refuses_a_malformed_sampler(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--workdir", str(tmp_path),
                          "--sampler", "DDIM10", "--dry-run"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "--sampler must be SAMPLER-STEPS" in out.stderr


def test_pusht_success_rows_replace_only_the_same_run(tmp_path):
    """A rerun replaces its own row; a GPU row at the same step (a --time-budget run) or another evaluation seed
    range is kept beside it."""
    from diffusion_plus_tools.results import record

    results = tmp_path / "rows.json"
    row = {"policy": "diffusion_plus", "seed": 1000, "steps": 2000, "of_steps": 20000, "batch_size": 64,
           "down_dims": [64, 128, 256], "device": "cpu", "obs": "keypoints", "n_action_steps": 8, "pc_success": 0.0}
    record(results, row)
    record(results, {**row, "device": "NVIDIA H200", "pc_success": 4.0})
    record(results, {**row, "pc_success": 2.0})
    rows = json.loads(results.read_text())
    assert sorted((r["device"], r["pc_success"]) for r in rows) == [("NVIDIA H200", 4.0), ("cpu", 2.0)]
    # A run with other training flags (LeRobot's diffusion at the paper's horizons) is another run.
    record(results, {**row, "extra_flags": "--policy.horizon=16", "pc_success": 6.0})
    assert len(json.loads(results.read_text())) == 3
    # The same checkpoint on another evaluation seed range is another row.
    record(results, {**row, "eval_seed": 400000, "pc_success": 8.0})
    assert len(json.loads(results.read_text())) == 4


def test_pusht_success_passes_extra_flags_to_their_policy_only(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--workdir", str(tmp_path), "--dry-run",
         "--eval-at", "20000", "--diffusion-flags", "--policy.horizon=16 --policy.n_action_steps=8",
         "--act-flags=--policy.chunk_size=16"],
        capture_output=True, text=True, check=True,
    ).stdout
    trains = {c.split("--policy.type=")[1].split()[0]: c for c in out.splitlines() if "lerobot-train" in c}
    assert trains["diffusion"].endswith("--policy.horizon=16 --policy.n_action_steps=8")
    assert trains["act"].endswith("--policy.chunk_size=16")
    assert not any("horizon" in trains[p] or "chunk_size" in trains[p] for p in ("diffusion_plus",
                                                                                  "diffusion_plus_transformer"))


STUB_TRAIN = """#!/usr/bin/env bash
for a in "$@"; do case $a in --output_dir=*) out=${a#*=};; --policy.type=*) type=${a#*=};;
  --dataset.root=*) root=${a#*=};; esac; done
n=4; [ "$type" = act ] && n=3; [ "$(basename "$root")" = img ] && n=2
[ "$type" = diffusion_plus_transformer ] && exec sleep 60   # never saves a checkpoint
for i in $(seq 1 $n); do
  d=$out/checkpoints/$(printf %06d $i)/pretrained_model; mkdir -p $d
  echo "{\\"dataset\\": {\\"root\\": \\"$root\\"}}" > $d/train_config.json
  case $type in diffusion*) [ "$type" != diffusion_plus_transformer ] && dims=',"down_dims": [256, 512, 1024]';; esac
  echo "{\\"type\\": \\"$type\\", \\"n_action_steps\\": 8${dims:-}}" > $d/config.json
  ln -sfn $(printf %06d $i) $out/checkpoints/last
done
[ "$type" = diffusion_plus ] && mkdir -p $out/checkpoints/000009   # a save cut short, after `last`
exec sleep 60
"""
STUB_EVAL = """#!/usr/bin/env bash
for a in "$@"; do case $a in --output_dir=*) out=${a#*=};; esac; done
mkdir -p $out
echo '{"overall": {"pc_success": 10.0, "avg_max_reward": 0.5, "n_episodes": 2}}' > $out/eval_info.json
"""


def test_time_budget_evaluates_every_policy_at_the_common_step(tmp_path):
    """With stand-ins for lerobot-train/eval: the runs are stopped, the equal-budget step is the smallest last
    checkpoint among the keypoint runs that saved any, a save cut short after `last` is ignored, a run that
    saved nothing is reported, and the rows have the results-file schema."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("lerobot-train", STUB_TRAIN), ("lerobot-eval", STUB_EVAL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for data, episodes in (("kp", 206), ("img", 140)):
        (tmp_path / data / "meta").mkdir(parents=True)
        (tmp_path / data / "meta/info.json").write_text(json.dumps({"total_episodes": episodes}))
    work = tmp_path / "work"
    env = {**os.environ, "PUSHT_SUCCESS_BIN": str(bin_dir)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--time-budget", "2",
                          "--data", str(tmp_path / "kp"), "--image-data", str(tmp_path / "img"), "--workdir",
                          str(work), "--device", "cpu", "--save-freq", "1"],
                         capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert "MISSING: diffusion_plus_transformer saved no checkpoint" in out
    assert "common keypoint step 3" in out
    rows = json.loads((work / "gpu_rows.json").read_text())
    got = sorted((r["obs"], r["policy"], r["steps"]) for r in rows)
    assert got == [("image", "diffusion_plus", 2)] + [
        ("keypoints", p, s) for p in ("act", "diffusion", "diffusion_plus") for s in (1, 3)]
    assert {r["episodes"] for r in rows if r["obs"] == "image"} == {140}
    assert all(r["sampler"] == ("none (single pass)" if r["policy"] == "act" else "DDIM-10") for r in rows)
    assert all(r["down_dims"] == (None if r["policy"] == "act" else [256, 512, 1024]) for r in rows)
    assert {(r["of_steps"], r["seed"], r["eval_seed"], r["batch_size"]) for r in rows} == {(20000, 1000, 100000, 64)}
    results = json.loads((ROOT / "benchmarks/results/pusht_success.json").read_text())
    cpu_keys = {k for r in results if r["device"] == "cpu" for k in r}
    assert all(set(r) - {"note"} == cpu_keys - {"note"} for r in rows), "GPU rows and CPU rows differ in schema"
    assert subprocess.run(["pgrep", "-f", str(work)], capture_output=True).returncode == 1, "runs left alive"


def test_time_budget_refuses_missing_data_before_training(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/pusht_success.py"), "--time-budget", "300",
                          "--data", str(tmp_path / "nope"), "--image-data", str(tmp_path / "nope"), "--workdir",
                          str(tmp_path / "work")], capture_output=True, text=True)
    assert out.returncode == 2 and "is not a LeRobotDataset" in out.stderr
    assert not (tmp_path / "work").exists()
