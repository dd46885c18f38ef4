"""Which PKCS#11 module to load: the configured one, or the SoftHSM2 installed here.

The configuration names no module for the embedded development token (it never looks at
the disk), so the HSM room finds SoftHSM2 when it opens the module. A machine without it
gets the first usual path, which :func:`airlock.hsm.worker.check_module` then reports as
missing with the install hint.
"""

from __future__ import annotations

from pathlib import Path

from airlock.config import HsmConfig

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def find_softhsm_module() -> Path | None:
    """The SoftHSM2 module installed on this machine, if any."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def module_path(config: HsmConfig) -> Path:
    """The module to load for ``config``: its own path, else the installed SoftHSM2."""
    if config.module_path is not None:
        return config.module_path
    return find_softhsm_module() or Path(SOFTHSM_MODULE_CANDIDATES[0])
