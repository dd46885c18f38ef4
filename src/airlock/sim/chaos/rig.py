"""What a whole run shares: one SoftHSM token, one anvil, the Bybit and audit keys.

Why shared: initialising a token and starting anvil cost more than a scenario's two-second
timeline, and a test session may initialise SoftHSM only once per process. What each
scenario must not share (senders, queue database, fault proxies, Bybit simulator) it
makes itself (:mod:`airlock.sim.chaos.scenario`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock.audit.log import AuditKey
from airlock.config import AirlockConfig, embedded_paths, load_config
from airlock.hsm.keyring import KeyRing
from airlock.hsm.softhsm import init_embedded
from airlock.queue.bybit import IntentKey
from airlock.queue.kek import HsmKek
from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.chaos.netns import NetnsLink, netns_link


@dataclass
class Rig:
    """One SoftHSM token, one anvil, the Bybit keys and the audit key, for many scenarios."""

    home: Path
    ring: KeyRing
    anvil: Anvil
    kek: HsmKek
    secret: bytes
    secret_label: str
    intent: IntentKey
    audit_key: AuditKey
    pin_file: Path
    netns: NetnsLink | None = None  # rpc-a over a veth pair, when asked for and possible

    def env(self) -> dict[str, str]:
        """The environment of a child (the service, the settle): this token only, its PIN
        from a file, none of the caller's own ``AIRLOCK_*`` or SoftHSM settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
        env["AIRLOCK_HOME"] = str(self.home)
        env["AIRLOCK_PIN_FILE"] = str(self.pin_file)
        if "AIRLOCK_ANVIL" in os.environ:
            env["AIRLOCK_ANVIL"] = os.environ["AIRLOCK_ANVIL"]
        return env


@contextlib.contextmanager
def rig(
    home: Path | None = None, ring: KeyRing | None = None, netns: bool = False
) -> Iterator[Rig]:
    """A new embedded token and anvil; or, with ``home`` and its open ``ring`` (a test
    session's token: SoftHSM is initialised once per process), that token. ``netns``:
    rpc-a over a veth pair (root only)."""
    if home is not None:
        assert ring is not None, "a token's home comes with its open ring"
        with _rig_on(home, ring, load_config(env={"AIRLOCK_HOME": str(home)}), netns) as made:
            yield made
        return
    with tempfile.TemporaryDirectory(prefix="airlock-chaos-") as tmp:
        init_embedded(Path(tmp))
        config = load_config(env={"AIRLOCK_HOME": tmp})
        with (
            KeyRing.open(config.hsm) as opened,
            _rig_on(Path(tmp), opened, config, netns) as made,
        ):
            yield made


@contextlib.contextmanager
def _rig_on(home: Path, ring: KeyRing, config: AirlockConfig, netns: bool) -> Iterator[Rig]:
    """The run's keys on ``ring`` under fresh labels, then anvil and the veth link."""
    suffix = os.urandom(4).hex()  # a token may outlive one run (a test session's)
    secret_label, intent_label = f"chaos-bybit-hmac-{suffix}", f"chaos-intents-{suffix}"
    secret = os.urandom(32)
    ring.import_hmac_secret(secret_label, secret)
    ring.generate("p256", intent_label)
    intent = IntentKey(
        ring.ecdsa_key(intent_label, curve="p256"),
        intent_label,
        ring.public_key_pem(intent_label),
    )
    with start_anvil() as anvil, netns_link(netns) as link:
        yield Rig(
            home=home,
            ring=ring,
            anvil=anvil,
            kek=HsmKek(ring, config.queue.kek_label),
            secret=secret,
            secret_label=secret_label,
            intent=intent,
            audit_key=AuditKey(ring),  # the CLI's key: created once, before any child
            pin_file=embedded_paths(home)["user_pin"],
            netns=link,
        )
