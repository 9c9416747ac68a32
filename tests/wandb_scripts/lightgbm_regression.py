# Follows https://github.com/wandb/examples/blob/master/examples/boosting-algorithms/lightgbm-regression/train.py
# (wandb/examples; no license file): wandb.init(), wandb.config.update(params), lgb.train with
# W&B's LightGBM callback and early stopping, then log_summary(gbm, save_model_checkpoint=True).
# Differs besides `import wandb`: W&B's `from wandb.lightgbm import log_summary,
# wandb_callback` is `from localtrack.integrations.lightgbm import ...`; random regression
# data of the example's 28 features instead of LightGBM's downloaded regression files.
import lightgbm as lgb
import numpy as np

import localtrack as wandb
from localtrack.integrations.lightgbm import log_summary, wandb_callback

wandb.init()

rng = np.random.default_rng(0)
X_train, X_test = rng.random((200, 28)), rng.random((50, 28))
y_train, y_test = rng.integers(0, 2, 200), rng.integers(0, 2, 50)
lgb_train = lgb.Dataset(X_train, y_train)
lgb_eval = lgb.Dataset(X_test, y_test, reference=lgb_train)

params = {
    "boosting_type": "gbdt",
    "objective": "regression",
    "metric": ["rmse", "l2", "l1", "huber"],
    "num_leaves": 31,
    "learning_rate": 0.05,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 5,
    "verbosity": -1,
}
wandb.config.update(params)

gbm = lgb.train(params, lgb_train, num_boost_round=20, valid_sets=lgb_eval,
                valid_names=("validation"),
                callbacks=[wandb_callback(), lgb.early_stopping(stopping_rounds=5)])
y_pred = gbm.predict(X_test, num_iteration=gbm.best_iteration)
print("The rmse of prediction is:", float(np.mean((y_test - y_pred) ** 2)) ** 0.5)
log_summary(gbm, save_model_checkpoint=True)
