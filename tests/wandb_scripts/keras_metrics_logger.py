# Follows https://docs.wandb.ai/models/integrations/keras ("Track experiments with
# WandbMetricsLogger"; its source is https://github.com/wandb/docs, whose samples are under that
# repository's terms): a model compiled with accuracy and top@5_accuracy metrics,
# wandb.init(config={"bs": 12}), then model.fit(..., callbacks=[WandbMetricsLogger()]).
# Differs besides `import wandb`: W&B's `from wandb.integration.keras import WandbMetricsLogger`
# is `from localtrack.integrations.keras import ...`; a one-layer classifier on 48 random
# 8-feature rows (10 classes) for 2 epochs, on Keras's torch backend (KERAS_BACKEND=torch).
import keras
import numpy as np

import localtrack as wandb
from localtrack.integrations.keras import WandbMetricsLogger

rng = np.random.default_rng(0)
X_train, X_test = rng.random((48, 8), dtype="float32"), rng.random((16, 8), dtype="float32")
y_train, y_test = rng.integers(0, 10, 48), rng.integers(0, 10, 16)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")])

model.compile(
    optimizer="adam",
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top@5_accuracy")],
)

wandb.init(config={"bs": 12})

model.fit(
    X_train,
    y_train,
    validation_data=(X_test, y_test),
    batch_size=wandb.config.bs,
    epochs=2,
    verbose=0,
    callbacks=[WandbMetricsLogger()],
)
