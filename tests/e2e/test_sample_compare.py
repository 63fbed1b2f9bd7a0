"""SampleCheckpoint and CompareCheckpoints in the real server show exactly what stock ComfyUI gives.

A run folder (core.run.rundir layout, LoRA files written by core.model.lora_format for the tiny models) is
made in the server's output folder; its files are also linked into models/loras so the stock
LoraLoaderModelOnly can load them. Then, in one prompt each, our node and the stock graph sample the
same file and seed, and the saved PNGs are compared pixel for pixel (tolerance: none).
"""

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from flux_lora_lab.core.train.checkpoint import LORA_FILE
from flux_lora_lab.core.run.grid import label_height
from flux_lora_lab.core.model.lora import LoraWeights
from flux_lora_lab.core.model.lora_format import save_lora
from flux_lora_lab.core.run.rundir import RunDir
from tests.comfy_host import import_comfy, klein_param
from tests.harness.graphs import TINY_SAMPLING
from tests.harness.server import link_model

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT, STEPS, SEED = 64, 48, 2, 7  # not square: a swapped width/height would show
MODEL_SEED = 11
FAMILY = {"flux1-dev": "flux1", "flux2-dev": "flux2", "flux2-klein": "flux2"}
PROMPTS = ["a photo of a red fox", "a blue car at night"]


def _lora_weights(variant: str, seed: int) -> dict:
    """Random rank-4 LoRA pairs on every qkv / linear1 of the tiny model (shapes read from it),
    large enough to change the image visibly."""
    import_comfy()
    from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer

    model = build_tiny_flux_transformer(TinyFluxSpec(variant))
    names = [n.removesuffix(".weight") for n, _ in model.named_parameters()
             if n.endswith(("img_attn.qkv.weight", "txt_attn.qkv.weight", "linear1.weight"))]
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name in names:
        out_features, in_features = model.get_submodule(name).weight.shape
        weights[name] = LoraWeights(down=torch.randn(4, in_features, generator=g) / in_features ** 0.5,
                                    up=0.5 * torch.randn(out_features, 4, generator=g), alpha=4.0)
    return weights


def _make_run(server, variant: str, run_name: str, steps=(2, 4), final=True) -> RunDir:
    run = RunDir(server.base_dir / "output" / "fluxlab" / run_name)
    run.prepare()
    for i, step in enumerate(steps):
        weights = _lora_weights(variant, seed=100 + i)
        run.write_checkpoint(step, {LORA_FILE: lambda path, w=weights, s=step: save_lora(path, w, FAMILY[variant], step=s)},
                             state={"step": step})
    if final:
        save_lora(run.final_lora_path, _lora_weights(variant, seed=999), FAMILY[variant], step=steps[-1] if steps else 0)
    return run


def _stock_branch(graph: dict, tag: str, variant: str, prompt_node: str, lora_name: str | None) -> str:
    """(LoraLoaderModelOnly) -> KSampler -> VAEDecode -> SaveImage on the shared models/latent; returns the save node id."""
    model = ["models", 0]
    if lora_name:
        graph[f"{tag}_lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": model, "lora_name": lora_name, "strength_model": 0.8}}
        model = [f"{tag}_lora", 0]
    graph[f"{tag}_sampler"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": [prompt_node, 0], "negative": ["negative", 0], "latent_image": ["latent", 0],
        "seed": SEED, "steps": STEPS, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}
    graph[f"{tag}_decode"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"{tag}_sampler", 0], "vae": ["models", 2]}}
    return _save(graph, tag, [f"{tag}_decode", 0], variant)


def _save(graph: dict, tag: str, image, variant: str) -> str:
    graph[f"{tag}_save"] = {"class_type": "SaveImage", "inputs": {"images": image, "filename_prefix": f"fluxlab_e2e_{variant}_{tag}"}}
    return f"{tag}_save"


