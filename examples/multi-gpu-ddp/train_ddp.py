"""DistributedDataParallel on every GPU torchrun starts a process for (NCCL), or on CPU processes (gloo).

    torchrun --standalone --nproc-per-node 2 train_ddp.py --epochs 5

Each process trains on its own shard of a synthetic data set; gradients are averaged across
processes on every step, and rank 0 logs the averaged loss and saves the checkpoint. Run
without torchrun it is a world of one process.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="per process")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    parser.add_argument("--out", type=Path, default=Path("runs/ddp"))
    return parser.parse_args()


def setup() -> torch.device:
    """Join the process group torchrun describes in the environment (or a world of one)."""
    for name, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ):
        os.environ.setdefault(name, value)
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def synthetic(samples: int) -> TensorDataset:
    """The same data in every process (same seed): the sampler gives each its own part."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 32, generator=generator)
    w = torch.randn(32, 1, generator=generator) / 32**0.5
    return TensorDataset(x, torch.sin(2 * x @ w))


def main() -> None:
    args = arguments()
    device = setup()
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"rank {rank}/{world} on {device}", flush=True)

    data = synthetic(args.samples)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    torch.manual_seed(0)  # the same initial weights everywhere; DDP also broadcasts rank 0's
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    model = DistributedDataParallel(
        model.to(device), device_ids=[device.index] if device.type == "cuda" else None
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()

    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same in every process
        started = time.perf_counter()
        total = torch.zeros(2, device=device)  # sum of losses, number of samples
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()  # DDP averages the gradients across processes here
            optimizer.step()
            total += torch.stack([loss.detach() * len(x), torch.tensor(float(len(x)), device=device)])
        dist.all_reduce(total)
        if rank == 0:
            seconds = time.perf_counter() - started
            print(f"epoch {epoch}/{args.epochs}  loss {total[0] / total[1]:.4f}  {seconds:.2f}s", flush=True)

    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(model.module.state_dict(), args.out / "model.pt")
        print(f"saved {args.out / 'model.pt'}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
