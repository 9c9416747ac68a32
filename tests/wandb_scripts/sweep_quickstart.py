# Follows https://docs.wandb.ai/guides/sweeps/walkthrough (W&B's sweep walkthrough; its source
# is https://github.com/wandb/docs, whose samples are under that repository's terms): an
# objective read from run.config inside `with wandb.init(project=) as run:`,
# wandb.sweep(sweep=sweep_configuration, project=) and wandb.agent(sweep_id, function=main,
# count=).
# Differs besides the import: count=3 instead of 10.
import localtrack as wandb


def objective(config):
    return config.x**3 + config.y


def main():
    with wandb.init(project="my-first-sweep") as run:
        score = objective(run.config)
        run.log({"score": score})


sweep_configuration = {
    "method": "random",
    "metric": {"goal": "minimize", "name": "score"},
    "parameters": {
        "x": {"max": 0.1, "min": 0.01},
        "y": {"values": [1, 3, 7]},
    },
}

sweep_id = wandb.sweep(sweep=sweep_configuration, project="my-first-sweep")
wandb.agent(sweep_id, function=main, count=3)
