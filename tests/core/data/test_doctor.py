"""core/data/doctor.py on a kohya user's folder: at the defaults it is read as kohya does (the repeat
folder inside the parent) and every problem comes in one report; with the policies relaxed it
trains on the good files only and the report names the rest.

Measured before: "No usable images in ... (0 rejected)" at the defaults (the repeat folder was not
searched), and with recursive on the build stopped at the first problem, one per queue."""

import pytest

from flux_lora_lab.core.data import DatasetError, DatasetSpec, FolderSource, build_dataset

from .fakes import FakeTextEncoder, FakeVAE
from .kohya_folder import EXPECTED, GOOD, write_kohya_folder


def test_every_problem_of_the_folder_in_one_refusal(tmp_path):
    parent = write_kohya_folder(tmp_path / "toy")
    spec = DatasetSpec((FolderSource(parent, resolutions=(64,)),), cache_dir=tmp_path / "cache", trigger="sks")
    vae = FakeVAE()
    with pytest.raises(DatasetError) as refused:
        build_dataset(spec, vae, FakeTextEncoder())
    text = str(refused.value)
    assert vae.calls == 0, "nothing is encoded before the report"
    assert text.startswith(f"The dataset has {len(EXPECTED)} problem(s); 4 stop the build")
    for name, (words, refuses) in EXPECTED.items():
        line = next((ln for ln in text.splitlines() if f"/{name}: " in ln), None)
        assert line is not None and words in line, (name, text)
        assert ("='error'" in line) == refuses, line


def test_with_the_policies_relaxed_it_trains_on_the_good_files_and_reports_the_rest(tmp_path):
    parent = write_kohya_folder(tmp_path / "toy")
    source = FolderSource(parent, resolutions=(64,), missing_caption="trigger_only")
    spec = DatasetSpec((source,), cache_dir=tmp_path / "cache", trigger="sks", on_bad_file="skip")
    dataset = build_dataset(spec, FakeVAE(), FakeTextEncoder())
    assert sorted(s.path.name for s in dataset.samples) == sorted(GOOD)
    assert {s.repeats for s in dataset.samples} == {10}, "kohya's 10_ prefix"
    data = dataset.report.data
    rejected = {r["file"].rsplit("/", 1)[-1] for r in data["rejected"]}
    assert rejected == {"truncated.png", "empty.png", "latin1.png", "tiny.png"}
    warned = {w["file"].rsplit("/", 1)[-1] for w in data["warnings"]}
    assert warned == {"good_a_copy.png", "orphan.txt"}
    assert "Warning: " in dataset.report.text and "orphan.txt: a caption without an image" in dataset.report.text