def _base_graph(variant: str) -> dict:
    latent_node, _ = TINY_SAMPLING[variant]
    graph = {
        # Own model seed: a node whose inputs equal the previous prompt's is served from ComfyUI's cache,
        # which other test files (checking which nodes executed) do not expect.
        "models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": variant, "seed": MODEL_SEED}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": ""}},
        "latent": {"class_type": latent_node, "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
    }
    for i, prompt in enumerate(PROMPTS):
        graph[f"text{i}"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": prompt}}
        graph[f"guided{i}"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": [f"text{i}", 0], "guidance": 3.5}}
    return graph


def _sample_node(**overrides) -> dict:
    inputs = {"model": ["models", 0], "positive": ["text0", 0], "vae": ["models", 2], "checkpoint": "step", "step": 2,
              "strength": 0.8, "seed": SEED, "steps": STEPS, "guidance": 3.5, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "simple", "width": WIDTH, "height": HEIGHT, "run_name": "", "lora": ""}
    return {"class_type": "SampleCheckpoint", "inputs": {**inputs, **overrides}}


def _compare_node(run_name: str, **overrides) -> dict:
    inputs = {"model": ["models", 0], "clip": ["models", 1], "vae": ["models", 2], "prompts": "\n".join(PROMPTS) + "\n",
              "checkpoints": "all", "include_base": True, "include_final": False, "strength": 0.8, "seed": SEED,
              "steps": STEPS, "guidance": 3.5, "cfg": 1.0, "negative_prompt": "", "sampler_name": "euler",
              "scheduler": "simple", "width": WIDTH, "height": HEIGHT, "run_name": run_name}
    return {"class_type": "CompareCheckpoints", "inputs": {**inputs, **overrides}}


def _pixels(client, image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.view(**image))).convert("RGB"))


