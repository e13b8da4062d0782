"""Write a small SO-100-shaped LeRobotDataset with two cameras and no arm: `--help` for the options.

The writer is diffusion_plus_tools/so100_synthetic.py, which the tests and benchmarks import as well.
"""

from diffusion_plus_tools.so100_synthetic import main

if __name__ == "__main__":
    main()
