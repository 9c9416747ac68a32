# Follows https://github.com/wandb/examples/blob/master/examples/launch/launch-quickstart/train.py
# (wandb/examples; no license file): `with wandb.init(config=config) as run:`, the
# hyperparameters read back as attributes of run.config, every 25 iterations a run.log() of the
# mean loss and a wandb.Histogram of the losses, and on each epoch's first batch a wandb.Table
# of wandb.Image, label and prediction.
# Differs besides the import: random 1x28x28 images instead of FashionMNIST's download (64
# images), 2 epochs, a smaller CNN.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import localtrack as wandb


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 4, kernel_size=3, padding=1), nn.BatchNorm2d(4),
                                    nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.fc(self.layer1(x).view(x.size(0), -1))


config = {"learning_rate": 0.0001, "batch_size": 8, "epochs": 2}

with wandb.init(config=config) as run:
    config = run.config
    model = FashionCNN()
    data = TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    train_loader = DataLoader(data, batch_size=config.batch_size)
    error = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    iter = 0
    losses = []
    for _epoch in range(config.epochs):
        for idx, (images, labels) in enumerate(train_loader):
            iter += 1
            outputs = model(images)
            loss = error(outputs, labels)
            losses.append(loss.item())
            if iter % 25 == 1:
                run.log({"train/loss": sum(losses) / len(losses),
                         "train/losses": wandb.Histogram(losses)})
                losses = []
            if idx == 0:
                table = wandb.Table(columns=["image", "label", "prediction"])
                for im, lab, pred in zip(images, labels, outputs, strict=True):
                    table.add_data(wandb.Image(im.cpu()), lab.item(), torch.argmax(pred).item())
                run.log({"train/predictions": table})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