def _saved(client, result, node: str) -> np.ndarray:
    (image,) = result.outputs(node)["images"]
    return _pixels(client, image)


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev", klein_param()])
def test_sample_checkpoint_is_bit_identical_to_the_stock_lora_graph(comfy_client, comfy_server, variant):
    run_name = f"e2e sample {variant}"
    run = _make_run(comfy_server, variant, run_name)
    lora_name = link_model(comfy_server, "loras", run.checkpoint_dir(2) / LORA_FILE, name=f"fluxlab_e2e_{variant}_step2.safetensors")

    graph = _base_graph(variant)
    stock = _stock_branch(graph, "stock", variant, "guided0", lora_name)
    base = _stock_branch(graph, "base", variant, "guided0", None)
    graph["ours"] = _sample_node(run_name=run_name)
    ours = _save(graph, "ours", ["ours", 0], variant)
    graph["by_file"] = _sample_node(lora=lora_name, checkpoint="latest")  # a loras-folder name; checkpoint is then unused
    by_file = _save(graph, "by_file", ["by_file", 0], variant)
    graph["by_path"] = _sample_node(lora=str(run.checkpoint_dir(2) / LORA_FILE))  # an absolute path in the output folder
    by_path = _save(graph, "by_path", ["by_path", 0], variant)
    # The MODEL output carries the LoRA: a stock KSampler on it gives the same image again.
    graph["again_sampler"] = dict(graph["stock_sampler"], inputs=dict(graph["stock_sampler"]["inputs"], model=["ours", 1]))
    graph["again_decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["again_sampler", 0], "vae": ["models", 2]}}
    again = _save(graph, "again", ["again_decode", 0], variant)

    result = comfy_client.run(graph, timeout=180)

    stock_px = _saved(comfy_client, result, stock)
    assert stock_px.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(stock_px.astype(int) - _saved(comfy_client, result, base)).mean() > 2.0, "the LoRA must change the image for this to prove anything"
    for node in (ours, by_file, by_path, again):
        assert np.array_equal(_saved(comfy_client, result, node), stock_px), f"{node} differs from stock LoraLoaderModelOnly + KSampler"
    (preview,) = result.outputs("ours")["images"]
    assert preview["type"] == "temp" and np.array_equal(_pixels(comfy_client, preview), stock_px)
    assert "lora key not loaded" not in comfy_server.log_text()


@pytest.mark.slow
@pytest.mark.parametrize("variant, lora_format", [("flux1-dev", "kohya"), ("flux1-dev", "diffusers"), klein_param("kohya")])
def test_a_trained_run_through_the_run_socket_matches_stock_comfyui(comfy_client, comfy_server, variant, lora_format):
    """TrainLoRA (wait, 4 steps) -> SampleCheckpoint / CompareCheckpoints over the FLUXLAB_RUN socket;
    the final LoRA that TrainLoRA published to loras/fluxlab/ gives the same pixels in a stock graph,
    in either Flux.1 file layout."""
    from tests.e2e.test_training import make_dataset
    from tests.harness.graphs import training_graph

    run_name = f"e2e_sample_trained_{variant}_{lora_format}"
    make_dataset(comfy_server)
    graph = training_graph(comfy_client, run_name, steps=4, run_save_every=2, variant=variant, run_lora_format=lora_format)
    graph["models"]["inputs"]["seed"] = MODEL_SEED
    graph.update({k: v for k, v in _base_graph(variant).items() if k != "models"})
    graph["ours"] = _sample_node(run=["train", 0], checkpoint="final")
    ours = _save(graph, "trained", ["ours", 0], variant)
    graph["compare"] = _compare_node("", run=["train", 0], include_final=True)
    _save(graph, "trained_grid", ["compare", 0], variant)
    result = comfy_client.run(graph, timeout=180)

    (data,) = result.outputs("compare")["fluxlab_compare"]
    assert [r["label"] for r in data["rows"]] == ["base", "step 2", "step 4", "final"]
    assert data["run_id"] == run_name

    stock_graph = _base_graph(variant)
    stock = _stock_branch(stock_graph, "trained_stock", variant, "guided0", f"fluxlab/{run_name}.safetensors")
    stock_px = _saved(comfy_client, comfy_client.run(stock_graph, timeout=120), stock)
    assert np.array_equal(_saved(comfy_client, result, ours), stock_px)
    final_cell = _pixels(comfy_client, data["cells"][3][0])
    assert np.array_equal(final_cell, stock_px), "the compare grid's final row equals the stock graph"
    published = comfy_server.base_dir / "models" / "loras" / "fluxlab" / f"{run_name}.safetensors"
    with safe_open(str(published), framework="pt") as f:
        assert f.metadata()["fluxlab.layout"] == (lora_format if variant.startswith("flux1") else "bfl")
        assert any(k.startswith("transformer.") for k in f.keys()) == (lora_format == "diffusers")


def test_latest_follows_new_checkpoints_and_is_cached_otherwise(comfy_client, comfy_server):
    """ComfyUI caches node results by their inputs; "latest" must not go stale when a run saves a
    new checkpoint (fingerprint_inputs covers the run folder's checkpoints)."""
    variant = "flux1-dev"
    run = _make_run(comfy_server, variant, "e2e latest", steps=(2,), final=False)
    graph = _base_graph(variant)
    graph["ours"] = _sample_node(run_name="e2e latest", checkpoint="latest", seed=SEED + 1)
    save = _save(graph, "latest", ["ours", 0], variant)

    def queue():
        result = comfy_client.run(graph, timeout=120)
        cached = {n for e in result.events if e["type"] == "execution_cached" for n in e["data"]["nodes"]}
        return _saved(comfy_client, result, save), "ours" in cached

    first, first_cached = queue()
    again, again_cached = queue()
    weights = _lora_weights(variant, seed=104)
    run.write_checkpoint(4, {LORA_FILE: lambda path: save_lora(path, weights, FAMILY[variant], step=4)}, state={"step": 4})
    newer, newer_cached = queue()

    assert (first_cached, again_cached, newer_cached) == (False, True, False)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, newer), "after checkpoint 4 was saved, 'latest' must sample it"


