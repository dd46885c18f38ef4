"""One typed configuration object, loaded from ``airlock.toml`` and the environment.

Precedence, highest first: environment variables, the TOML file, built-in defaults.
With no PKCS#11 module configured anywhere, airlock uses the *embedded* SoftHSM2 token
that ``airlock init`` creates under the data directory: fine for development and drills,
never for production keys.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airlock.errors import ConfigError
from airlock.hsm.uri import parse_pkcs11_uri
from airlock.queue.policy import PolicyConfig
from airlock.redact import redact_url
from airlock.signer.bybit import CATEGORIES, SignType

EMBEDDED_TOKEN_LABEL = "airlock"
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class HsmConfig:
    """Where the keys live and how to log in.

    ``pin_source`` is ``file:/path`` or ``env:NAME``; it is consulted after the
    ``AIRLOCK_PIN`` / ``AIRLOCK_PIN_FILE`` variables and before an interactive prompt.
    ``softhsm_conf`` is exported as ``SOFTHSM2_CONF`` before the module loads.
    """

    module_path: Path
    token_label: str
    pin_source: str | None = None
    softhsm_conf: Path | None = None
    embedded: bool = False


@dataclass(frozen=True)
class QueueConfig:
    """The encrypted queue: where it lives and how its data keys are handled.

    ``rotate_after``: encryptions under one data key before a new one is made; far below
    the 2^32 random-nonce limit of AES-GCM.
    """

    path: Path
    kek_label: str = "airlock-kek"
    rotate_after: int = 1 << 24


@dataclass(frozen=True)
class EvmConfig:
    """Defaults for queued transactions; the CLI options override them."""

    bump_pct: float = 12.5
    max_fee_cap: int | None = None  # wei per gas; None: only the node's 1-ether fee cap


@dataclass(frozen=True)
class AuditConfig:
    """The audit log's checkpoint key and how often a checkpoint is signed."""

    key_label: str = "airlock-audit"
    checkpoint_every: int = 1000  # entries
    checkpoint_seconds: int = 60


RELAY_KINDS = ("evm-rpc", "evm-private")
PRIVATE_METHODS = ("eth_sendRawTransaction", "eth_sendPrivateTransaction")


@dataclass(frozen=True)
class LinkConfig:
    """A network path: outgoing connections bound to a local address, or through a proxy.

    With neither set, the link is the operating system's default route.
    """

    name: str
    source_address: str | None = None  # local IP to bind outgoing TCP connections to
    proxy: str | None = None  # http(s):// proxy URL every request of the link goes through


@dataclass(frozen=True)
class RelayConfig:
    """One endpoint transactions are sent to (``[[relays]]``).

    ``evm-private`` relays only ever receive transactions queued as private, and private
    transactions only ever go to them. ``method`` is how a private relay takes a
    transaction: a Protect-style ``eth_sendRawTransaction`` endpoint, or
    ``eth_sendPrivateTransaction``. ``auth_key_label`` names a secp256k1 HSM key whose
    EIP-191 signature of the body goes in ``X-Flashbots-Signature``.
    """

    name: str
    kind: str  # one of RELAY_KINDS
    url: str
    chain_id: int
    link: str | None = None
    method: str = "eth_sendRawTransaction"
    auth_key_label: str | None = None
    timeout_seconds: float = 5.0  # whole request, connect included
    connect_timeout_seconds: float = 2.0
    batch_size: int = 100  # JSON-RPC calls per HTTP request
    role: str = "primary"  # one of RELAY_ROLES: backups carry what the failover rules allow

    @property
    def private(self) -> bool:
        return self.kind == "evm-private"


@dataclass(frozen=True)
class HealthConfig:
    """Probing and the hysteresis of the UP / DEGRADED / DOWN state machine."""

    probe_seconds: float = 5.0  # between probes of a relay that is up
    probe_down_seconds: float = 0.5  # between probes of a relay that is down or degraded
    fall: int = 3  # consecutive failures: DEGRADED -> DOWN
    rise: int = 2  # consecutive successes: DEGRADED -> UP
    slow_ms: int = 2000  # a successful probe slower than this counts as degraded


