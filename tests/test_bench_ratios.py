"""bench/run.py's ratios say what they compare: equal settings pair ours with each peer at the same
checkpointing (no native side without checkpointing: the node cannot run so), and auto is kept
apart. Synthetic step stamps, so the arithmetic is checked without timing anything."""

from bench import run


def fake(step_s: float, rounds: int = 2, steps: int = 6, ok: bool = True) -> list[dict]:
    if not ok:
        return [{"ok": False, "error": "RuntimeError: inplace"}]
    return [{"ok": True, "stamps": [i * step_s for i in range(steps + 1)], "peak_train_mb": 10, "base_mb": 5,
             "trainable_params": 1, "lora_params": 1, "bias_and_other_params": 0, "lora_layers": 1, "losses": [1.0],
             "load_before": 0.0, "checkpoint_every": 0} for _ in range(rounds)]


def test_equal_settings_and_auto_ratios():
    runs = {"native+ckpt": fake(0.30), "native": fake(0, ok=False), "diffusers+ckpt": fake(0.24),
            "diffusers": fake(0.16), "ours+ckpt": fake(0.20), "ours": fake(0.10), "ours+auto": fake(0.08), "ours+compile": fake(0.08)}
    summary = {key: run.summarise(rs, warmup=1) for key, rs in runs.items()}
    r = run.ratios(summary, runs, warmup=1)
    equal = r["equal_settings"]
    assert abs(equal["checkpointed"]["ratio_vs_native"]["pooled"] - 1.5) < 1e-9
    assert abs(equal["checkpointed"]["ratio_vs_diffusers"]["pooled"] - 1.2) < 1e-9
    assert abs(equal["no_checkpointing"]["ratio_vs_diffusers"]["pooled"] - 1.6) < 1e-9
    assert "ratio_vs_native" not in equal["no_checkpointing"]
    assert abs(r["auto"]["ratio_vs_native_checkpointed"]["pooled"] - 3.75) < 1e-9
    assert [round(x, 9) for x in equal["checkpointed"]["ratio_vs_native"]["per_round"]] == [1.5, 1.5]
    assert abs(r["compiled"]["ratio_vs_diffusers_no_checkpointing"]["pooled"] - 2.0) < 1e-9  # kept apart too
    assert abs(r["compiled"]["ratio_vs_ours_eager"]["pooled"] - 1.25) < 1e-9


def test_fraction_of_floor_uses_the_floor_of_the_same_checkpointing():
    summary = {"ours+ckpt": {"ok": True, "median_step_s": 0.2}, "ours": {"ok": True, "median_step_s": 0.1},
               "ours+auto": {"ok": True, "median_step_s": 0.1, "checkpoint_every": 0},
               "native": {"ok": False}}
    floor = {"plain": {"floor_s": 0.05}, "checkpointed": {"floor_s": 0.08}}
    fractions = {key: round(value, 9) for key, value in run.floor_fractions(summary, floor).items()}
    assert fractions == {"ours+ckpt": 0.4, "ours": 0.5, "ours+auto": 0.5}