def test_compare_grid_rows_columns_and_ui_data(comfy_client, comfy_server):
    variant = "flux1-dev"
    run_name = "e2e compare"
    run = _make_run(comfy_server, variant, run_name, steps=(2, 4), final=False)
    lora_name = link_model(comfy_server, "loras", run.checkpoint_dir(4) / LORA_FILE, name="fluxlab_e2e_compare_step4.safetensors")

    graph = _base_graph(variant)
    base_saves = [_stock_branch(graph, f"base{i}", variant, f"guided{i}", None) for i in range(2)]
    step4_save = _stock_branch(graph, "step4", variant, "guided1", lora_name)
    graph["compare"] = _compare_node(run_name)
    grid_save = _save(graph, "grid", ["compare", 0], variant)
    result = comfy_client.run(graph, timeout=180)

    executed = [e["data"] for e in result.events if e["type"] == "executed" and e["data"]["node"] == "compare"]
    assert len(executed) == 1
    ui = executed[0]["output"]
    (data,) = ui["fluxlab_compare"]
    assert data == result.outputs("compare")["fluxlab_compare"][0], "/history holds the same UI data"
    assert [(r["label"], r["checkpoint"], r["step"]) for r in data["rows"]] == [
        ("base", "base", None), ("step 2", "checkpoint_000002", 2), ("step 4", "checkpoint_000004", 4)]
    assert data["rows"][2]["lora_path"] == str(run.checkpoint_dir(4) / LORA_FILE)
    assert data["columns"] == [{"prompt": p} for p in PROMPTS]
    assert (data["run_id"], data["seed"], data["width"], data["height"]) == (run_name, SEED, WIDTH, HEIGHT)
    label = data["layout"]["label_height"]
    assert label == label_height(WIDTH) and data["layout"]["cell_width"] == WIDTH and data["layout"]["cell_height"] == HEIGHT

    # The grid: (3 rows x H + 4 label strips) x (2 columns x W); the IMAGE output and the preview agree.
    grid = _saved(comfy_client, result, grid_save)
    assert grid.shape == (3 * HEIGHT + 4 * label, 2 * WIDTH, 3)
    (preview,) = ui["images"]
    assert preview == data["grid"] and np.array_equal(_pixels(comfy_client, preview), grid)

    cells = [[_pixels(comfy_client, cell) for cell in row] for row in data["cells"]]
    assert [len(row) for row in cells] == [2, 2, 2]
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            top = label + r * (label + HEIGHT) + label
            assert np.array_equal(grid[top:top + HEIGHT, c * WIDTH:(c + 1) * WIDTH], cell), f"grid cell ({r}, {c}) is not the saved cell"
    # Same seed down a column: the base row is the stock sampler without LoRA, the step-4 row the stock LoRA graph.
    for c in range(2):
        assert np.array_equal(cells[0][c], _saved(comfy_client, result, base_saves[c])), f"base row, prompt {c}"
    assert np.array_equal(cells[2][1], _saved(comfy_client, result, step4_save)), "step 4 row, prompt 1"
    assert not np.array_equal(cells[1][1], cells[2][1]), "different checkpoints must give different cells"


@pytest.mark.parametrize("node,overrides,message", [
    ("sample", {"run_name": "e2e bad", "checkpoint": "step", "step": 3},
     r"run 'e2e bad' \(.*\): no checkpoint at step 3; it has steps 2, 4 and final"),
    ("sample", {"run_name": "e2e empty", "checkpoint": "latest"},
     r"run 'e2e empty' \(.*\): no checkpoint saved yet.*it has no complete checkpoints and no final LoRA"),
    ("sample", {}, r"connect a run, or set run_name, or set lora .*none is given"),
    ("sample", {"run_name": "e2e bad", "lora": "x.safetensors"}, r"run_name and lora are both given"),
    ("sample", {"lora": "/etc/../etc/hostname"}, r"absolute paths must lie in ComfyUI's output or loras folders"),
    ("sample", {"lora": "nope.safetensors"}, r"lora 'nope.safetensors': not an absolute path to a file and not a name in the loras folder"),
    ("sample", {"run_name": "no such run"}, r"run_name 'no such run': no run folder .*runs there: \[.*'e2e bad'"),
    ("compare", {"run_name": "no such run"}, r"run_name 'no such run': no run folder .*runs there: \[.*'e2e bad'"),
    ("compare", {"run_name": "e2e bad", "checkpoints": "2, 5"}, r"run 'e2e bad' .*no checkpoint at step 5; it has steps 2, 4 and final"),
    ("compare", {"run_name": "e2e empty", "checkpoints": "all"}, r"run 'e2e empty' .*'all' asked for checkpoints but none is saved yet"),
    ("compare", {"run_name": "e2e bad", "prompts": "\n  \n"}, r"prompts is empty"),
])
def test_bad_selection_is_refused_naming_the_run_and_what_it_has(comfy_client, comfy_server, node, overrides, message):
    """An unknown run_name is refused when the prompt is queued (validate_inputs), once; every other
    problem by the node before it samples anything. Either way the message names the run and what
    it has."""
    if not (comfy_server.base_dir / "output" / "fluxlab" / "e2e bad").is_dir():
        _make_run(comfy_server, "flux1-dev", "e2e bad")
        _make_run(comfy_server, "flux1-dev", "e2e empty", steps=(), final=False)
    graph = _base_graph("flux1-dev")
    graph["node"] = _sample_node(**overrides) if node == "sample" else _compare_node(**overrides)
    graph["out"] = {"class_type": "PreviewImage", "inputs": {"images": ["node", 0]}}
    stage, text = comfy_client.refusal(graph, timeout=60)
    if overrides.get("run_name") == "no such run":
        assert stage == "queue", text
        body = json.loads(text.split("HTTP 400: ", 1)[1].split("\n", 1)[0])
        (error,) = body["node_errors"]["node"]["errors"]  # one message, not one per validated input
        assert error["type"] == "custom_validation_failed"
        text = error["details"]
    else:
        assert stage == "node", text
    assert re.search(message, text), text


