"""The gallery and config readers of a run folder (core/run/gallery.py): every preview step whose
files are still there, with the prompts their records carry, the latest record of a step winning,
and the latest session's config with its trigger and class word."""

from flux_lora_lab.core.run import events as ev
from flux_lora_lab.core.run.event_log import EventLog
from flux_lora_lab.core.run.gallery import preview_steps, saved_config, trigger_words
from flux_lora_lab.core.run.rundir import RunDir


def _touch(run: RunDir, *paths: str) -> None:
    for path in paths:
        (run.root / path).parent.mkdir(parents=True, exist_ok=True)
        (run.root / path).write_bytes(b"png")


def test_preview_steps_lists_what_is_on_disk_with_prompts(tmp_path):
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    log = EventLog(run.events_path)
    prompts = ("a photo of ohwx", "a photo of cat")
    log.append(ev.Started("r", 6, 0, {"run": {"trigger": "ohwx"}, "dop": {"class_word": "cat"}}))
    for step, folder in ((0, "baseline"), (2, "checkpoint_000002"), (4, "samples/step_000004"), (6, "checkpoint_000006")):
        images = (f"{folder}/prompt_0_64x64.png", f"{folder}/prompt_1_64x64.png")
        log.append(ev.Preview(step=step, images=images, prompts=prompts))
        if step != 2:  # checkpoint 2 was pruned (max_step_saves_to_keep): its previews went with it
            _touch(run, *images)
    log.append(ev.Preview(step=6, images=("checkpoint_000006/prompt_0_64x64.png",), prompts=("again",)))
    log.append(ev.Preview(step=8, images=("samples/step_000008/old.png",)))  # a record without prompts
    _touch(run, "samples/step_000008/old.png")
    log.close()

    steps = preview_steps(run, EventLog(run.events_path, read_only=True).history())
    assert [s["step"] for s in steps] == [0, 4, 6, 8]
    assert steps[0]["images"] == [{"path": "baseline/prompt_0_64x64.png", "prompt": "a photo of ohwx"},
                                  {"path": "baseline/prompt_1_64x64.png", "prompt": "a photo of cat"}]
    assert steps[2]["images"] == [{"path": "checkpoint_000006/prompt_0_64x64.png", "prompt": "again"}], \
        "a step rendered again keeps its latest record"
    assert steps[3]["images"] == [{"path": "samples/step_000008/old.png", "prompt": None}]


def test_preview_paths_outside_the_folder_are_not_listed(tmp_path):
    run = RunDir(tmp_path / "r")
    _touch(run, "x.png")
    (tmp_path / "outside.png").write_bytes(b"png")
    log = EventLog()
    log.append(ev.Preview(step=1, images=("../outside.png", "x.png")))
    assert preview_steps(run, log.history()) == [{"step": 1, "images": [{"path": "x.png", "prompt": None}]}]


def test_saved_config_is_the_latest_session_and_names_the_trigger():
    log = EventLog()
    assert saved_config(log.history()) is None and trigger_words(None) == (None, None)
    log.append(ev.Started("r", 4, 0, {"run": {"trigger": "old"}, "lora": {"rank": 4}}))
    log.append(ev.Step(1, 4, 0.5, 1e-4))
    log.append(ev.Started("r", 8, 4, {"run": {"trigger": "ohwx"}, "dop": {"class_word": ""}, "lora": {"rank": 8}}))
    config = saved_config(log.history())
    assert config["lora"] == {"rank": 8}
    assert trigger_words(config) == ("ohwx", None), "an empty class word is none"
