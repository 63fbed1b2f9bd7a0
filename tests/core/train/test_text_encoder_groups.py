"""The CLIP-L LoRA's own learning rate (lora.text_encoder_lr): a second optimizer group that each
optimizer and the LR schedule honour."""

import torch

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.train.optim import build_optimizer, build_scheduler
from flux_lora_lab.core.train.text_encoder import TEXT_PARAM_PREFIX, param_groups


def test_the_text_lora_gets_its_own_learning_rate_under_the_schedule():
    config = TrainConfig().with_overrides({"optim": {"learning_rate": 1e-4, "lr_scheduler": "linear", "warmup_steps": 0},
                                           "lora": {"train_text_encoder": True, "text_encoder_lr": 3e-5}})
    unet, text = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    groups = param_groups([("double_blocks.0.img_attn.qkv.lora_down", unet), (TEXT_PARAM_PREFIX + "q.lora_down", text)],
                          config.lora.text_encoder_lr)
    optimizer = build_optimizer(config.optim, groups)
    assert [g["params"] for g in optimizer.param_groups] == [[unet], [text]]
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 3e-5]
    scheduler = build_scheduler(optimizer, config.optim, 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [round(g["lr"], 12) for g in optimizer.param_groups] == [5e-5, 1.5e-5]  # linear to 0: halfway


def test_without_a_text_lora_there_is_one_group():
    p = torch.nn.Parameter(torch.zeros(2))
    assert param_groups([("single_blocks.0.linear1.lora_up", p)], 5e-5) == [{"params": [p]}]
