# Follows https://github.com/karpathy/nanoGPT/blob/master/train.py (MIT License): its config is
# the script's globals, wandb.init(project=, name=, config=) on the master process, and every
# eval_interval iterations one wandb.log() of iter, train/loss, val/loss, lr and mfu.
# Differs besides the import: a one-layer model on random token ids instead of GPT-2 on
# OpenWebText; no checkpointing, DDP or compile.
import math

import torch

import localtrack as wandb

out_dir = "out"
eval_interval = 4
eval_iters = 2
log_interval = 1
wandb_log = True
wandb_project = "owt"
wandb_run_name = "gpt2"
batch_size = 4
block_size = 8
vocab_size = 32
learning_rate = 6e-4
max_iters = 12
warmup_iters = 2
lr_decay_iters = 12
min_lr = 6e-5
config_keys = [k for k, v in globals().items()
               if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
config = {k: globals()[k] for k in config_keys}

torch.manual_seed(1337)
data = {"train": torch.randint(0, vocab_size, (512,)), "val": torch.randint(0, vocab_size, (128,))}
model = torch.nn.Sequential(torch.nn.Embedding(vocab_size, 16), torch.nn.Linear(16, vocab_size))
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)


def get_batch(split):
    d = data[split]
    ix = torch.randint(len(d) - block_size - 1, (batch_size,))
    x = torch.stack([d[i:i + block_size] for i in ix])
    y = torch.stack([d[i + 1:i + 1 + block_size] for i in ix])
    return x, y


def loss_of(x, y):
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.view(-1, vocab_size), y.view(-1))


@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ("train", "val"):
        out[split] = torch.stack([loss_of(*get_batch(split)) for _ in range(eval_iters)]).mean()
    model.train()
    return out


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


if wandb_log:
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

iter_num = 0
running_mfu = -1.0
while True:
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if iter_num % eval_interval == 0:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if wandb_log:
            wandb.log({
                "iter": iter_num,
                "train/loss": losses["train"],
                "val/loss": losses["val"],
                "lr": lr,
                "mfu": running_mfu * 100,
            })
    loss = loss_of(*get_batch("train"))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    if iter_num > max_iters:
        break