@dataclass(frozen=True)
class BroadcasterConfig:
    """When the broadcaster calls a transaction mined, stuck, or dropped."""

    confirmations: int = 3  # blocks on top of the receipt's block, counting it, to confirm
    reorg_depth: int = 64  # confirmed items are re-checked until this deep
    bump_after_blocks: int = 3  # no receipt after this many new blocks: next variant
    bump_after_seconds: float = 60.0  # ... or after this long, whichever comes first
    rebroadcast_seconds: float = 120.0  # pending this long and unknown to relays: resend
    reconcile_seconds: float = 30.0  # periodic reconcile pass
    resign: bool = False  # ladder exhausted: re-sign a higher fee through the HSM
    resign_max_fee_per_gas: int | None = None  # the cap re-signing never exceeds (wei/gas)
    health: HealthConfig = HealthConfig()


@dataclass(frozen=True)
class BybitConfig:
    """The Bybit V5 venue (``[bybit]``): where orders go and which HSM keys sign them.

    Exactly one of ``secret_label`` (an HSM secret object for HMAC-SHA256 request
    signatures) and ``rsa_key_label`` (an HSM RSA key for self-generated API keys) is set.
    ``intent_key_label`` names the P-256 key that signs order intents at enqueue time.
    ``api_key`` is not a secret to Bybit, but airlock never prints it in full: it is left
    out of ``repr`` and shown as :attr:`api_key_hint`.
    """

    base_url: str
    api_key: str = field(repr=False)
    secret_label: str | None = None
    rsa_key_label: str | None = None
    recv_window_ms: int = 5000
    intent_key_label: str = "airlock-intents"
    category: str = "linear"  # one of airlock.signer.bybit.CATEGORIES
    timeout_seconds: float = 10.0  # whole request, connect included
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    account: str = "bybit"  # the queue's account name for this venue account
    probe_seconds: float = 5.0  # how often the link and key are probed while connected
    reconcile_seconds: float = 30.0  # periodic reconcile (also at start and on reconnect)
    retry_base_seconds: float = 0.5  # backoff for connection-level failures ...
    retry_cap_seconds: float = 30.0  # ... never longer than this ...
    retry_jitter: float = 0.2  # ... shortened by up to this fraction at random

    @property
    def sign_type(self) -> SignType:
        """How requests are signed: ``hmac`` (``secret_label``) or ``rsa`` (``rsa_key_label``)."""
        return "rsa" if self.rsa_key_label is not None else "hmac"

    @property
    def api_key_hint(self) -> str:
        """The API key safe to print: its first 4 characters and an ellipsis.

        Never more than half the key, so a short (test) key is not shown whole either.
        """
        return self.api_key[: min(4, len(self.api_key) // 2)] + "\u2026"


@dataclass(frozen=True)
class FailoverConfig:
    """The outage playbook's rules (``[failover]``), applied by ``broadcaster.failover``."""

    heartbeat_gap_ms: int = 3000  # OUTAGE when no primary link answered for longer ...
    missed_acks: int = 2  # ... or every primary link missed this many probes in a row
    backup_window_s: float = 30.0  # cancels and risk-reducing items use backups this long
    backup_latency_ms: float = 200.0  # above it, market-critical orders are capped or refused
    critical_slippage_bps: int = 10  # the cap for them: 0.1 %
    escalate_queue_items: int = 50  # escalate when more live items wait than this ...
    escalate_oldest_s: float = 120.0  # ... or the oldest waits longer than this


@dataclass(frozen=True)
class ServiceConfig:
    """The broadcaster as a service (``[service]``): metrics, logs, alert delivery."""

    metrics_host: str = "127.0.0.1"  # loopback only
    metrics_port: int = 9464  # 0: no metrics endpoint
    log_format: str = "text"  # "text" or "json"
    webhook_url: str | None = None  # alerts POSTed as JSON here ...
    webhook_secret_label: str | None = None  # ... with an HMAC-SHA256 header by this HSM key
    webhook_timeout_seconds: float = 5.0
    alert_command: tuple[str, ...] = ()  # argv run per alert, the alert JSON on stdin
    alert_command_timeout_seconds: float = 10.0
    alert_dedup_seconds: float = 300.0  # the same alert again within this is not re-sent


@dataclass(frozen=True)
class ApiConfig:
    """The service's local HTTP API (``[api]``): a Unix socket, and optionally loopback TCP.

    The socket is made mode 0600 (0660 with ``socket_group``: the bot's group). TCP is only
    on loopback and only with a bearer token read from ``token_file`` (mode 0600).
    """

    enabled: bool = True
    socket: Path | None = None  # None: $AIRLOCK_HOME/api.sock
    socket_group: str | None = None
    listen: tuple[str, int] | None = None  # "127.0.0.1:8750"
    token_file: Path | None = None
    max_body_bytes: int = 1 << 20
    max_batch: int = 1000

    def socket_path(self, home: Path) -> Path:
        return self.socket if self.socket is not None else home / "api.sock"


@dataclass(frozen=True)
class AirlockConfig:
    home: Path
    hsm: HsmConfig
    queue: QueueConfig
    evm: EvmConfig = EvmConfig()
    audit: AuditConfig = AuditConfig()
    relays: tuple[RelayConfig, ...] = ()
    links: tuple[LinkConfig, ...] = ()
    broadcaster: BroadcasterConfig = BroadcasterConfig()
    bybit: BybitConfig | None = None  # None: no [bybit] section
    failover: FailoverConfig = FailoverConfig()
    service: ServiceConfig = ServiceConfig()
    api: ApiConfig = ApiConfig()
    source: Path | None = None  # the TOML file read, if any


def airlock_home(env: Mapping[str, str] = os.environ) -> Path:
    """The data directory: ``$AIRLOCK_HOME`` or ``~/.airlock``."""
    raw = env.get("AIRLOCK_HOME")
    return _expand_path("AIRLOCK_HOME", raw) if raw else Path.home() / ".airlock"


def _expand_path(what: str, raw: str) -> Path:
    """``raw`` as a Path, ``~`` expanded; a ``~user`` with no such user is a ConfigError."""
    try:
        return Path(raw).expanduser()
    except RuntimeError as exc:  # "Could not determine home directory."
        raise ConfigError(f"{what}: cannot expand {raw!r}: {exc}") from None


def find_softhsm_module() -> Path | None:
    """The SoftHSM2 module installed on this machine, if any."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def embedded_paths(home: Path) -> dict[str, Path]:
    """Files of the embedded SoftHSM token, all under the data directory."""
    base = home / "softhsm"
    return {
        "dir": base,
        "conf": base / "softhsm2.conf",
        "tokens": base / "tokens",
        "user_pin": base / "user.pin",
        "so_pin": base / "so.pin",
    }


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> AirlockConfig:
    """Load the configuration; ``path`` defaults to ``$AIRLOCK_HOME/airlock.toml``.

    A missing default file is fine (embedded defaults); a missing explicit file is not.
    """
    home = airlock_home(env)
    explicit = path is not None
    path = Path(path) if path is not None else home / "airlock.toml"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    hsm = _hsm_config(home, _table(data, "hsm", path), env)
    links = _links_config(_array_of_tables(data, "links", path))
    return AirlockConfig(
        home=home,
        hsm=hsm,
        queue=_queue_config(home, _table(data, "queue", path)),
        evm=_evm_config(_table(data, "evm", path)),
        audit=_audit_config(_table(data, "audit", path)),
        relays=_relays_config(_array_of_tables(data, "relays", path), links),
        links=links,
        broadcaster=_broadcaster_config(_table(data, "broadcaster", path)),
        bybit=_bybit_config(_table(data, "bybit", path)) if "bybit" in data else None,
        failover=_failover_config(_table(data, "failover", path)),
        service=_service_config(_table(data, "service", path)),
        api=_api_config(_table(data, "api", path)),
        source=path if path.exists() else None,
    )


def _table(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    return table


def _array_of_tables(data: Mapping[str, Any], name: str, path: Path) -> list[dict[str, Any]]:
    items = data.get(name, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError(f"config {path}: {name} must be an array of tables ([[{name}]])")
    return items


def _where(section: str) -> str:
    """How messages name a section: ``queue`` -> ``[queue]``; ``[[relays]] "a"`` as is."""
    return section if section.startswith("[") else f"[{section}]"


def _choice_setting(section: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"{_where(section)} {key} must be one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def _check_keys(section: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"{_where(section)}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _require_keys(section: str, table: Mapping[str, Any], required: tuple[str, ...]) -> None:
    missing = [key for key in required if key not in table]
    if missing:
        raise ConfigError(f"{_where(section)}: missing required setting(s) {', '.join(missing)}")


def _int_setting(section: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{_where(section)} {key} must be an integer in {low}..{high}, got {value!r}"
        )
    return value


def _number_setting(section: str, key: str, value: Any, low: float, high: float) -> float:
    """An integer or float in ``low..high`` (never a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(
            f"{_where(section)} {key} must be a number in {low}..{high}, got {value!r}"
        )
    return float(value)


def _bool_setting(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(section)} {key} must be true or false, got {value!r}")
    return value


def _label_setting(section: str, key: str, table: Mapping[str, Any]) -> str:
    label = table[key]
    if not isinstance(label, str) or not 1 <= len(label) <= 64:
        raise ConfigError(f"{_where(section)} {key} must be a string of 1-64 characters")
    return label


_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _name_setting(section: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{_where(section)} name must be 1-64 characters of A-Z a-z 0-9 _ . -, got {value!r}"
        )
    return value


def _http_url_setting(section: str, key: str, value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host; messages print it redacted."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_where(section)} {key} must be a non-empty string")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(f"{_where(section)} {key} must not contain whitespace")
    shown = redact_url(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{_where(section)} {key} is not a valid URL ({shown}): {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(
            f"{_where(section)} {key} must be an http:// or https:// URL, got {shown}"
        )
    if not parts.hostname:
        raise ConfigError(f"{_where(section)} {key} has no host: {shown}")
    return value


def _unique_name(section: str, kind: str, name: str, seen: dict[str, int], index: int) -> None:
    if name in seen:
        raise ConfigError(
            f"{_where(section)} name {name!r} is already used by [[{kind}]] #{seen[name]}"
        )
    seen[name] = index


_LINK_KEYS = {"name", "source_address", "proxy"}


def _links_config(items: list[dict[str, Any]]) -> tuple[LinkConfig, ...]:
    links: list[LinkConfig] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(items, 1):
        section = f"[[links]] #{index}"
        _require_keys(section, table, ("name",))
        name = _name_setting(section, table["name"])
        _unique_name(section, "links", name, seen, index)
        section = f'[[links]] "{name}"'
        _check_keys(section, table, _LINK_KEYS)
        if "source_address" in table and "proxy" in table:
            raise ConfigError(f"{section}: set source_address or proxy, not both")
        link = LinkConfig(name=name)
        if "source_address" in table:
            value = table["source_address"]
            try:
                address = ipaddress.ip_address(value) if isinstance(value, str) else None
            except ValueError:
                address = None
            if address is None:
                raise ConfigError(
                    f"{section} source_address must be an IPv4 or IPv6 address, got {value!r}"
                )
            link = replace(link, source_address=str(address))
        if "proxy" in table:
            link = replace(link, proxy=_http_url_setting(section, "proxy", table["proxy"]))
        links.append(link)
    return tuple(links)


_RELAY_KEYS = {
    "name",
    "kind",
    "url",
    "chain_id",
    "link",
    "method",
    "auth_key_label",
    "timeout_seconds",
    "connect_timeout_seconds",
    "batch_size",
    "role",
}
RELAY_ROLES = ("primary", "backup")


def _relays_config(
    items: list[dict[str, Any]], links: tuple[LinkConfig, ...]
) -> tuple[RelayConfig, ...]:
    link_names = [link.name for link in links]
    relays: list[RelayConfig] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(items, 1):
        section = f"[[relays]] #{index}"
        _require_keys(section, table, ("name",))
        name = _name_setting(section, table["name"])
        _unique_name(section, "relays", name, seen, index)
        section = f'[[relays]] "{name}"'
        relays.append(_relay_config(section, name, table, link_names))
    return tuple(relays)


def _relay_config(
    section: str, name: str, table: Mapping[str, Any], link_names: list[str]
) -> RelayConfig:
    _check_keys(section, table, _RELAY_KEYS)
    _require_keys(section, table, ("kind", "url", "chain_id"))
    kind = _choice_setting(section, "kind", table["kind"], RELAY_KINDS)
    relay = RelayConfig(
        name=name,
        kind=kind,
        url=_http_url_setting(section, "url", table["url"]),
        chain_id=_int_setting(section, "chain_id", table["chain_id"], 1, (1 << 63) - 1),
    )
    if "link" in table:
        link = table["link"]
        if link not in link_names:
            known = ", ".join(link_names) if link_names else "none are defined"
            raise ConfigError(
                f"{section} link must name a [[links]] entry, got {link!r}; known: {known}"
            )
        relay = replace(relay, link=link)
    if "method" in table:
        method = _choice_setting(section, "method", table["method"], PRIVATE_METHODS)
        if not relay.private and method != RelayConfig.method:
            raise ConfigError(
                f"{section} method {method!r} is only for evm-private relays; "
                f"evm-rpc relays always use {RelayConfig.method}"
            )
        relay = replace(relay, method=method)
    if "auth_key_label" in table:
        if not relay.private:
            raise ConfigError(f"{section} auth_key_label is only for evm-private relays")
        relay = replace(relay, auth_key_label=_label_setting(section, "auth_key_label", table))
    if "timeout_seconds" in table:
        value = _number_setting(section, "timeout_seconds", table["timeout_seconds"], 0.1, 120)
        # an unset connect timeout follows a total timeout set below it
        relay = replace(
            relay,
            timeout_seconds=value,
            connect_timeout_seconds=min(relay.connect_timeout_seconds, value),
        )
    if "connect_timeout_seconds" in table:
        value = _number_setting(
            section, "connect_timeout_seconds", table["connect_timeout_seconds"], 0.1, 60
        )
        if value > relay.timeout_seconds:
            raise ConfigError(
                f"{section} connect_timeout_seconds ({value:g}) must not exceed "
                f"timeout_seconds ({relay.timeout_seconds:g})"
            )
        relay = replace(relay, connect_timeout_seconds=value)
    if "batch_size" in table:
        value = _int_setting(section, "batch_size", table["batch_size"], 1, 1000)
        relay = replace(relay, batch_size=value)
    if "role" in table:
        relay = replace(relay, role=_choice_setting(section, "role", table["role"], RELAY_ROLES))
    return relay


_BROADCASTER_KEYS = {
    "confirmations",
    "reorg_depth",
    "bump_after_blocks",
    "bump_after_seconds",
    "rebroadcast_seconds",
    "reconcile_seconds",
    "resign",
    "resign_max_fee_per_gas",
    "health",
}


def _broadcaster_config(table: Mapping[str, Any]) -> BroadcasterConfig:
    section = "broadcaster"
    _check_keys(section, table, _BROADCASTER_KEYS)
    config = BroadcasterConfig()
    for key, high in (("confirmations", 10_000), ("bump_after_blocks", 10_000)):
        if key in table:
            config = replace(config, **{key: _int_setting(section, key, table[key], 1, high)})
    if "reorg_depth" in table:
        value = _int_setting(section, "reorg_depth", table["reorg_depth"], 1, 100_000)
        if value < config.confirmations:
            raise ConfigError(
                f"[broadcaster] reorg_depth ({value}) must be >= confirmations "
                f"({config.confirmations})"
            )
        config = replace(config, reorg_depth=value)
    else:
        # an unset reorg depth follows confirmations set above it
        config = replace(config, reorg_depth=max(config.reorg_depth, config.confirmations))
    for key in ("bump_after_seconds", "rebroadcast_seconds", "reconcile_seconds"):
        if key in table:
            value = _number_setting(section, key, table[key], 0.1, 86400)
            config = replace(config, **{key: value})
    if "resign" in table:
        config = replace(config, resign=_bool_setting(section, "resign", table["resign"]))
    if "resign_max_fee_per_gas" in table:
        value = _int_setting(
            section, "resign_max_fee_per_gas", table["resign_max_fee_per_gas"], 1, 10**30
        )
        config = replace(config, resign_max_fee_per_gas=value)
    if config.resign and config.resign_max_fee_per_gas is None:
        raise ConfigError(
            "[broadcaster] resign = true needs resign_max_fee_per_gas: re-signing needs a cap"
        )
    if "health" in table:
        health = table["health"]
        if not isinstance(health, dict):
            raise ConfigError("[broadcaster] health must be a table ([broadcaster.health])")
        config = replace(config, health=_health_config(health))
    return config


_HEALTH_KEYS = {"probe_seconds", "probe_down_seconds", "fall", "rise", "slow_ms"}


def _health_config(table: Mapping[str, Any]) -> HealthConfig:
    section = "broadcaster.health"
    _check_keys(section, table, _HEALTH_KEYS)
    config = HealthConfig()
    for key in ("probe_seconds", "probe_down_seconds"):
        if key in table:
            value = _number_setting(section, key, table[key], 0.01, 3600)
            config = replace(config, **{key: value})
    for key, high in (("fall", 100), ("rise", 100), ("slow_ms", 600_000)):
        if key in table:
            config = replace(config, **{key: _int_setting(section, key, table[key], 1, high)})
    return config


_BYBIT_KEYS = {
    "base_url",
    "api_key",
    "secret_label",
    "rsa_key_label",
    "recv_window_ms",
    "intent_key_label",
    "category",
    "timeout_seconds",
    "policy",
    "account",
    "probe_seconds",
    "reconcile_seconds",
    "retry_base_seconds",
    "retry_cap_seconds",
    "retry_jitter",
}
_API_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")


def _bybit_config(table: Mapping[str, Any]) -> BybitConfig:
    section = "bybit"
    _check_keys(section, table, _BYBIT_KEYS)
    _require_keys(section, table, ("base_url", "api_key"))
    api_key = table["api_key"]
    if not isinstance(api_key, str) or not _API_KEY_RE.fullmatch(api_key):
        # never echo the value: a misplaced secret is the likeliest bad api_key
        got = f"{len(api_key)} characters" if isinstance(api_key, str) else type(api_key).__name__
        raise ConfigError(
            f"[bybit] api_key must be 1-128 printable ASCII characters without spaces, got {got}"
        )
    labels = [key for key in ("secret_label", "rsa_key_label") if key in table]
    if len(labels) != 1:
        problem = "both are set" if labels else "neither is set"
        raise ConfigError(
            f"[bybit]: set exactly one of secret_label (HMAC secret in the HSM) or "
            f"rsa_key_label (RSA key in the HSM); {problem}"
        )
    config = BybitConfig(
        base_url=_http_url_setting(section, "base_url", table["base_url"]),
        api_key=api_key,
        **{labels[0]: _label_setting(section, labels[0], table)},
    )
    if "recv_window_ms" in table:
        value = _int_setting(section, "recv_window_ms", table["recv_window_ms"], 1, 60_000)
        config = replace(config, recv_window_ms=value)
    if "intent_key_label" in table:
        value = _label_setting(section, "intent_key_label", table)
        config = replace(config, intent_key_label=value)
    if "category" in table:
        category = _choice_setting(section, "category", table["category"], CATEGORIES)
        config = replace(config, category=category)
    if "timeout_seconds" in table:
        value = _number_setting(section, "timeout_seconds", table["timeout_seconds"], 0.1, 120)
        config = replace(config, timeout_seconds=value)
    for key, (low, high) in _BYBIT_NUMBERS.items():
        if key in table:
            value = _number_setting(section, key, table[key], low, high)
            config = replace(config, **{key: value})
    if config.retry_cap_seconds < config.retry_base_seconds:
        raise ConfigError("[bybit] retry_cap_seconds must be at least retry_base_seconds")
    if "account" in table:
        config = replace(config, account=_label_setting(section, "account", table))
    if "policy" in table:
        policy = table["policy"]
        if not isinstance(policy, dict):
            raise ConfigError("[bybit] policy must be a table ([bybit.policy])")
        config = replace(config, policy=_policy_config(policy))
    return config


_FAILOVER_INTS: dict[str, tuple[int, int]] = {
    "heartbeat_gap_ms": (1, 3_600_000),
    "missed_acks": (1, 1000),
    "critical_slippage_bps": (0, 9_999),
    "escalate_queue_items": (0, 10_000_000),
}
_FAILOVER_NUMBERS: dict[str, tuple[float, float]] = {
    "backup_window_s": (0, 86_400),
    "backup_latency_ms": (0, 600_000),
    "escalate_oldest_s": (0, 30 * 86_400),
}


def _failover_config(table: Mapping[str, Any]) -> FailoverConfig:
    section = "failover"
    _check_keys(section, table, set(_FAILOVER_INTS) | set(_FAILOVER_NUMBERS))
    config = FailoverConfig()
    for key, (low, high) in _FAILOVER_INTS.items():
        if key in table:
            config = replace(config, **{key: _int_setting(section, key, table[key], low, high)})
    for key, (lo, hi) in _FAILOVER_NUMBERS.items():
        if key in table:
            config = replace(config, **{key: _number_setting(section, key, table[key], lo, hi)})
    return config


_SERVICE_KEYS = {f.name for f in fields(ServiceConfig)}
LOG_FORMATS = ("text", "json")


def _service_config(table: Mapping[str, Any]) -> ServiceConfig:
    section = "service"
    _check_keys(section, table, _SERVICE_KEYS)
    config = ServiceConfig()
    if "metrics_host" in table:
        host = table["metrics_host"]
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(
                f"[service] metrics_host must be a loopback address (127.0.0.1, ::1 or "
                f"localhost), got {host!r}: the endpoint has no authentication"
            )
        config = replace(config, metrics_host=host)
    if "metrics_port" in table:
        port = _int_setting(section, "metrics_port", table["metrics_port"], 0, 65535)
        config = replace(config, metrics_port=port)
    if "log_format" in table:
        log_format = _choice_setting(section, "log_format", table["log_format"], LOG_FORMATS)
        config = replace(config, log_format=log_format)
    if "webhook_url" in table:
        url = _http_url_setting(section, "webhook_url", table["webhook_url"])
        config = replace(config, webhook_url=url)
    if "webhook_secret_label" in table:
        label = _label_setting(section, "webhook_secret_label", table)
        config = replace(config, webhook_secret_label=label)
    if (config.webhook_url is None) != (config.webhook_secret_label is None):
        raise ConfigError(
            "[service] webhook_url and webhook_secret_label go together: alerts are sent "
            "signed (import the secret with airlock hsm import-secret)"
        )
    if "alert_command" in table:
        argv = table["alert_command"]
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) and a for a in argv)
        ):
            raise ConfigError(
                "[service] alert_command must be a non-empty list of strings (argv, no shell)"
            )
        config = replace(config, alert_command=tuple(argv))
    for key, high in (
        ("webhook_timeout_seconds", 120),
        ("alert_command_timeout_seconds", 600),
        ("alert_dedup_seconds", 86_400),
    ):
        if key in table:
            low = 0 if key == "alert_dedup_seconds" else 0.1
            config = replace(config, **{key: _number_setting(section, key, table[key], low, high)})
    return config


_API_KEYS = {f.name for f in fields(ApiConfig)}


def _api_config(table: Mapping[str, Any]) -> ApiConfig:
    section = "api"
    _check_keys(section, table, _API_KEYS)
    config = ApiConfig()
    if "enabled" in table:
        config = replace(config, enabled=_bool_setting(section, "enabled", table["enabled"]))
    for key in ("socket", "token_file"):
        if key in table:
            raw = table[key]
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"[api] {key} must be a file path, got {raw!r}")
            config = replace(config, **{key: _expand_path(f"[api] {key}", raw)})
    if "socket_group" in table:
        group = table["socket_group"]
        if not isinstance(group, str) or not _NAME_RE.fullmatch(group):
            raise ConfigError(
                "[api] socket_group must be a group name (1-64 characters of A-Z a-z 0-9 "
                f"_ . -), got {group!r}"
            )
        config = replace(config, socket_group=group)
    if "listen" in table:
        config = replace(config, listen=_loopback_listen(table["listen"]))
    if config.listen is not None and config.token_file is None:
        raise ConfigError(
            "[api] listen needs token_file: TCP clients must present a bearer token (the "
            "Unix socket needs none: its file mode decides who may connect)"
        )
    for key, low, high in (("max_body_bytes", 1024, 64 << 20), ("max_batch", 1, 10_000)):
        if key in table:
            config = replace(config, **{key: _int_setting(section, key, table[key], low, high)})
    return config


def _loopback_listen(raw: Any) -> tuple[str, int]:
    """``"127.0.0.1:8750"`` or ``"[::1]:8750"``: loopback only, a port from 1 to 65535."""
    text = raw if isinstance(raw, str) else ""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host not in ("127.0.0.1", "::1", "localhost") or not port.isdigit():
        raise ConfigError(
            f"[api] listen must be a loopback host:port such as '127.0.0.1:8750', got {raw!r}"
        )
    number = int(port)
    if not 1 <= number <= 65535:
        raise ConfigError(f"[api] listen port must be 1..65535, got {number}")
    return host, number


_BYBIT_NUMBERS: dict[str, tuple[float, float]] = {
    "probe_seconds": (0.01, 3600),
    "reconcile_seconds": (0.01, 86_400),
    "retry_base_seconds": (0.001, 600),
    "retry_cap_seconds": (0.001, 3600),
    "retry_jitter": (0, 1),
}
_POLICY_KEYS = {f.name for f in fields(PolicyConfig)}


def _policy_config(table: Mapping[str, Any]) -> PolicyConfig:
    """``[bybit.policy]``: PolicyConfig validates itself; its messages get the section name."""
    _check_keys("bybit.policy", table, _POLICY_KEYS)
    try:
        return PolicyConfig(**table)
    except ConfigError as exc:
        # PolicyConfig says "policy <key> must ..."; name the table and key as everywhere else
        message = str(exc).removeprefix("policy ")
        raise ConfigError(f"[bybit.policy] {message}") from exc


def _queue_config(home: Path, table: Mapping[str, Any]) -> QueueConfig:
    _check_keys("queue", table, {"path", "kek_label", "rotate_after"})
    config = QueueConfig(path=home / "queue.db")
    if "path" in table:
        if not isinstance(table["path"], str) or not table["path"]:
            raise ConfigError("[queue] path must be a non-empty string")
        config = replace(config, path=_expand_path("[queue] path", table["path"]))
    if "kek_label" in table:
        config = replace(config, kek_label=_label_setting("queue", "kek_label", table))
    if "rotate_after" in table:
        value = _int_setting("queue", "rotate_after", table["rotate_after"], 1, (1 << 32) - 1)
        config = replace(config, rotate_after=value)
    return config


def _audit_config(table: Mapping[str, Any]) -> AuditConfig:
    _check_keys("audit", table, {"key_label", "checkpoint_every", "checkpoint_seconds"})
    config = AuditConfig()
    if "key_label" in table:
        config = replace(config, key_label=_label_setting("audit", "key_label", table))
    if "checkpoint_every" in table:
        value = _int_setting("audit", "checkpoint_every", table["checkpoint_every"], 1, 10**9)
        config = replace(config, checkpoint_every=value)
    if "checkpoint_seconds" in table:
        value = _int_setting("audit", "checkpoint_seconds", table["checkpoint_seconds"], 1, 86400)
        config = replace(config, checkpoint_seconds=value)
    return config


def _evm_config(table: Mapping[str, Any]) -> EvmConfig:
    _check_keys("evm", table, {"bump_pct", "max_fee_cap"})
    config = EvmConfig()
    if "bump_pct" in table:
        value = table["bump_pct"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 10 <= value <= 1000:
            raise ConfigError(f"[evm] bump_pct must be a number in 10..1000, got {value!r}")
        config = replace(config, bump_pct=float(value))
    if "max_fee_cap" in table:
        value = _int_setting("evm", "max_fee_cap", table["max_fee_cap"], 1, 10**30)
        config = replace(config, max_fee_cap=value)
    return config


_HSM_KEYS = {"uri", "module", "token", "pin_source", "softhsm_conf"}


def _hsm_config(home: Path, table: Mapping[str, Any], env: Mapping[str, str]) -> HsmConfig:
    _check_keys("hsm", table, _HSM_KEYS)
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"[hsm] {key} must be a string")
    settings = dict(table)
    env_map = {
        "AIRLOCK_PKCS11_URI": "uri",
        "AIRLOCK_PKCS11_MODULE": "module",
        "AIRLOCK_TOKEN_LABEL": "token",
    }
    for var, key in env_map.items():
        if env.get(var):
            settings[key] = env[var]
    if "uri" in settings:
        uri = parse_pkcs11_uri(settings["uri"])
        for key, value in (
            ("module", uri.module_path),
            ("token", uri.token),
            ("pin_source", uri.pin_source),
        ):
            if value is None:
                continue
            if key in settings and settings[key] != value:
                raise ConfigError(f"[hsm] {key} and the pkcs11 URI disagree; set only one")
            settings[key] = value
    softhsm_conf = settings.get("softhsm_conf") or env.get("SOFTHSM2_CONF")
    if "module" in settings:
        return HsmConfig(
            module_path=_expand_path("[hsm] module", settings["module"]),
            token_label=settings.get("token") or EMBEDDED_TOKEN_LABEL,
            pin_source=settings.get("pin_source"),
            softhsm_conf=_expand_path("[hsm] softhsm_conf", softhsm_conf) if softhsm_conf else None,
        )
    paths = embedded_paths(home)
    module = find_softhsm_module()
    return HsmConfig(
        module_path=module or Path(SOFTHSM_MODULE_CANDIDATES[0]),
        token_label=settings.get("token") or EMBEDDED_TOKEN_LABEL,
        pin_source=settings.get("pin_source") or f"file:{paths['user_pin']}",
        softhsm_conf=paths["conf"],
        embedded=True,
    )
