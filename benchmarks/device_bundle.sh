#!/usr/bin/env bash
# Build .devdata/ for `benchmarks/pusht_success.py --time-budget` on a GPU machine that has torch 2.11 but not
# LeRobot, cannot reach PyPI, and receives at most 64 MiB of files:
#   .devdata/deps.tar.xz  LeRobot 0.6.1, this package and the dependencies that machine lacks (PyAV,
#                         diffusers, gym-pusht, pymunk, pygame, datasets, ...), installed into one tree
#   .devdata/kp           the 206 human demos, keypoints       (convert_zarr.py --no-images)
#   .devdata/img          the first IMG_EPISODES with images   (convert_zarr.py --no-keypoints)
#
#   bash benchmarks/device_bundle.sh          # then, on the GPU machine, carrying .devdata:
#   python3 -c "import tarfile; tarfile.open('.devdata/deps.tar.xz').extractall('/tmp')" && mv /tmp/full /tmp/site \
#     && sed -i '1s|.*|#!/usr/bin/env python3|' /tmp/site/bin/lerobot-* \
#     && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH \
#     && python3 benchmarks/pusht_success.py --time-budget 210 --device cuda --data .devdata/kp \
#        --image-data .devdata/img --workdir /tmp/w
#
# .devdata/ is git-ignored: copy it to the GPU machine beside the working tree.
set -euo pipefail
PY=${PY:-.venv/bin/python}
ZARR=${ZARR:-../shared/data/pusht_cchi_v7_replay.zarr}
IMG_EPISODES=${IMG_EPISODES:-140}
LIMIT=$((64 * 1024 * 1024))
export HF_HUB_OFFLINE=1
# What such a machine's image lacks (beside torch), at this venv's versions.
MISSING="lerobot==0.6.1 draccus==0.11.6 mergedeep==1.3.4 toml==0.10.2 datasets==4.8.5 dill==0.4.1
multiprocess==0.70.19 gym-pusht==0.1.8 gymnasium==1.4.0 farama-notifications==0.0.6 pymunk==6.11.1 cffi==2.1.1
pycparser pygame==2.6.1 shapely==2.2.0 termcolor==3.3.0 jsonlines==4.0.0 deprecated==3.0.1 diffusers==0.42.1
importlib_metadata==10.2.0 av==15.1.0"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p .devdata
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$tmp/wheels" $MISSING
"$PY" -m pip wheel -q --no-deps -w "$tmp/wheels" .
"$PY" -m pip install -q --no-deps --no-compile --target "$tmp/full" "$tmp/wheels"/*.whl
# Parts nothing here imports, to fit the 64 MiB: pygame's docs/examples/tests, diffusers' pipelines (LeRobot's
# diffusion needs its schedulers only), caches and stubs.
rm -rf "$tmp/full"/pygame/{docs,examples,tests} "$tmp/full"/diffusers/{pipelines,modular_pipelines}
find "$tmp/full" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$tmp/full" -name '*.pyi' -delete
tar cf - -C "$tmp" full | xz -T2 -6 > .devdata/deps.tar.xz

[ -e .devdata/kp/meta/info.json ] || "$PY" examples/pusht/convert_zarr.py --zarr "$ZARR" --root .devdata/kp \
  --no-images --force
[ -e .devdata/img/meta/info.json ] || "$PY" examples/pusht/convert_zarr.py --zarr "$ZARR" --root .devdata/img \
  --no-keypoints --episodes "$IMG_EPISODES" --force
size=$(du -sb .devdata | cut -f1)
echo ".devdata: $size bytes (a call carries at most $LIMIT with the working tree)"
[ "$size" -lt "$LIMIT" ] || { echo "error: too large; lower IMG_EPISODES" >&2; exit 1; }
