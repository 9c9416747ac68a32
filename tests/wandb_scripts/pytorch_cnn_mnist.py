# Follows https://github.com/wandb/examples/blob/master/examples/pytorch/pytorch-cnn-mnist/main.py
# (wandb/examples; no license file): wandb.init() before argparse, wandb.config.update(args)
# with the Namespace, wandb.watch(model), and after each epoch's test one wandb.log() of a list
# of wandb.Image (with captions), the test accuracy and the test loss.
# Differs besides the import: random 1x28x28 images and labels instead of torchvision's MNIST
# download (64 training and 32 test images), 2 epochs.
import argparse

import torch
import torch.nn.functional as F
from torch import nn, optim

import localtrack as wandb


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.view(-1, 320)))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def loader(n, batch_size):
    data = torch.utils.data.TensorDataset(torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)


def train(args, model, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}] Loss: {loss.item():.6f}")


def test(model, test_loader):
    model.eval()
    test_loss, correct, example_images = 0.0, 0, []
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.max(1, keepdim=True)[1]
            correct += pred.eq(target.view_as(pred)).sum().item()
            example_images.append(wandb.Image(
                data[0], caption=f"Pred: {pred[0].item()} Truth: {target[0]}"))
    n = len(test_loader.dataset)
    wandb.log({"Examples": example_images, "Test Accuracy": 100.0 * correct / n,
               "Test Loss": test_loss / n})


def main():
    wandb.init()
    parser = argparse.ArgumentParser(description="PyTorch MNIST Example")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--test-batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--no-cuda", action="store_true", default=False)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=2)
    args = parser.parse_args()
    wandb.config.update(args)
    torch.manual_seed(args.seed)
    train_loader, test_loader = loader(64, args.batch_size), loader(32, args.test_batch_size)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    wandb.watch(model)
    for epoch in range(1, args.epochs + 1):
        train(args, model, train_loader, optimizer, epoch)
        test(model, test_loader)


if __name__ == "__main__":
    main()
