# Follows https://github.com/wandb/examples/blob/master/examples/boosting-algorithms/xgboost-dermatology/train.py
# (wandb/examples; no license file): wandb.init(), the parameters through wandb.config.update,
# xgb.train with callbacks=[wandb.xgboost.wandb_callback()] (W&B's integration reached as an
# attribute of the wandb module), then wandb.summary["Error Rate"].
# Differs besides the import: random rows of the dermatology data's shape (33 features, 6
# classes) instead of ./dermatology.data.
import numpy as np
import xgboost as xgb

import localtrack as wandb

wandb.init()

rng = np.random.default_rng(0)
data = np.column_stack([rng.integers(0, 4, (120, 34)), rng.integers(0, 6, 120)]).astype(float)
sz = data.shape
train = data[:int(sz[0] * 0.7), :]
test = data[int(sz[0] * 0.7):, :]
train_X, train_Y = train[:, :33], train[:, 34]
test_X, test_Y = test[:, :33], test[:, 34]

xg_train = xgb.DMatrix(train_X, label=train_Y)
xg_test = xgb.DMatrix(test_X, label=test_Y)
param = {"objective": "multi:softmax", "eta": 0.1, "max_depth": 6, "nthread": 1, "num_class": 6}
wandb.config.update(param)

watchlist = [(xg_train, "train"), (xg_test, "test")]
num_round = 5
bst = xgb.train(param, xg_train, num_round, watchlist, callbacks=[wandb.xgboost.wandb_callback()])
pred = bst.predict(xg_test)
error_rate = np.sum(pred != test_Y) / test_Y.shape[0]
print(f"Test error using softmax = {error_rate}")
wandb.summary["Error Rate"] = error_rate
