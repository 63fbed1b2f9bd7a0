"""The training loop: read it top to bottom.

`train(job, control, emit)` attaches a LoRA to the adapter's module, resumes from the run folder's
latest complete checkpoint if there is one, and runs optimizer steps 1..N. Each step:
  1. asks `control` whether to save now, pause or stop (API calls, `.pause`/`.checkpoint`/`.stop`
     files, ComfyUI's Cancel);
  2. for each of `gradient_accumulation` micro-batches: the flow-matching loss on the batch
     (noise, sigmas and dropout drawn from generators seeded by (seed, step, micro)), backward; then
     DOP every n steps (seed 002): the base model's prediction for the class-word prompt (LoRA off)
     is the target of the LoRA model on the same noisy input, backward again;
  3. clips, steps the optimizer and LR schedule, updates the EMA, reports a step event;
  4. saves a checkpoint every `save_every` steps and previews every `sample_every` steps.
Everything random in a step is a pure function of (seed, step), and the data order of the dataset is
too, so resuming from checkpoint k and training to N gives the same LoRA as never stopping.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import seeding
from ..model import lora, lora_format, regional_compile
from ..model.lora_random import init_lora, use_seeded_dropout
from ..run.control import RunControl
from ..run.curve import write_svg
from ..run.events import Checkpoint, DatasetReport, EvalLoss, Event, Finished, Info, Paused, Resumed, Started, Step
from ..run.progress import Throughput, memory_snapshot
from .checkpoint import (
    LORA_FILE,
    LoraFileInfo,
    TrainingState,
    checkpoint_writers,
    restore,
    user_weights,
    user_weights_swapped_in,
)
from .evaluation import eval_loss
from .finite import check_step
from .flow import add_noise, flow_loss, image_seq_len, sample_sigmas
from .job import TrainingJob
from .length import resolve_length, run_length_report
from .optim import LoraEMA, build_optimizer, build_scheduler
from .preview_writer import PreviewWriter
from .resume import check_resume, trained_on
from .text_encoder import TextEncoderTraining, context_for, param_groups, pooled_for, text_lora_disabled, trainable

log = logging.getLogger(__name__)

Emit = Callable[[Event], object]
def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


class _Loop:
    """One run's mutable state; methods are the loop's steps, in the order `run` calls them."""

    def __init__(self, job: TrainingJob, control: RunControl, emit: Emit):
        self.job, self.control, self.emit = job, control, emit
        self.cfg = resolve_length(job.config, job.data)  # train.epochs -> train.steps
        self.adapter = job.adapter
        self.module = job.adapter.module
        self.device = _device_of(self.module)
        self.autocast = self.cfg.train.mixed_precision == "bf16"
        self.total = self.cfg.train.steps
        self.file_info = LoraFileInfo(job.adapter.family, self.cfg.run.trigger, job.base_fingerprint, self.cfg.to_dict(),
                                      layout=self.cfg.run.lora_format, dtype=self.cfg.run.save_dtype)
        self.losses: list[tuple[int, float]] = []
        self.eval_losses: list[tuple[int, float]] = []
        self.step = 0

    # -- set-up -----------------------------------------------------------------------------------
    def attach(self) -> None:
        spec = self.cfg.lora
        lora.attach_lora(self.module, spec, under_autocast=self.autocast)
        init_lora(self.module, spec, seeding.stream_seed(self.cfg.train.seed, "lora init", 0))
        self.step_seed = use_seeded_dropout(self.module, spec.dropout)
        if self.cfg.lora.init_lora:
            source = lora_format.load_lora(self.cfg.lora.init_lora, self.adapter.family, self.cfg.lora.rank)
            lora.load_lora_state_dict(self.module, source.weights, source=str(source.path))
            log.info("initialised the LoRA from %s (%d layers)", source.path, len(source.weights))
        self.text = TextEncoderTraining.for_run(self.job, self.device)  # None unless lora.train_text_encoder
        named = trainable(self.module, self.text and self.text.module)
        params = [p for _, p in named]
        for p in params:
            p.requires_grad_(True)
        self.adapter.swap_blocks(self.cfg.train.blocks_to_swap, self.device)
        if regional_compile.wanted(self.cfg.train.compile, self.device, quantized=self.cfg.model.quantize != "none",
                                   swapping=self.cfg.train.blocks_to_swap > 0):
            log.info("compiled %d blocks (train.compile=%s)", regional_compile.compile_blocks(self.module),
                     self.cfg.train.compile)
        optimizer = build_optimizer(self.cfg.optim, param_groups(named, self.cfg.lora.text_encoder_lr))
        scheduler = build_scheduler(optimizer, self.cfg.optim, self.total)
        ema = LoraEMA(named, self.cfg.train.ema_decay) if self.cfg.train.ema else None
        self.state = TrainingState(self.module, optimizer, scheduler, ema, self.text and self.text.module)
        self.previews = PreviewWriter(self.job.previews, self.adapter, self.state, self.job.run_dir, self.emit,
                                      device=self.device, autocast=self.autocast)
        self.params = params

    def resume(self) -> None:
        job = self.job
        latest = check_resume(job.run_dir, self.cfg, job.base_fingerprint, job.dataset_fingerprint)
        if latest is None:
            return
        restore(self.state, latest)
        self.step = latest.step
        # JSON keeps a non-finite loss as null; the curve skips those points.
        self.losses = [(int(s), float(v)) for s, v in latest.state.get("losses", []) if v is not None]
        self.eval_losses = [(int(s), float(v)) for s, v in latest.state.get("eval_losses", [])]
        log.info("resumed %s from step %d", self.job.run_dir.root, self.step)

    # -- one optimizer step ----------------------------------------------------------------------
    def predict(self, latents, sigmas, context, pooled) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.adapter.predict(latents, sigmas, context, pooled, self.cfg.flow.guidance)

    def micro_step(self, step: int, micro: int) -> float:
        cfg = self.cfg
        accumulation = cfg.optim.gradient_accumulation
        batch = self.job.data.batch((step - 1) * accumulation + micro, cfg.train.batch_size, cfg.train.seed)
        x = batch.latents.to(self.device, torch.float32)
        context = context_for(self.text, batch, self.device)
        pooled = pooled_for(self.text, batch, self.device)
        generator = seeding.generator(cfg.train.seed, "noise and sigmas", (step, micro))
        noise = torch.randn(x.shape, generator=generator).to(self.device)
        seq_len = image_seq_len(x.shape[-2], x.shape[-1], self.adapter.patch_size)
        sigmas = sample_sigmas(cfg.flow, x.shape[0], generator, image_seq_len=seq_len, device=self.device)
        noisy, target = add_noise(x, noise, sigmas)
        self.step_seed.value = seeding.stream_seed(cfg.train.seed, "lora dropout", (step, micro))
        pred = self.predict(noisy, sigmas, context, pooled)
        mask = None if batch.loss_mask is None else batch.loss_mask.to(self.device)
        weights = None if batch.loss_weights is None else batch.loss_weights.to(self.device)
        loss = flow_loss(pred, target, sigmas, cfg.flow.loss_weighting, mask=mask, sample_weights=weights)
        (loss / accumulation).backward()

        dop = cfg.dop
        if dop.enabled and step % dop.every_n_steps == 0 and batch.dop_context is not None:
            with torch.no_grad(), lora.lora_disabled(self.module), text_lora_disabled(self.text):  # base encoders too
                prior = self.predict(noisy, sigmas, context_for(self.text, batch, self.device, True),
                                     pooled_for(self.text, batch, self.device, True)).float()
            dop_pred = self.predict(noisy, sigmas, context_for(self.text, batch, self.device, True),
                                    pooled_for(self.text, batch, self.device, True))
            dop_loss = flow_loss(dop_pred, prior, sigmas, "uniform", mask=mask, sample_weights=weights)
            (dop.multiplier * dop_loss / accumulation).backward()
        return loss.item()

    def optimizer_step(self, step: int) -> float:
        losses = [self.micro_step(step, micro) for micro in range(self.cfg.optim.gradient_accumulation)]
        clip = self.cfg.optim.max_grad_norm if self.cfg.optim.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))  # inf: measured, not clipped
        check_step(step, losses, grad_norm, self.cfg, kept=self.kept)
        self.state.optimizer.step()
        self.state.scheduler.step()
        self.state.optimizer.zero_grad(set_to_none=True)
        if self.state.ema is not None:
            self.state.ema.update()
        return sum(losses) / len(losses)

    def kept(self) -> str:
        latest = self.job.run_dir.latest_checkpoint()
        return f"the checkpoint of step {latest.step} ({latest.path})" if latest else "no checkpoint yet"

    # -- outputs ---------------------------------------------------------------------------------
    def evaluate(self, step: int) -> None:
        """The eval loss of the LoRA as it would be saved (EMA weights when on); at step 0 of the base."""
        if self.job.eval_data is None or not self.cfg.run.eval_timesteps:
            return
        self.module.eval()  # no LoRA dropout
        try:
            with user_weights_swapped_in(self.state) if step else lora.lora_disabled(self.module):
                loss = eval_loss(self.predict, self.job.eval_data, self.cfg.run.eval_timesteps, self.device)
        finally:
            self.module.train()
        self.eval_losses = [(s, v) for s, v in self.eval_losses if s != step] + [(step, loss)]
        self.emit(EvalLoss(step=step, loss=loss))

    def save_checkpoint(self, step: int) -> Path:
        previews = self.previews.render()
        self.evaluate(step)
        info = self.job.run_dir.write_checkpoint(
            step, checkpoint_writers(self.state, self.file_info, step, previews),
            {"step": step, "losses": self.losses, "eval_losses": self.eval_losses,
             **trained_on(self.cfg, self.job.base_fingerprint, self.job.dataset_fingerprint)},
        )
        self.job.run_dir.prune(self.cfg.run.max_step_saves_to_keep)
        self.write_curve()
        self.emit(Checkpoint(step=step, path=str(info.path)))
        self.previews.announce(step, info.path.name, previews)
        return info.path / LORA_FILE

    def write_curve(self) -> None:
        if self.losses:
            steps, values = zip(*self.losses)
            write_svg(self.job.run_dir.curve_path, list(steps), list(values), evals=self.eval_losses)

    def write_final(self, step: int) -> Path:
        path = self.job.run_dir.final_lora_path
        self.file_info.write(path, user_weights(self.state), step, user_weights(self.state, text=True))
        return path

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        self.attach()
        self.resume()
        if self.job.dataset_report is not None and self.step == 0:
            self.emit(DatasetReport(report=run_length_report(dict(self.job.dataset_report), self.job.data, cfg)))
        self.emit(Started(run_id=self.job.run_dir.run_id, total_steps=self.total, start_step=self.step,
                          config=cfg.to_dict()))
        if cfg.optim.effective_learning_rate != cfg.optim.learning_rate:
            self.emit(Info(message=f"optim.optimizer 'prodigy' with the default learning_rate {cfg.optim.learning_rate:g}: "
                                   f"training at {cfg.optim.effective_learning_rate:g} (Prodigy finds its own step size; "
                                   "learning_rate multiplies it)"))
        if self.step >= self.total and self.job.run_dir.final_lora_path.is_file():
            longer = f"train_epochs above {cfg.train.epochs}" if cfg.train.epochs else f"train_steps above {self.step}"
            self.emit(Info(message=f"run {self.job.run_dir.run_id!r} finished at step {self.step}; to train it "
                                   f"further, raise {longer} and queue it again (it goes on "
                                   f"from step {self.step})", step=self.step))
            self.emit(Finished(step=self.step, lora_path=str(self.job.run_dir.final_lora_path)))
            return self.job.run_dir.final_lora_path
        self.module.train()
        self.previews.baseline()
        if self.step == 0:
            self.evaluate(0)
        throughput = Throughput(self.total, self.step)
        last_saved = self.step
        latest_lora: Optional[Path] = None
        while self.step < self.total:
            request = self.control.poll()
            if request.save_now and self.step > last_saved:
                latest_lora, last_saved = self.save_checkpoint(self.step), self.step
            if request.pause and not request.stop:
                if self.step > last_saved:
                    latest_lora, last_saved = self.save_checkpoint(self.step), self.step
                self.emit(Paused(step=self.step))
                request = self.control.wait_while_paused()
                throughput.reset_clock()
                if not request.stop:
                    self.emit(Resumed(step=self.step))
            if request.stop:
                if self.step > last_saved:
                    latest_lora = self.save_checkpoint(self.step)
                self.emit(Finished(step=self.step, lora_path=str(latest_lora) if latest_lora else None,
                                   stopped_early=True))
                return latest_lora
            self.step += 1
            loss = self.optimizer_step(self.step)
            self.losses.append((self.step, loss))
            its, eta = throughput.update(self.step)
            self.emit(Step(step=self.step, total=self.total, loss=loss, lr=self.state.scheduler.get_last_lr()[0],
                           its=its, eta_s=eta, memory=memory_snapshot()))
            saving = self.step == self.total or (cfg.run.save_every and self.step % cfg.run.save_every == 0)
            if saving:
                latest_lora, last_saved = self.save_checkpoint(self.step), self.step
            elif cfg.run.sample_every and self.step % cfg.run.sample_every == 0:
                self.previews.samples(self.step)
        final = self.write_final(self.step)
        self.write_curve()
        self.emit(Finished(step=self.step, lora_path=str(final)))
        return final


def train(job: TrainingJob, control: RunControl, emit: Emit) -> Optional[Path]:
    """Run (or resume) one training; returns the final LoRA path, or the last checkpoint's when stopped."""
    return _Loop(job, control, emit).run()
