"""Convert the original Diffusion Policy PushT zarr store into a LeRobotDataset: `--help` for the options.

The converter is diffusion_plus_tools/pusht_zarr.py, which the tests and benchmarks import as well.
"""

from diffusion_plus_tools.pusht_zarr import main

if __name__ == "__main__":
    main()
