"""One training run: the loop (trainer), flow matching (flow), optimizers (optim), the non-finite
guard (finite), checkpoints and resume (checkpoint, state_io, resume), the memory plan
(memory_plan) and in-training previews (preview). The top layer: it may use every other one."""
