"""Training data from image folders: scan, check, bucket, encode once into a disk cache, report.

Entry point: `build_dataset(DatasetSpec(...), latent_encoder, text_encoder)` -> `TrainingDataset`
whose `batch(step)` feeds the trainer and whose `report` is shown before step 1.
"""

from .build import build_dataset
from .dataset import Batch, Sample, TrainingDataset
from .encoders import LatentEncoder, TextEncoder
from .errors import BadImage, DatasetError
from .report import DatasetReport
from .spec import DatasetSpec, FolderSource

__all__ = [
    "BadImage", "Batch", "DatasetError", "DatasetReport", "DatasetSpec", "FolderSource", "LatentEncoder",
    "Sample", "TextEncoder", "TrainingDataset", "build_dataset",
]
