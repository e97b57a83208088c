"""contracts/ as other teams get it: the contact-service-contracts wheel, built from contracts/ alone
and installed into a fresh virtualenv without the service, holds the package and nothing else,
brings only its own dependencies, and its ContactClient creates and looks up a contact against the
real broker and the running service (pytest -s prints the package list and the reply)."""

import asyncio
import json
import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from contracts import __version__ as contracts_version
from service.bootstrap import Application
from tests.conftest import ROOT, Endpoints

pytestmark = pytest.mark.integration

CONTRACTS = ROOT / "contracts"
DISTRIBUTION = "contact-service-contracts"
SERVICE_ONLY = {"contact-service", "faststream", "pymongo", "uvloop", "phonenumbers", "typer", "uvicorn"}

# Run by the fresh virtualenv's python, from a directory without contracts/: the installed package.
CALLER = """
import asyncio, json, sys, uuid

import contracts
from contracts.client import ContactClient
from contracts.commands import CreateContact


async def main(bootstrap: str, prefix: str) -> None:
    async with ContactClient(bootstrap, topic_prefix=prefix, client_id="wheel-caller") as client:
        created = await client.command(
            CreateContact.model_validate(
                {
                    "command_id": str(uuid.uuid4()),
                    "customer_id": "cust-wheel",
                    "contact": {
                        "first_name": "Grace",
                        "last_name": "Hopper",
                        "phone_numbers": [{"number": "+14155550199"}],
                        "emails": [{"address": "grace@example.com"}],
                    },
                }
            )
        )
        reply = await client.lookup_phone("cust-wheel", "(415) 555-0199", region="US", timeout=10)
    print(json.dumps({
        "contracts": contracts.__file__,
        "version": contracts.__version__,
        "created": created.model_dump(mode="json"),
        "lookup": reply.model_dump(mode="json"),
    }))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    """``args``' stdout; fails with its output if it exits non-zero. Asynchronous, so the service
    running in this event loop keeps serving meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *map(str, args), cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode == 0, f"{args} exited {process.returncode}:\n{out.decode()}\n{err.decode()}"
    return out.decode()


async def installed(python: Path, cwd: Path) -> dict[str, str]:
    listed = await run(python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check", cwd=cwd)
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(listed)}


# The names a distribution requires, transitively (extras it was asked for included), read from the
# installed metadata in the fresh virtualenv.
CLOSURE = """
import json, re, sys
from importlib.metadata import distribution
try:
    from packaging.requirements import Requirement
except ImportError:  # not a dependency of the wheel's: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
seen, todo = set(), [(sys.argv[1], frozenset())]
while todo:
    name, extras = todo.pop()
    if (norm(name), extras) in seen: continue
    seen.add((norm(name), extras))
    for text in distribution(name).requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
            todo.append((req.name, frozenset(req.extras)))
print(json.dumps(sorted({name for name, _ in seen})))
"""


async def test_the_contracts_wheel_installs_alone_and_its_client_talks_to_the_service(
    running_service: Application, endpoints: Endpoints, isolation: tuple[str, str], tmp_path: Path
) -> None:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in contracts/.
    source = tmp_path / "contracts-src"
    shutil.copytree(
        CONTRACTS, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    )
    wheels = tmp_path / "wheels"
    await run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", source, "-w", wheels, cwd=tmp_path)
    (wheel,) = wheels.glob("*.whl")
    project = tomllib.loads((CONTRACTS / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]  # contracts.__version__
    assert wheel.name == f"contact_service_contracts-{contracts_version}-py3-none-any.whl"
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = {name for name in shipped if not name.split("/")[0].endswith(".dist-info")}
    expected = {f"contracts/{p.name}" for p in CONTRACTS.glob("*.py")} | {"contracts/py.typed"}
    assert package == expected

    venv = tmp_path / "caller-venv"
    await run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    bare = await installed(python, tmp_path)  # what any venv holds: pip (and setuptools on 3.11)
    await run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path)
    packages = await installed(python, tmp_path)
    print(f"\n[contracts wheel] {wheel.name}, pip list in a fresh venv:")
    for name, installed_version in sorted(packages.items()):
        print(f"  {name}=={installed_version}")

    wanted = set(json.loads(await run(python, "-c", CLOSURE, DISTRIBUTION, cwd=tmp_path)))
    assert {"pydantic", "email-validator", "aiokafka", "cramjam"} <= wanted
    assert set(packages) == set(bare) | wanted, "installed packages the wheel does not require"
    assert not SERVICE_ONLY & set(packages)
    assert packages[DISTRIBUTION] == contracts_version

    prefix = isolation[0]
    out = await run(python, "-I", "-c", CALLER, endpoints.kafka, prefix, cwd=tmp_path, timeout=60)
    reply = json.loads(out.strip().splitlines()[-1])
    print(f"[contracts wheel] caller imported contracts {reply['version']} from {reply['contracts']}")
    print(f"[contracts wheel] lookup reply: {json.dumps(reply['lookup'])}")
    assert Path(reply["contracts"]).is_relative_to(venv)  # the wheel's package, not this checkout's
    assert reply["created"]["ok"] is True
    contact = reply["lookup"]["result"]
    assert reply["lookup"]["ok"] is True and contact["id"] == reply["created"]["result"]["id"]
    assert contact["phone_numbers"][0]["number_e164"] == "+14155550199"
