"""wafer's counters as a dict: SIGUSR2 makes it log them (one "counters:"
line in its error log); this waits for the new line and parses it."""

import re
import signal
import time


def counters(w, timeout=3.0):
    before = w.stderr().count("counters:")
    w.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = w.stderr()
        if text.count("counters:") > before:
            line = text[text.rindex("counters:"):].split("\n", 1)[0]
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        time.sleep(0.02)
    raise AssertionError("wafer did not log its counters after SIGUSR2")
