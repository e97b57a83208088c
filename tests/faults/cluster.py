"""The parts the fault suite kills: its own local stack (Kafka + FerretDB on ports of their own, so
the default stack and the tests never see the faults) and a fleet of service processes."""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.sh"


@dataclass(frozen=True)
class Ports:
    kafka: int = 19092
    controller: int = 19093
    sasl: int = 19094
    store: int = 37017


class Stack:
    """deploy/local/stack.sh with a run directory and ports of the suite's own."""

    def __init__(self, run_dir: Path, ports: Ports = Ports()) -> None:
        self.run_dir, self.ports = run_dir, ports
        self.env = {
            **os.environ,
            "STACK_RUN_DIR": str(run_dir),
            "KAFKA_PORT": str(ports.kafka),
            "KAFKA_CONTROLLER_PORT": str(ports.controller),
            "KAFKA_SASL_PORT": str(ports.sasl),
            "FERRETDB_PORT": str(ports.store),
        }

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def mongodb(self) -> str:
        return f"mongodb://127.0.0.1:{self.ports.store}/"

    def fresh(self) -> None:
        """Stopped, with empty data directories: every run starts from the same empty cluster (and a
        broker with few partitions restarts fast)."""
        self.stop()
        for data in ("kafka-data", "ferretdb-data"):
            shutil.rmtree(self.run_dir / data, ignore_errors=True)

    async def start(self) -> None:
        """Start whatever is down and wait until both answer."""
        process = await asyncio.create_subprocess_exec(
            str(STACK),
            "start",
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"stack.sh start failed: {stderr.decode()[-2000:]}")

    def stop(self) -> None:
        subprocess.run([str(STACK), "stop"], env=self.env, check=False, capture_output=True)

    async def kill(self, part: str) -> None:
        """kill -9 the broker (``kafka``) or the store (``ferretdb``) and wait until it is gone."""
        pid = int((self.run_dir / f"{part}.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):  # noqa: ASYNC110 (another process's end: nothing to await)
            await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Fleet:
    """Service instances (``python -m service.main``) in one consumer group."""

    env: dict[str, str]
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0

    def add(self) -> str:
        self.started += 1
        name = f"s{self.started}"
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "service.main"],
                env={**self.env, "HEALTH_PORT": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return name

    def kill(self, name: str) -> None:
        """kill -9: no goodbye to the group, no flush, no commit."""
        process = self.running.pop(name)
        process.kill()
        process.wait()

    async def stop(self, name: str) -> None:
        """SIGTERM: the instance leaves the group after its in-flight work."""
        process = self.running.pop(name)
        process.terminate()
        for _ in range(600):
            if process.poll() is not None:
                return
            await asyncio.sleep(0.05)
        process.kill()
        process.wait()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.running)))

    def crashed(self) -> list[str]:
        """Instances that exited on their own (a crash the suite did not cause)."""
        return [name for name, p in self.running.items() if p.poll() is not None]
