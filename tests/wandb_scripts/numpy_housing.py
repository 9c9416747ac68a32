# Follows https://github.com/wandb/examples/blob/master/examples/machine-learning/numpy-housing/train.py
# (wandb/examples; no license file): wandb.init(project=), hyperparameters set as attributes of
# wandb.config and read back from it, one wandb.log({"Loss": ...}) of a numpy value per sample,
# then np.save and wandb.save("weights.npy").
# Differs besides the import: 40 random rows of the California housing data's shape (8
# features) instead of scikit-learn's download.
import numpy as np

import localtrack as wandb

wandb.init(project="numpy-housing-demo")
wandb.config.lr = 0.000001
wandb.config.epochs = 1

rng = np.random.default_rng(0)
data, target = rng.random((40, 8)), rng.random(40) * 5

weights = np.zeros(data.shape[1])
bias = 0
for _ in range(wandb.config.epochs):
    np.random.shuffle(data)
    for i in range(data.shape[0]):
        x, y = data[i, :], target[i]
        err = y - np.dot(weights, x)
        sign = -1 if err < 0 else 1
        weights += sign * wandb.config.lr * x
        bias += sign * wandb.config.lr
        wandb.log({"Loss": np.abs(err)})

np.save("weights", weights)
wandb.save("weights.npy")
