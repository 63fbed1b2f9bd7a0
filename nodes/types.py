"""The pack's own socket types (namespaced so they never collide with other packs)."""

from comfy_api.latest import io

TrainingModel = io.Custom("FLUXLAB_TRAINING_MODEL")
"""A Flux MODEL prepared for training by LoadFluxForTraining (nodes/_comfy/model.py: TrainingModelHandle)."""

Dataset = io.Custom("FLUXLAB_DATASET")
"""Cached, bucketed training data from DatasetFromFolder (nodes/_comfy/encoders.py: DatasetHandle)."""

Run = io.Custom("FLUXLAB_RUN")
"""A training run (its run folder and id), from TrainLoRA, for SampleCheckpoint / CompareCheckpoints."""

Settings = io.Custom("FLUXLAB_SETTINGS")
"""TrainLoRA's advanced settings, from TrainLoRAAdvanced (nodes/train_advanced.py: AdvancedSettings)."""
