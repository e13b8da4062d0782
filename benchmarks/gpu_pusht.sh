#!/usr/bin/env bash
# The PushT side-by-side on one GPU in a single time-boxed run (training is cut by time, TRAIN_S):
# trains, side by side and from the same seed, diffusion_plus, LeRobot's diffusion (the same U-Net size as our
# default), diffusion_plus_transformer and act on the PushT keypoint data, plus diffusion_plus on the 96x96
# images; stops them all after TRAIN_S seconds; then evaluates every keypoint policy at the largest step that
# all of them reached (equal budget) and at about 1/2 and 1/4 of it, and the image policy at its last
# checkpoint, with lerobot-eval on seeds 100000+. Rows (the schema of results/pusht_success.json) go to
# $WORK/gpu_rows.json; `python benchmarks/pusht_success.py --merge WORK/gpu_rows.json` adds them there.
#
#   benchmarks/gpu_pusht.sh KEYPOINT_DATA IMAGE_DATA WORK [TRAIN_S]
#
# KEYPOINT_DATA: convert_zarr.py --no-images; IMAGE_DATA: convert_zarr.py --no-keypoints (lerobot/pusht's layout).
# benchmarks/device_bundle.sh builds both, and LeRobot for a machine without it.
# Env knobs: DEVICE (cuda), BATCH (64), SAVE_FREQ (1000), EVAL_EPISODES (50), EVAL_TIMEOUT_S (180), ACT_FLAGS
# (none: LeRobot's defaults), BIN (folder of lerobot-train; default: the one on PATH), PY (python3).
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: $0 KEYPOINT_DATA IMAGE_DATA WORK [TRAIN_S]" >&2; exit 2; }
KP=$1 IMG=$2 WORK=$3 TRAIN_S=${4:-300}
DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-64} SAVE_FREQ=${SAVE_FREQ:-1000} EVAL_EPISODES=${EVAL_EPISODES:-50}
EVAL_TIMEOUT_S=${EVAL_TIMEOUT_S:-180} ACT_FLAGS=${ACT_FLAGS:-}
# The run's fixed settings, named once: the flags below and the rows' fields both read them.
OF_STEPS=20000 SEED=1000 EVAL_SEED=100000 DDIM_STEPS=10
BIN=${BIN:-$(dirname "$(command -v lerobot-train || echo ./none)")}
PY=${PY:-python3}
for d in "$KP" "$IMG"; do
  [ -e "$d/meta/info.json" ] || { echo "error: $d is not a LeRobotDataset (no meta/info.json)" >&2; exit 2; }
