"""`conductor` as a subprocess: started on free ports, its serving line read, stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CONDUCTOR = str(BIN / "conductor")
SERVING_LINE = re.compile(r"conductor serving grpc=(?P<grpc>\S+) http=(?P<http>\S+) ")


@dataclass
class Served:
    """A running `conductor serve` and what it printed."""

    process: subprocess.Popen[str]
    grpc: str = ""
    http: str = ""
    log: list[str] = field(default_factory=list)
    ready_after_s: float = 0.0
    reader: threading.Thread | None = None

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, as an orchestrator would; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs and release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return {**env, "CONDUCTOR_VAR_DIR": str(tmp_path / "var"), **extra}


def start_conductor(tmp_path: Path, *args: str, **env: str) -> Served:
    """Start `conductor serve` and wait (at most 20 s) for its serving line."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [CONDUCTOR, "serve", *args],
        env=environment(tmp_path, **env),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    served = Served(process)
    ready = threading.Event()

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            served.log.append(line)
            match = SERVING_LINE.search(line)
            if match and not ready.is_set():
                served.grpc, served.http = match["grpc"], match["http"]
                served.ready_after_s = time.perf_counter() - started
                ready.set()

    served.reader = threading.Thread(target=read_log, daemon=True)
    served.reader.start()
    if not ready.wait(20):
        served.close()
        pytest.fail("conductor did not start:\n" + "".join(served.log))
    return served


def run_conductor(
    tmp_path: Path, *args: str, timeout_s: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a `conductor` command to completion."""
    return subprocess.run(
        [CONDUCTOR, *args],
        env=environment(tmp_path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
