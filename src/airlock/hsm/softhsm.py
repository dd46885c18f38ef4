"""The embedded development token: SoftHSM2 under the data directory.

``airlock init`` with no module configured creates a private ``softhsm2.conf``, a token
directory and a token labelled ``airlock`` whose PINs are random and kept in 0600 files
beside it. That is good for development, tests and outage drills; a machine that holds
real funds uses a real HSM (docs/hsm.md).

``softhsm2-util`` only takes PINs on its command line or at a terminal prompt. A
command line is visible to every user (``ps``), so the PINs are typed into a private
pseudo-terminal instead.
"""

from __future__ import annotations

import os
import pty
import secrets
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from airlock.config import EMBEDDED_TOKEN_LABEL, HsmConfig, embedded_paths
from airlock.hsm import errors
from airlock.hsm.discovery import find_softhsm_module
from airlock.hsm.worker import load_module, open_session

INIT_TIMEOUT = 30.0
WARNING = (
    "This SoftHSM token is for development and outage drills only: its keys are files "
    "on this disk. Use a real HSM for production keys (see docs/hsm.md)."
)


@dataclass
class InitReport:
    home: Path
    config: HsmConfig
    created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def init_embedded(home: Path) -> InitReport:
    """Create (or check) the embedded SoftHSM token under ``home``. Idempotent."""
    module = find_softhsm_module()
    if module is None:
        raise errors.ModuleLoadError(
            "SoftHSM2 is not installed (no libsofthsm2.so); run 'apt-get install softhsm2' "
            "or configure a PKCS#11 module in airlock.toml"
        )
    paths = embedded_paths(home)
    config = HsmConfig(
        module_path=module,
        token_label=EMBEDDED_TOKEN_LABEL,
        pin_source=f"file:{paths['user_pin']}",
        softhsm_conf=paths["conf"],
        embedded=True,
    )
    report = InitReport(home=home, config=config)
    for directory in (home, paths["dir"], paths["tokens"]):
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            report.created.append(f"directory {directory}")
    if not paths["conf"].exists():
        _write_private(
            paths["conf"],
            f"# airlock embedded SoftHSM2 token: development and drills only\n"
            f"directories.tokendir = {paths['tokens']}\n"
            f"objectstore.backend = file\n"
            f"log.level = ERROR\n"
            f"slots.removable = false\n",
        )
        report.created.append(f"SoftHSM config {paths['conf']}")
    for name in ("so_pin", "user_pin"):
        if not paths[name].exists():
            _write_private(paths[name], secrets.token_hex(16) + "\n")
            report.created.append(f"{name.replace('_', ' ')} file {paths[name]} (mode 0600)")
    lib = load_module(config)
    if not any(True for _ in lib.get_tokens(token_label=EMBEDDED_TOKEN_LABEL)):
        so_pin = paths["so_pin"].read_text().strip()
        user_pin = paths["user_pin"].read_text().strip()
        _init_token(paths["conf"], EMBEDDED_TOKEN_LABEL, so_pin, user_pin)
        lib.reinitialize()
        report.created.append(f"SoftHSM token {EMBEDDED_TOKEN_LABEL!r}")
    # Prove the token and the PIN file agree before saying all is well.
    _token, session = open_session(lib, config, paths["user_pin"].read_text().strip())
    session.close()
    return report


def _init_token(conf: Path, label: str, so_pin: str, user_pin: str) -> None:
    """Run ``softhsm2-util --init-token`` answering its PIN prompts through a pty."""
    util = shutil.which("softhsm2-util")
    if util is None:
        raise errors.ModuleLoadError("softhsm2-util not found; run 'apt-get install softhsm2'")
    answers = [so_pin, so_pin, user_pin, user_pin]
    master, slave = pty.openpty()
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    proc = subprocess.Popen(
        [util, "--init-token", "--free", "--label", label],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    pending = b""
    deadline = time.monotonic() + INIT_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            pending += chunk
            if pending.rstrip().endswith(b":") and answers:
                os.write(master, answers.pop(0).encode() + b"\n")
                pending = b""
        else:
            proc.kill()
            raise errors.HsmOperationError("softhsm2-util --init-token did not finish in time")
        code = proc.wait(timeout=INIT_TIMEOUT)
    finally:
        os.close(master)
    if code != 0:
        text = output.decode(errors="replace").replace("*", "").strip()
        raise errors.HsmOperationError(f"softhsm2-util could not create the token: {text}")
