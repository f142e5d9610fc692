"""One worker cut off from Kafka while the others go on: a network partition on one machine.

The worker runs in a control group (v2) of its own; an iptables rule drops every packet its
sockets send to the brokers' ports (``-m cgroup --path``), so its connections to Kafka stall
as they would behind a broken link, while its Cassandra connections and every other process
are untouched. A TCP proxy could not do this: the brokers advertise their own addresses, and a
client connects to those after the bootstrap. Needs root (iptables, cgroup v2): without
them, ``NetworkCut.unavailable`` says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from stream_app.errors import BenchError


def cgroup2_root() -> Path | None:
    """Where the unified (v2) control group hierarchy is mounted, if it is."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


class NetworkCut:
    """A control group whose processes' packets to ``ports`` (TCP, on any address) can be
    dropped (``cut``) and let through again (``heal``)."""

    def __init__(self, name: str, ports: list[int]) -> None:
        self.name, self.ports = f"stream-app-{name}", sorted(set(ports))
        self.root = cgroup2_root()
        self.is_cut = False

    def unavailable(self) -> str | None:
        """Why this machine cannot cut a process off (None: it can)."""
        if os.geteuid() != 0:
            return "cutting a worker off needs root (iptables and a control group)"
        if shutil.which("iptables") is None:
            return "cutting a worker off needs iptables"
        if self.root is None:
            return "cutting a worker off needs the cgroup v2 hierarchy mounted"
        return None

    def __enter__(self) -> NetworkCut:
        if (reason := self.unavailable()) is not None:
            raise BenchError(reason)
        assert self.root is not None
        (self.root / self.name).mkdir(exist_ok=True)
        return self

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the control group (before it opens any socket: a socket
        belongs to the group its process was in when it was made)."""
        assert self.root is not None
        procs = self.root / self.name / "cgroup.procs"
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *argv]

    def _rules(self, action: str) -> None:
        for port in self.ports:
            rule = ["OUTPUT", "-p", "tcp", "-m", "cgroup", "--path", self.name,
                    "--dport", str(port), "-j", "DROP"]  # fmt: skip
            done = subprocess.run(["iptables", action, *rule], capture_output=True, text=True)
            if done.returncode != 0 and action == "-A":
                raise BenchError(f"iptables refused the rule: {done.stderr.strip()}")

    def cut(self) -> None:
        self._rules("-A")
        self.is_cut = True

    def heal(self) -> None:
        if self.is_cut:
            self._rules("-D")
            self.is_cut = False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.heal()
        assert self.root is not None
        with contextlib.suppress(OSError):  # a process still in it: left, empty once it exits
            (self.root / self.name).rmdir()