done
[ -x "$BIN/lerobot-train" ] && [ -x "$BIN/lerobot-eval" ] || {
  echo "error: no lerobot-train/lerobot-eval in BIN=$BIN" >&2; exit 2; }
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p "$WORK"
rm -rf "${WORK:?}"/eval_* "$WORK"/gpu_rows.json "$WORK"/*.pid  # rows come from this run only
KEYPOINT_POLICIES="diffusion_plus diffusion diffusion_plus_transformer act"
stop_all() {
  for f in "$WORK"/*.pid; do [ -e "$f" ] && kill "-$1" -- "-$(cat "$f")" 2>/dev/null; done; return 0
}
trap 'stop_all KILL' EXIT  # runs live in their own sessions: never leave them holding the GPU

# Streaming reads with one worker each: random access costs ~8 ms of CPU per sample, streaming ~1 ms
# (benchmarks/data_path.py), and 16 cores feed five runs. Streaming shuffles within a 1000-frame buffer.
common=(--policy.device="$DEVICE" --policy.push_to_hub=false --dataset.repo_id=local/pusht
        --dataset.streaming=true --num_workers=1 --steps="$OF_STEPS" --batch_size="$BATCH" --save_freq="$SAVE_FREQ"
        --env_eval_freq=0 --log_freq=100 --seed="$SEED")
train() {  # name, flags...: one lerobot-train in its own session, so that stopping it stops its workers
  local name=$1; shift
  rm -rf "${WORK:?}/$name"
  setsid "$BIN/lerobot-train" "${common[@]}" --output_dir="$WORK/$name" "$@" > "$WORK/$name.train.log" 2>&1 &
  echo $! > "$WORK/$name.pid"
}
train diffusion_plus --policy.type=diffusion_plus --dataset.root="$KP"
# LeRobot's diffusion at our default U-Net size (its own default, 512/1024/2048, is 4x larger).
train diffusion --policy.type=diffusion '--policy.down_dims=[256,512,1024]' --dataset.root="$KP"
train diffusion_plus_transformer --policy.type=diffusion_plus_transformer --dataset.root="$KP"
# shellcheck disable=SC2086
train act --policy.type=act --dataset.root="$KP" $ACT_FLAGS
train image_diffusion_plus --policy.type=diffusion_plus --dataset.root="$IMG"
echo "training 5 runs for ${TRAIN_S}s on $DEVICE"
start=$SECONDS
while [ $((SECONDS - start)) -lt "$TRAIN_S" ]; do
  alive=0
  for f in "$WORK"/*.pid; do kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
  [ $alive = 1 ] || { echo "every training run has exited (see $WORK/*.train.log)"; break; }
  sleep 2
done
train_s=$((SECONDS - start))
stop_all TERM; sleep 5; stop_all KILL

# Valid checkpoints are those up to the one `last` points at (a kill may cut a later save short).
steps_of() {
  local last; last=$(readlink "$WORK/$1/checkpoints/last" 2>/dev/null) || return 0
  last=$((10#$(basename "$last")))
  for d in "$WORK/$1"/checkpoints/[0-9]*; do
    [ -d "$d" ] && [ $((10#$(basename "$d"))) -le "$last" ] && echo $((10#$(basename "$d")))
  done | sort -n
}
common_step=""
for p in $KEYPOINT_POLICIES; do
  top=$(steps_of "$p" | tail -1)
  if [ -z "$top" ]; then echo "MISSING: $p saved no checkpoint (see $WORK/$p.train.log)"; continue; fi
  echo "$p reached step $top"
  if [ -z "$common_step" ] || [ "$top" -lt "$common_step" ]; then common_step=$top; fi
done
img_step=$(steps_of image_diffusion_plus | tail -1)
echo "image_diffusion_plus reached step ${img_step:-none}; common keypoint step ${common_step:-none}"

evaluate() {  # name, step, obs_type, extra flags...
  local name=$1 step=$2 obs=$3; shift 3
  local ckpt; ckpt=$WORK/$name/checkpoints/$(printf %06d "$step")/pretrained_model
  OMP_NUM_THREADS=1 timeout "$EVAL_TIMEOUT_S" "$BIN/lerobot-eval" --policy.path="$ckpt" --env.type=pusht \
    --env.obs_type="$obs" --eval.n_episodes="$EVAL_EPISODES" --eval.batch_size="$EVAL_EPISODES" \
    --eval.use_async_envs=false --policy.device="$DEVICE" --seed="$EVAL_SEED" \
    --output_dir="$WORK/eval_${name}_$step" "$@" > "$WORK/eval_${name}_$step.log" 2>&1 &
}
ddim=(--policy.noise_scheduler_type=DDIM --policy.num_inference_steps="$DDIM_STEPS")
if [ -n "$common_step" ]; then
  for p in $KEYPOINT_POLICIES; do
    flags=(); [ "$p" != act ] && flags=("${ddim[@]}")
    # the common step and the checkpoints nearest to 1/2 and 1/4 of it: the learning curve
    for s in $(for q in 1 2 4; do
                 steps_of "$p" | awk -v t=$((common_step / q)) '$1 <= t' | tail -1; done | sort -un); do
      evaluate "$p" "$s" environment_state_agent_pos "${flags[@]}"
    done
  done
fi
[ -n "$img_step" ] && evaluate image_diffusion_plus "$img_step" pixels_agent_pos "${ddim[@]}"
wait
for log in "$WORK"/eval_*.log; do
  [ -e "$log" ] && [ ! -e "${log%.log}/eval_info.json" ] && echo "MISSING: no result from ${log%.log} (see $log)"
done

"$PY" - "$WORK" "$train_s" "$DEVICE" "$BATCH" "$ACT_FLAGS" "$(dirname "$0")" "$OF_STEPS" "$SEED" "$EVAL_SEED" \
  "DDIM-$DDIM_STEPS" <<'PY'
import json, pathlib, re, sys
work, train_s, device, batch, act_flags, here, of_steps, seed, eval_seed, sampler = sys.argv[1:]
sys.path.insert(0, here)
from pusht_success import device_name, make_row  # one row schema for CPU and GPU rows
device = device_name(device)
def episodes(name):
    data = json.loads((work_path / name / "checkpoints/last/pretrained_model/train_config.json").read_text())
    info = pathlib.Path(data["dataset"]["root"]) / "meta/info.json"
    return json.loads(info.read_text())["total_episodes"] if info.exists() else None
work_path, rows = pathlib.Path(work), []
for info in sorted(work_path.glob("eval_*_*/eval_info.json")):
    name, step = re.fullmatch(r"eval_(.+)_(\d+)", info.parent.name).groups()
    image = name.startswith("image_")
    config = json.loads((work_path / name / f"checkpoints/{int(step):06d}/pretrained_model/config.json").read_text())
    rows.append(make_row(
        name.removeprefix("image_"), json.loads(info.read_text())["overall"], steps=int(step), of_steps=int(of_steps),
        batch_size=int(batch), seed=int(seed), sampler=sampler, eval_seed=int(eval_seed), train_wall_s=int(train_s),
        down_dims=config.get("down_dims"),  # as trained; None for act and the transformer
        n_action_steps=config["n_action_steps"],
        extra_flags=act_flags if name == "act" else "", streaming=True, device=device,
        obs="image" if image else "keypoints", episodes=episodes(name),
        note="benchmarks/gpu_pusht.sh: five runs shared one GPU for train_wall_s; "
             + ("evaluated at its last checkpoint" if image
                else "evaluated at the last checkpoint every keypoint run reached, and at 1/2 and 1/4 of it")))
(work_path / "gpu_rows.json").write_text(json.dumps(rows, indent=1) + "\n")
for r in rows:
    print(f"{r['obs']:9s} {r['policy']:27s} step {r['steps']:6d}: {r['pc_success']:5.1f}% success, "
          f"avg max coverage {r['avg_max_reward']:.3f}")
PY
