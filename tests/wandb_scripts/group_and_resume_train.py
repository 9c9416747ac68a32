# Follows https://github.com/wandb/examples/blob/master/examples/api-examples/group-and-resume/train.py
# (wandb/examples; no license file): argparse arguments, wandb.init(group=, job_type=),
# wandb.config.update(args) with the Namespace, an attribute set on wandb.config, and one
# wandb.log() of epoch, loss and train/acc per epoch.
# Differs besides the import: 5 epochs instead of 50, without the 0.25 s sleep in each.
import argparse
import random

import localtrack as wandb

parser = argparse.ArgumentParser(description="Train an example model")
parser.add_argument("--group_id", type=str, default=None)
parser.add_argument("--worker_index", type=int, default=0)
parser.add_argument("--learning_rate", type=float, default=0.9)
parser.add_argument("--momentum", type=float, default=0.8)


def loss_curve(step):
    result = 10 / (step + 1)
    return result + (random.random() - 0.5) * 0.5 * result


def main():
    args = parser.parse_args()
    if args.group_id is None:
        print("Please pass --group_id")
        return
    wandb.init(group=args.group_id, job_type="train")
    wandb.config.update(args)
    wandb.config.job_type = "training"
    print(f"Training worker #{args.worker_index}")
    for i in range(5):
        loss = loss_curve(i)
        wandb.log({"epoch": i, "loss": loss, "train/acc": (100 - loss) / 100.0})


if __name__ == "__main__":
    main()
