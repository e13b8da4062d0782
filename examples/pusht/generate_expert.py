"""Record scripted-expert PushT episodes as a LeRobotDataset: `--help` for the options.

The expert is diffusion_plus_tools/pusht_expert.py, which the tests import as well.
"""

from diffusion_plus_tools.pusht_expert import main

if __name__ == "__main__":
    main()
