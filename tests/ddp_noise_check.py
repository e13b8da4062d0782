"""Run under torchrun (gloo, CPU): with the same weights and the same batch on every rank, each rank draws
training noise and timesteps of its own, so the ranks' losses differ. Noise seeded from the saved seed and
step alone would repeat on every rank, and N ranks would train on one rank's noise. Prints
'losses differ on N ranks' on rank 0."""

import faulthandler
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from conftest import make_batch, make_config, make_policy


def main(policy_type: str) -> None:
    # A rare hang was seen in this harness: should one happen, print every thread's stack and exit instead
    # of waiting, so the test can say where it stuck.
    faulthandler.dump_traceback_later(90, exit=True)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # same weights and saved noise seed on every rank, as lerobot-train's set_seed gives
    policy = make_policy(make_config(policy_type))
    ddp = DistributedDataParallel(policy)
    loss, _ = ddp(make_batch(policy.config, seed=0))  # the same batch on every rank
    losses = [torch.empty_like(loss) for _ in range(world)]
    dist.all_gather(losses, loss.detach())
    if rank == 0:
        assert len({float(x) for x in losses}) == world, f"every rank drew the same noise: losses {losses}"
        print(f"losses differ on {world} ranks", flush=True)
    # Leave without gloo's teardown: every collective is done, and its shutdown is where a rare hang was seen.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
