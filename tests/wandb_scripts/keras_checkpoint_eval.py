# Follows https://docs.wandb.ai/models/integrations/keras ("Checkpoint a model using
# WandbModelCheckpoint" and "Visualize model predictions using WandbEvalCallback"; its source is
# https://github.com/wandb/docs, whose samples are under that repository's terms): the
# WandbClfEvalCallback subclass of WandbEvalCallback (add_ground_truth with wandb.Image cells,
# add_model_predictions through data_table_ref.get_index()), then
# `with wandb.init(config=...) as run:` model.fit(..., callbacks=[WandbMetricsLogger(),
# WandbModelCheckpoint(...), WandbClfEvalCallback(validation_data=..., data_table_columns=[...],
# pred_table_columns=[...])]), the two samples' callbacks in one fit.
# Differs besides `import wandb`: W&B's `from wandb.integration.keras import ...` is
# `from localtrack.integrations.keras import ...`; Keras 3 (torch backend) saves to a
# `.keras` file where the sample's TensorFlow Keras 2 saved the folder "models", and
# `keras.ops.argmax` stands for `tf.argmax`; 8x8 random images of 3 classes (48 to train, 12 to
# validate) and a one-layer model for 2 epochs.
import keras
import numpy as np

import localtrack as wandb
from localtrack.integrations.keras import (
    WandbEvalCallback,
    WandbMetricsLogger,
    WandbModelCheckpoint,
)


class WandbClfEvalCallback(WandbEvalCallback):
    def __init__(self, validation_data, data_table_columns, pred_table_columns, num_samples=100):
        super().__init__(data_table_columns, pred_table_columns)
        self.x = validation_data[0]
        self.y = validation_data[1]

    def add_ground_truth(self, logs=None):
        for idx, (image, label) in enumerate(zip(self.x, self.y, strict=True)):
            self.data_table.add_data(idx, wandb.Image(image), label)

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0)
        preds = keras.ops.argmax(preds, axis=-1)
        table_idxs = self.data_table_ref.get_index()
        for idx in table_idxs:
            pred = preds[idx]
            self.pred_table.add_data(
                epoch,
                self.data_table_ref.data[idx][0],
                self.data_table_ref.data[idx][1],
                self.data_table_ref.data[idx][2],
                pred,
            )


keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images, labels = rng.random((60, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 60)
X_train, y_train, X_test, y_test = images[:48], labels[:48], images[48:], labels[48:]
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

with wandb.init(config={"hyper": "parameter"}) as run:
    model.fit(
        X_train,
        y_train,
        epochs=2,
        verbose=0,
        validation_data=(X_test, y_test),
        callbacks=[
            WandbMetricsLogger(),
            WandbModelCheckpoint("models.keras"),
            WandbClfEvalCallback(
                validation_data=(X_test, y_test),
                data_table_columns=["idx", "image", "label"],
                pred_table_columns=["epoch", "idx", "image", "label", "pred"],
            ),
        ],
    )
