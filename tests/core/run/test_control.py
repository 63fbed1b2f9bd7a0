"""RunControl: API and file requests agree, save-now/stop files are consumed, pause blocks cheaply."""

import threading
import time

from flux_lora_lab.core.run.control import ControlRequest, RunControl

FAST = 0.02  # file poll interval for tests


def test_api_requests_without_a_folder():
    c = RunControl()
    assert c.poll() == ControlRequest()
    c.request_checkpoint()
    assert c.poll().save_now and not c.poll().save_now  # consumed by the poll that reported it
    c.pause()
    assert c.poll().pause
    c.resume()
    assert not c.poll().pause
    c.stop()
    assert c.poll().stop and c.poll().stop  # stop sticks
    c.pause()
    assert not c.poll().pause  # stop wins over a later pause


def test_files_pause_resume_checkpoint_stop(tmp_path):
    c = RunControl(tmp_path, file_poll_s=FAST)
    (tmp_path / ".pause").touch()
    time.sleep(FAST * 2)
    assert c.poll().pause
    (tmp_path / ".pause").unlink()
    time.sleep(FAST * 2)
    assert not c.poll().pause
    (tmp_path / ".checkpoint").touch()
    time.sleep(FAST * 2)
    assert c.poll().save_now and not (tmp_path / ".checkpoint").exists()
    assert not c.poll().save_now
    (tmp_path / ".stop").touch()
    time.sleep(FAST * 2)
    assert c.poll().stop and not (tmp_path / ".stop").exists()


def test_api_pause_writes_file_and_removing_it_resumes(tmp_path):
    c = RunControl(tmp_path, file_poll_s=FAST)
    c.pause()
    assert (tmp_path / ".pause").exists() and c.poll().pause
    time.sleep(FAST * 2)
    assert c.poll().pause  # the file it wrote does not count as a new request
    (tmp_path / ".pause").unlink()
    time.sleep(FAST * 2)
    assert not c.poll().pause
    (tmp_path / ".pause").touch()
    time.sleep(FAST * 2)
    assert c.poll().pause
    c.resume()
    assert not (tmp_path / ".pause").exists() and not c.poll().pause


def test_file_polling_is_throttled(tmp_path):
    c = RunControl(tmp_path, file_poll_s=10.0)
    c.poll()
    (tmp_path / ".stop").touch()
    assert not c.poll().stop  # not stat'ed again within the interval
    assert (tmp_path / ".stop").exists()


def test_stale_files_from_an_earlier_session_are_cleared(tmp_path):
    for name in (".pause", ".checkpoint", ".stop"):
        (tmp_path / name).touch()
    c = RunControl(tmp_path, file_poll_s=FAST)
    assert c.poll() == ControlRequest() and not any(tmp_path.iterdir())


def test_wait_while_paused_blocks_until_resume_or_stop(tmp_path):
    c = RunControl(tmp_path, file_poll_s=FAST)
    assert c.wait_while_paused() == ControlRequest()  # not paused: returns at once
    c.pause()
    ticks = []
    result = {}
    # A tick far longer than the join: the waiter can only be back because resume woke it, not
    # because its tick ran out (no timing is measured).
    waiter = threading.Thread(target=lambda: result.update(r=c.wait_while_paused(lambda: ticks.append(1), tick_s=600.0)))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()
    c.resume()
    waiter.join(60)
    assert not waiter.is_alive()
    assert ticks == [1] and not result["r"].pause and not result["r"].stop

    c.pause()
    waiter = threading.Thread(target=lambda: result.update(r=c.wait_while_paused(tick_s=0.02)))
    waiter.start()
    time.sleep(0.05)
    (tmp_path / ".stop").touch()  # stop by file while paused
    waiter.join(2)
    assert not waiter.is_alive() and result["r"].stop and not result["r"].pause
    assert not (tmp_path / ".pause").exists()


def test_file_resume_while_waiting(tmp_path):
    c = RunControl(tmp_path, file_poll_s=FAST)
    (tmp_path / ".pause").touch()
    time.sleep(FAST * 2)
    assert c.poll().pause
    waiter = threading.Thread(target=lambda: c.wait_while_paused(tick_s=0.02))
    waiter.start()
    time.sleep(0.05)
    (tmp_path / ".pause").unlink()
    waiter.join(2)
    assert not waiter.is_alive()


def test_cancel_hook_stops_and_marks_cancelled():
    pressed = threading.Event()
    c = RunControl(cancel_hook=pressed.is_set)
    assert not c.poll().stop
    c.pause()
    waiter = threading.Thread(target=lambda: c.wait_while_paused(tick_s=0.02))
    waiter.start()
    pressed.set()
    waiter.join(2)
    assert not waiter.is_alive()
    request = c.poll()
    assert request.stop and request.cancelled and not request.pause and c.cancelled


def test_concurrent_requests_are_safe(tmp_path):
    c = RunControl(tmp_path, file_poll_s=0.001)
    errors = []
    saves = []

    def hammer():
        try:
            for _ in range(300):
                c.pause(); c.request_checkpoint(); c.resume()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    def trainer():
        for _ in range(600):
            saves.append(c.poll().save_now)

    threads = [threading.Thread(target=hammer) for _ in range(3)] + [threading.Thread(target=trainer)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    saves.append(c.poll().save_now)
    assert any(saves)  # every request was seen by some poll; none raised
    assert not c.poll().pause and not (tmp_path / ".pause").exists()
