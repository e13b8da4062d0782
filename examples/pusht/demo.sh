#!/usr/bin/env bash
# `make demo`: build PushT keypoint data, train diffusion_plus on CPU with lerobot-train, evaluate it with
# lerobot-eval on gym-pusht, print the success rate, and leave a loss plot and eval videos in $DEMO_DIR.
set -euo pipefail
VENV=${1:-.venv}
PY=$VENV/bin/python
DATA=${DATA:-expert}
DEMO_DIR=${DEMO_DIR:-demo_out}
DEMO_STEPS=${DEMO_STEPS:-5000}
DEMO_BATCH=${DEMO_BATCH:-64}
DEMO_EPISODES=${DEMO_EPISODES:-100}
EVAL_EPISODES=${EVAL_EPISODES:-50}
ZARR=${ZARR:-../shared/data/pusht_cchi_v7_replay.zarr}
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled

if [ "$DATA" = auto ]; then
  if [ -e "$ZARR" ]; then DATA=human; else DATA=expert; fi
fi
mkdir -p "$DEMO_DIR"
data="$DEMO_DIR/data_$DATA"
step() { echo; echo "== $*"; }

if [ ! -e "$data/meta/info.json" ]; then
  case "$DATA" in
    human) step "converting the human demos in $ZARR"
           "$PY" examples/pusht/convert_zarr.py --zarr "$ZARR" --root "$data" --no-images --force ;;
    expert) step "recording $DEMO_EPISODES scripted-expert episodes"
            "$PY" examples/pusht/generate_expert.py --root "$data" --episodes "$DEMO_EPISODES" --seed 0 \
              --no-images --workers 2 --force ;;
    *) echo "error: DATA must be expert, human or auto (human if the zarr exists), got '$DATA'"; exit 2 ;;
  esac
fi

step "training diffusion_plus for $DEMO_STEPS steps on $data (CPU)"
rm -rf "$DEMO_DIR/train"
# The CPU PushT recipe (examples/pusht/train_cpu_30min.json: U-Net 64/128/256, lr 1e-3, streaming reads) with
# the demo's step count, so that training fits the demo's 20 minutes on 2 cores.
"$VENV/bin/lerobot-train" --config_path=examples/pusht/train_cpu_30min.json \
  --dataset.repo_id=local/pusht --dataset.root="$data" \
  --steps="$DEMO_STEPS" --batch_size="$DEMO_BATCH" --save_freq="$DEMO_STEPS" --log_freq=100 \
  --output_dir="$DEMO_DIR/train" 2>&1 | tee "$DEMO_DIR/train.log" \
  | stdbuf -oL tr "\r" "\n" | grep --line-buffered -oE "INFO.* step:.*|INFO.*End of training" || true
test -e "$DEMO_DIR/train/checkpoints/last/pretrained_model/model.safetensors" || {
  echo "error: training failed, see $DEMO_DIR/train.log"; exit 1; }
"$PY" examples/pusht/plot_loss.py "$DEMO_DIR/train.log" "$DEMO_DIR/loss.png" 100

step "evaluating on gym-pusht, $EVAL_EPISODES episodes, DDIM-10"
rm -rf "$DEMO_DIR/eval"
# One thread, as in training: two torch threads slow to a crawl when anything else runs on a 2-core machine
# (20 episodes: 75 s at one thread, about 10 min at two, beside a training job).
OMP_NUM_THREADS=1 "$VENV/bin/lerobot-eval" --policy.path="$DEMO_DIR/train/checkpoints/last/pretrained_model" \
  --env.type=pusht --env.obs_type=environment_state_agent_pos --eval.n_episodes="$EVAL_EPISODES" \
  --eval.batch_size="$EVAL_EPISODES" --eval.use_async_envs=false --policy.device=cpu \
  --policy.noise_scheduler_type=DDIM --policy.num_inference_steps=10 --seed=100000 \
  --output_dir="$DEMO_DIR/eval" > "$DEMO_DIR/eval.log" 2>&1 || { tail -20 "$DEMO_DIR/eval.log"; exit 1; }
"$PY" - "$DEMO_DIR" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
o = json.loads((d / "eval" / "eval_info.json").read_text())["overall"]
print(f"\nPushT success {o['pc_success']:.1f}% over {o['n_episodes']} episodes, "
      f"average max coverage {o['avg_max_reward']:.3f}")
print(f"loss plot: {d / 'loss.png'}   videos: {d / 'eval' / 'videos'}")
PY
