# Follows https://docs.wandb.ai/models/integrations/lightning ("PyTorch Lightning"; its source is
# https://github.com/wandb/docs, whose samples are under that repository's terms), its PyTorch
# Logger samples in order: WandbLogger(log_model="all"), the LitModule that logs
# train/val loss and accuracy with torchmetrics and calls wandb.define_metric("val_accuracy",
# summary="max") at global step 0, extra config through wandb_logger.experiment.config and
# wandb.config, wandb_logger.watch(model), a ModelCheckpoint, the LogPredictionSamplesCallback
# that calls wandb_logger.log_image(key=, images=, caption=) and log_table(key=, columns=,
# data=) on the first validation batch, then wandb_logger.download_artifact(
# "<project>/model-<run id>:best", artifact_type="model") and load_from_checkpoint.
# Differs besides `import wandb`: Lightning's `from lightning.pytorch.loggers import WandbLogger`
# is `from localtrack.integrations.lightning import WandbLogger`; random 28x28 images of 10
# classes (64 to train, 32 to validate) for 2 epochs on a CPU, a Trainer with
# log_every_n_steps=2 and no progress bar; torchmetrics' accuracy takes its task (torchmetrics
# 1.x); the checkpoint reference is built from the logger's name and version.
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.nn import CrossEntropyLoss, Linear
from torch.nn import functional as F
from torch.optim import Adam
from torchmetrics.functional import accuracy

import localtrack as wandb
from localtrack.integrations.lightning import WandbLogger


class My_LitModule(LightningModule):
    def __init__(self, n_classes=10, n_layer_1=128, n_layer_2=256, lr=1e-3):
        super().__init__()
        self.layer_1 = Linear(28 * 28, n_layer_1)
        self.layer_2 = Linear(n_layer_1, n_layer_2)
        self.layer_3 = Linear(n_layer_2, n_classes)
        self.loss = CrossEntropyLoss()
        self.lr = lr
        self.save_hyperparameters()

    def forward(self, x):
        batch_size, channels, width, height = x.size()
        x = x.view(batch_size, -1)
        x = F.relu(self.layer_1(x))
        x = F.relu(self.layer_2(x))
        return self.layer_3(x)

    def training_step(self, batch, batch_idx):
        _, loss, acc = self._get_preds_loss_accuracy(batch)
        self.log("train_loss", loss)
        self.log("train_accuracy", acc)
        return loss

    def validation_step(self, batch, batch_idx):
        if self.trainer.global_step == 0:
            wandb.define_metric("val_accuracy", summary="max")
        preds, loss, acc = self._get_preds_loss_accuracy(batch)
        self.log("val_loss", loss)
        self.log("val_accuracy", acc)
        return preds

    def configure_optimizers(self):
        return Adam(self.parameters(), lr=self.lr)

    def _get_preds_loss_accuracy(self, batch):
        x, y = batch
        logits = self(x)
        preds = torch.argmax(logits, dim=1)
        loss = self.loss(logits, y)
        acc = accuracy(preds, y, task="multiclass", num_classes=10)
        return preds, loss, acc


class LogPredictionSamplesCallback(Callback):
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        if batch_idx == 0:
            n = 20
            x, y = batch
            images = [img for img in x[:n]]
            captions = [f"Ground Truth: {y_i} - Prediction: {y_pred}"
                        for y_i, y_pred in zip(y[:n], outputs[:n], strict=True)]
            wandb_logger.log_image(key="sample_images", images=images, caption=captions)
            columns = ["image", "ground truth", "prediction"]
            data = [[wandb.Image(x_i), y_i, y_pred]
                    for x_i, y_i, y_pred in list(zip(x[:n], y[:n], outputs[:n], strict=True))]
            wandb_logger.log_table(key="sample_table", columns=columns, data=data)


torch.manual_seed(0)
images, labels = torch.rand(96, 1, 28, 28), torch.randint(0, 10, (96,))
train = torch.utils.data.TensorDataset(images[:64], labels[:64])
val = torch.utils.data.TensorDataset(images[64:], labels[64:])
train_loader = torch.utils.data.DataLoader(train, batch_size=16)
val_loader = torch.utils.data.DataLoader(val, batch_size=16)

wandb_logger = WandbLogger(log_model="all")
model = My_LitModule()
wandb_logger.experiment.config["dataset"] = "random-28x28"
wandb_logger.experiment.config.update({"train_size": 64, "val_size": 32})
wandb.config["batch_size"] = 16
wandb_logger.watch(model)
checkpoint_callback = ModelCheckpoint(monitor="val_accuracy", mode="max")
trainer = Trainer(logger=wandb_logger, callbacks=[checkpoint_callback,
                                                  LogPredictionSamplesCallback()],
                  max_epochs=2, log_every_n_steps=2, accelerator="cpu",
                  enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, train_loader, val_loader)

checkpoint_reference = f"{wandb_logger.name}/model-{wandb_logger.version}:best"
artifact_dir = wandb_logger.download_artifact(checkpoint_reference, artifact_type="model")
model = My_LitModule.load_from_checkpoint(Path(artifact_dir) / "model.ckpt")
print(artifact_dir, model.hparams.lr)
