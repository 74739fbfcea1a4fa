"""Something for TensorBoard to show: a short fit whose loss and weights are logged as it goes."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    x = torch.linspace(-3, 3, 512).unsqueeze(1)
    y = torch.sin(2 * x) + 0.1 * torch.randn(x.shape, generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    with SummaryWriter(args.logdir) as writer:
        for step in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss/train", loss.item(), step)
            if step % 50 == 0:
                writer.add_histogram("weights/first", model[0].weight, step)
    print(f"final loss {loss.item():.4f}; logs in {args.logdir}", flush=True)


if __name__ == "__main__":
    main()
