"""Tooling shared by the examples, benchmarks and tests of lerobot_policy_diffusion_plus (not the plugin).

- `pusht_data`, `pusht_zarr`, `pusht_expert`: PushT LeRobotDatasets (features, the zarr converter, the
  scripted expert); `so100_synthetic`: the synthetic two-camera SO-100 dataset;
- `lerobot_cli`: `lerobot-train` flags and running LeRobot's commands offline;
- `results`: the rows of benchmarks/results/pusht_success.json.

Shipped in the wheel beside the plugin, so that a non-editable install (benchmarks/device_bundle.sh) runs the
scripts too. Importing a module here imports no simulator or dataset library; those load when used.
"""
