# Follows https://github.com/wandb/examples/blob/master/examples/pytorch/pytorch-ddp/log-rank0.py
# (wandb/examples; no license file): on rank 0 only, run = wandb.init(entity=, project=) from
# argparse, run.watch(model), run.log({"batch_loss": ...}) each batch and
# run.log({"epoch": ..., "loss": np.mean(...)}) each epoch; other ranks get no run.
# Differs besides the import: one CPU process (rank 0, no process group, no DDP wrapper), random
# 1x28x28 images instead of FashionMNIST's download (64 images, batches of 16).
import argparse

import numpy as np
import torch
from torch import nn

import localtrack as wandb


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--epochs", default=2, type=int)
    parser.add_argument("--batch", default=16, type=int)
    parser.add_argument("--entity", type=str, default="team")
    parser.add_argument("--project", type=str, default="ddp")
    return parser.parse_args()


class ConvNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 16, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.fc = nn.Linear(7 * 7 * 32, num_classes)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(x)).reshape(x.size(0), -1))


def train(args, run=None):
    args.is_master = args.local_rank == 0
    torch.manual_seed(42)
    model = ConvNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), 1e-4)
    if args.is_master and run:
        run.watch(model)
    data = torch.utils.data.TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    train_loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=False)
    for epoch in range(args.epochs):
        batch_loss = []
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_loss.append(loss.item())
            if args.is_master and run:
                run.log({"batch_loss": loss.item()})
        if args.is_master and run:
            run.log({"epoch": epoch, "loss": np.mean(batch_loss)})


if __name__ == "__main__":
    args = parse_args()
    if args.local_rank == 0:
        run = wandb.init(entity=args.entity, project=args.project)
        train(args, run)
    else:
        train(args)
