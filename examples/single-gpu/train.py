"""A small training run that needs no download: an MLP learns a synthetic regression task.

Runs on the first GPU the box sees, or on the CPU when there is none, and saves a checkpoint
under --out (by default runs/single-gpu, next to this file when the folder is mounted).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--out", type=Path, default=Path("runs/single-gpu"))
    return parser.parse_args()


def synthetic(samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sin(2·x·w), x·w of unit variance: learnable by a small MLP, the same everywhere for a seed."""
    x = torch.randn(samples, 32, generator=generator)
    w = torch.randn(32, 1, generator=generator) / 32**0.5
    return x, torch.sin(2 * x @ w)


def main() -> None:
    args = arguments()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU visible"
    print(f"device: {device} ({name})", flush=True)

    x, y = synthetic(args.samples, torch.Generator().manual_seed(0))
    x, y = x.to(device), y.to(device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()

    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        total = 0.0
        for batch in torch.randperm(len(x), device=device).split(args.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        seconds = time.perf_counter() - started
        print(f"epoch {epoch}/{args.epochs}  loss {total / len(x):.4f}  {seconds:.2f}s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    print(f"saved {args.out / 'model.pt'}", flush=True)


if __name__ == "__main__":
    main()
