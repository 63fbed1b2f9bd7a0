"""The demo's captioned pictures for tests that need an image folder before a workflow runs: the
same files the pack's `Demo Images` node writes (nodes/_demo_images.py), so nothing is shipped."""

from nodes._demo_images import write_demo_images as write_demo_dataset

__all__ = ["write_demo_dataset"]
