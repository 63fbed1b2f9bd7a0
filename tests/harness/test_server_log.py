"""pack_log_problems tells the node errors tests provoke on purpose from the pack really failing,
also when the node error was raised `from` another exception (the chained traceback ComfyUI logs)."""

from tests.harness.server import PACK_DIRNAME, pack_log_problems

PACK_FRAME = f'  File "/x/custom_nodes/{PACK_DIRNAME}/nodes/sample.py", line 1, in execute'
CAUSE = ["Traceback (most recent call last):", PACK_FRAME, "safetensors_rust.SafetensorError: invalid header length"]
CHAIN = ["", "The above exception was the direct cause of the following exception:", ""]
RAISED = ["Traceback (most recent call last):", PACK_FRAME, "fluxlab.LoraFileError: LoRA file x cannot be read"]


def test_a_chained_node_error_is_not_a_pack_problem():
    log = "\n".join(["!!! Exception during processing !!! LoRA file x cannot be read", *CAUSE, *CHAIN, *RAISED, "Prompt executed"])
    assert pack_log_problems(log) == []


def test_a_chained_traceback_outside_a_node_error_is_one_problem():
    problems = pack_log_problems("\n".join(["Exception in thread fluxlab-run:", *CAUSE, *CHAIN, *RAISED]))
    assert len(problems) == 1
    assert "SafetensorError" in problems[0] and "LoraFileError" in problems[0]


def test_a_traceback_after_a_node_error_is_its_own_problem():
    log = "\n".join(["!!! Exception during processing !!! x", *CAUSE, "Prompt executed", *RAISED])
    assert pack_log_problems(log) == ["\n".join(RAISED)]


def _coloured(lines: list[str]) -> list[str]:
    """How ComfyUI 0.33's logger writes error lines: a coloured "[ERROR] " prefix on each record's first line."""
    return [f"\x1b[1m\x1b[31m[ERROR]\x1b[0m {lines[0]}", *lines[1:]]


def test_coloured_level_prefixes_are_read_through():
    node_error = _coloured(["!!! Exception during processing !!! x"]) + _coloured(CAUSE) + CHAIN + RAISED
    assert pack_log_problems("\n".join(node_error)) == []
    thread_error = _coloured(["Exception in thread fluxlab-run:"]) + _coloured(RAISED)
    assert pack_log_problems("\n".join(thread_error)) == ["\n".join(RAISED)]
