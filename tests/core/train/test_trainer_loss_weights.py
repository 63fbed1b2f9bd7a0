"""Per-sample loss weights (a folder's loss_weight, kohya's prior_loss_weight) reach the loss.

Half of every batch is "regularisation" (odd pool items). With weight 0 their content cannot change
the trained LoRA at all: replacing their latents and prompts by other random ones gives the same
LoRA bit for bit, i.e. the gradient is exactly the training samples'. With weight 1 the same
replacement changes the LoRA, so the test fails if the weights never reach the loss.
"""

import torch
from safetensors.torch import load_file

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.flow import flow_loss
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner


class WeightedData(SyntheticData):
    """SyntheticData whose odd items are reg samples of `reg_weight`; `replace_reg` swaps their content."""

    def __init__(self, reg_weight: float, replace_reg: bool):
        super().__init__(items=8)
        self.reg_weight = reg_weight
        if replace_reg:
            g = torch.Generator().manual_seed(2024)
            self.latents[1::2] = torch.randn(self.latents[1::2].shape, generator=g) * 3
            self.context[1::2] = torch.randn(self.context[1::2].shape, generator=g)
            self.pooled[1::2] = torch.randn(self.pooled[1::2].shape, generator=g)

    def batch(self, step, batch_size, seed):
        out = super().batch(step, batch_size, seed)
        index = [(step * batch_size + i) % self.items for i in range(batch_size)]
        out.loss_weights = torch.tensor([self.reg_weight if i % 2 else 1.0 for i in index])
        return out


def config() -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "targets": "attention"},
        "optim": {"learning_rate": 1e-2, "weight_decay": 0.0, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform"},
        "train": {"steps": 3, "batch_size": 4, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "weights", "save_every": 0, "sample_every": 0},
    })


def trained_lora(tmp_path, name, data) -> dict[str, torch.Tensor]:
    path = train(TrainingJob(config(), adopt(tiny_owner(seed=3)), data, RunDir(tmp_path / name)),
                 RunControl(None), lambda event: None)
    return load_file(path)


def test_weight_zero_reg_samples_do_not_move_the_lora_and_weight_one_does(tmp_path):
    zero = trained_lora(tmp_path, "zero", WeightedData(0.0, replace_reg=False))
    zero_replaced = trained_lora(tmp_path, "zero_replaced", WeightedData(0.0, replace_reg=True))
    one = trained_lora(tmp_path, "one", WeightedData(1.0, replace_reg=False))
    one_replaced = trained_lora(tmp_path, "one_replaced", WeightedData(1.0, replace_reg=True))
    assert zero.keys() == one.keys() and zero
    for key in zero:
        torch.testing.assert_close(zero[key], zero_replaced[key], rtol=0, atol=0)
    moved = [k for k in one if not torch.equal(one[k], one_replaced[k])]
    assert moved, "with weight 1 the reg samples' content must change the LoRA"
    assert any(not torch.equal(zero[k], one[k]) for k in zero)


def test_flow_loss_multiplies_each_sample_and_keeps_the_batch_mean():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    sigmas = torch.rand(3, generator=g)
    weights = torch.tensor([1.0, 0.5, 0.0])
    mse = (pred - target).pow(2).flatten(1).mean(1)
    expected = (weights * mse).sum() / 3  # kohya: mean over the batch, not over the weights
    torch.testing.assert_close(flow_loss(pred, target, sigmas, sample_weights=weights), expected)
    torch.testing.assert_close(flow_loss(pred, target, sigmas, sample_weights=torch.ones(3)),
                               flow_loss(pred, target, sigmas), rtol=0, atol=0)
