# Follows https://github.com/wandb/examples/blob/master/examples/pytorch/pytorch-cnn-fashion/train.py
# (wandb/examples; no license file), the program of that folder's sweep-grid-hyperband.yaml
# (next to this file) run by `wandb sweep` + `wandb agent`: wandb.init(config=defaults,
# project=) at import, config = wandb.config read by the model, wandb.watch(model), one
# wandb.log() of accuracy, loss and per-class accuracy every N iterations, then torch.save
# into wandb.run.dir. The script parses no arguments: the agent's --dropout=... flags are
# ignored and the sweep's values reach it through wandb.config.
# Differs besides the import: random 1x28x28 images and labels instead of the Fashion-MNIST
# download (100 training and 50 test images: one batch each, no torchvision transforms), a log
# every 3 iterations instead of 100 (so a run logs 9 values over its 27 epochs).
import os

import torch
from torch import nn
from torch.autograd import Variable

import localtrack as wandb

hyperparameter_defaults = dict(
    dropout=0.5,
    channels_one=16,
    channels_two=32,
    batch_size=100,
    learning_rate=0.001,
    epochs=2,
)

wandb.init(config=hyperparameter_defaults, project="pytorch-cnn-fashion")
config = wandb.config


class CNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn1 = nn.Conv2d(in_channels=1, out_channels=config.channels_one, kernel_size=5,
                              stride=1, padding=0)
        self.relu1 = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=2)
        self.cnn2 = nn.Conv2d(in_channels=config.channels_one, out_channels=config.channels_two,
                              kernel_size=5, stride=1, padding=0)
        self.relu2 = nn.ReLU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=2)
        self.dropout = nn.Dropout(p=config.dropout)
        self.fc1 = nn.Linear(config.channels_two * 4 * 4, 10)

    def forward(self, x):
        out = self.maxpool1(self.relu1(self.cnn1(x)))
        out = self.maxpool2(self.relu2(self.cnn2(out)))
        out = out.view(out.size(0), -1)
        return self.fc1(self.dropout(out))


def loader(n, shuffle):
    gen = torch.Generator().manual_seed(n)
    data = torch.utils.data.TensorDataset(torch.randn(n, 1, 28, 28, generator=gen),
                                          torch.randint(0, 10, (n,), generator=gen))
    return torch.utils.data.DataLoader(dataset=data, batch_size=config.batch_size,
                                       shuffle=shuffle)


def main():
    torch.manual_seed(0)
    train_loader, test_loader = loader(100, True), loader(50, False)
    label_names = ["T-shirt or top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Boot"]

    model = CNNModel()
    wandb.watch(model)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

    iter = 0
    for _epoch in range(config.epochs):
        for images, labels in train_loader:
            images, labels = Variable(images), Variable(labels)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            iter += 1
            if iter % 3 == 0:
                correct, total = 0.0, 0.0
                correct_arr, total_arr = [0.0] * 10, [0.0] * 10
                for images, labels in test_loader:
                    _, predicted = torch.max(model(Variable(images)).data, 1)
                    total += labels.size(0)
                    correct += (predicted == labels).sum()
                    for label in range(10):
                        correct_arr[label] += ((predicted == labels) & (labels == label)).sum()
                        total_arr[label] += (labels == label).sum()
                accuracy = correct / total
                metrics = {"accuracy": accuracy, "loss": loss}
                for label in range(10):
                    metrics["Accuracy " + label_names[label]] = correct_arr[label] / total_arr[label]
                wandb.log(metrics)
                print(f"Iteration: {iter} Loss: {loss:.2f} Accuracy: {accuracy:.2f}")
    torch.save(model.state_dict(), os.path.join(wandb.run.dir, "model.pt"))


if __name__ == "__main__":
    main()