def _bad_lora_files(server) -> dict:
    """Files users give SampleCheckpoint by mistake, in the loras folder: name -> how to write it."""
    folder = server.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    flux2 = folder / "e2e_flux2.safetensors"
    save_lora(flux2, _lora_weights("flux2-dev", seed=5), "flux2", step=1)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(flux2)), str(folder / "e2e_flux2_foreign.safetensors"))  # no metadata: a foreign file
    save_file({"state.0.exp_avg": torch.zeros(4, 8)}, str(folder / "e2e_optimizer_state.safetensors"))
    (folder / "e2e_text.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    (folder / "e2e_empty.safetensors").write_bytes(b"")
    (folder / "e2e_truncated.safetensors").write_bytes(flux2.read_bytes()[:200])


@pytest.mark.parametrize("kind, file, words", [
    ("sample", "e2e_flux2.safetensors", ("was trained on Flux.2 but the model is Flux.1",)),
    ("sample", "e2e_flux2_foreign.safetensors", ("does not fit this Flux.1 model", "differ in shape")),
    ("sample", "e2e_optimizer_state.safetensors", ("patches nothing in this Flux.1 model", "not a LoRA")),
    ("sample", "e2e_text.safetensors", ("cannot be read: a text file",)),
    ("sample", "e2e_empty.safetensors", ("is empty (0 bytes)",)),
    ("sample", "e2e_truncated.safetensors", ("cannot be read: truncated or not a .safetensors file",)),
    ("compare", "e2e_flux2.safetensors", ("was trained on Flux.2 but the model is Flux.1",)),
])
def test_a_lora_that_does_not_fit_the_model_is_refused_naming_the_file(comfy_client, comfy_server, kind, file, words):
    """Measured before: each of these rendered the base model's image, with "lora key not loaded"
    only in the server log (or `SafetensorError: header too large` naming no file)."""
    _bad_lora_files(comfy_server)
    graph = _base_graph("flux1-dev")
    if kind == "sample":
        graph["node"] = _sample_node(lora=file)
    else:  # a run whose checkpoint is that file
        run = _make_run(comfy_server, "flux1-dev", "e2e foreign rows", steps=(2,), final=False)
        source = comfy_server.base_dir / "models" / "loras" / file
        (run.checkpoint_dir(2) / LORA_FILE).write_bytes(source.read_bytes())
        info = json.loads((run.checkpoint_dir(2) / "training_state.json").read_text())
        info["files"][LORA_FILE] = source.stat().st_size
        (run.checkpoint_dir(2) / "training_state.json").write_text(json.dumps(info))
        graph["node"] = _compare_node("e2e foreign rows", include_base=False)
    graph["out"] = {"class_type": "PreviewImage", "inputs": {"images": ["node", 0]}}
    stage, message = comfy_client.refusal(graph, timeout=60)
    named = file if kind == "sample" else f"checkpoint_000002/{LORA_FILE}"
    assert stage == "node" and named in message, message
    for word in words:
        assert word in message, message
