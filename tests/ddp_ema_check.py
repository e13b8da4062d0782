"""Run under torchrun (gloo, CPU): DDP training steps with different data per rank, then check that the EMA
weights are identical on every rank. Prints 'EMA identical on N ranks' on rank 0."""

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
    torch.manual_seed(0)  # same initial weights on every rank, as lerobot-train's set_seed gives
    policy = make_policy(make_config(policy_type))
    ddp = DistributedDataParallel(policy)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    for step in range(5):
        loss, _ = ddp(make_batch(policy.config, seed=100 * step + rank))  # different data per rank
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
    flat = torch.cat([p.detach().flatten() for p in policy.ema.model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    live = torch.cat([p.detach().flatten() for p in policy.model.parameters()])
    if rank == 0:
        assert int(policy.ema.step) == 5
        assert not torch.equal(flat, live), "EMA differs from the live weights after averaging"
        for other in gathered[1:]:
            assert torch.equal(other, gathered[0]), "EMA weights differ across ranks"
        print(f"EMA identical on {world} ranks", flush=True)
    # Leave without gloo's teardown: every collective is done, and its shutdown is where a rare hang was seen.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
