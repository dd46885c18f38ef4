"""Every config section: defaults, overrides, and a clear error for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.config import (
    BroadcasterConfig,
    BybitConfig,
    HealthConfig,
    LinkConfig,
    RelayConfig,
    load_config,
    redact_url,
)
from airlock.errors import ConfigError
from airlock.queue.policy import PolicyConfig


def load(tmp_path: Path, text: str):
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return load_config(path, env={"AIRLOCK_HOME": str(tmp_path)})


def test_defaults(tmp_path):
    config = load(tmp_path, "")
    assert config.queue.path == tmp_path / "queue.db"
    assert config.queue.kek_label == "airlock-kek"
    assert config.queue.rotate_after == 1 << 24
    assert (config.evm.bump_pct, config.evm.max_fee_cap) == (12.5, None)


def test_overrides(tmp_path):
    config = load(
        tmp_path,
        '[queue]\npath = "/var/q.db"\nkek_label = "k2"\nrotate_after = 1000\n'
        "[evm]\nbump_pct = 20\nmax_fee_cap = 200000000000\n",
    )
    assert config.queue.path == Path("/var/q.db")
    assert (config.queue.kek_label, config.queue.rotate_after) == ("k2", 1000)
    assert (config.evm.bump_pct, config.evm.max_fee_cap) == (20.0, 200_000_000_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queue]\nsize = 3\n", r"\[queue\]: unknown setting\(s\) size"),
        ("[queue]\nrotate_after = 0\n", "rotate_after must be an integer"),
        ("[queue]\nrotate_after = 4294967296\n", "rotate_after must be an integer"),
        ("[queue]\nrotate_after = true\n", "rotate_after must be an integer"),
        ('[queue]\npath = ""\n', "path must be a non-empty string"),
        ("[queue]\nkek_label = 7\n", "kek_label must be a string"),
        ("[evm]\nbump_pct = 5\n", "bump_pct must be a number in 10..1000"),
        ('[evm]\nbump_pct = "12"\n', "bump_pct must be a number"),
        ("[evm]\nmax_fee_cap = -1\n", "max_fee_cap must be an integer"),
        ('queue = "x"\n', r"\[queue\] must be a table"),
        ("[audit]\ncheckpoint_every = 0\n", "checkpoint_every must be an integer"),
        ("[audit]\ncheckpoint_seconds = 90000\n", "checkpoint_seconds must be an integer"),
        ('[audit]\nkey_label = ""\n', "key_label must be a string"),
        ("[audit]\nsign = true\n", r"\[audit\]: unknown setting"),
    ],
)
def test_bad_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def load_home(tmp_path: Path, text: str):
    """The default file, ``$AIRLOCK_HOME/airlock.toml``, as the acceptance checks write it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "airlock.toml").write_text(text)
    return load_config(env={"AIRLOCK_HOME": str(home)})


def test_relay_acceptance_shape(tmp_path):
    config = load_home(
        tmp_path,
        """
[[relays]]
name = "rpc-a"
kind = "evm-rpc"          # or "evm-private"
url = "http://127.0.0.1:8545"
chain_id = 31337
# link = "wan2"
""",
    )
    assert config.relays == (
        RelayConfig(name="rpc-a", kind="evm-rpc", url="http://127.0.0.1:8545", chain_id=31337),
    )
    relay = config.relays[0]
    assert not relay.private
    assert relay.method == "eth_sendRawTransaction"
    assert (relay.timeout_seconds, relay.connect_timeout_seconds, relay.batch_size) == (5, 2, 100)
    assert config.links == ()
    assert config.broadcaster == BroadcasterConfig()


def test_relays_links_and_broadcaster_default_to_empty(tmp_path):
    config = load(tmp_path, "")
    assert (config.relays, config.links) == ((), ())
    assert config.broadcaster == BroadcasterConfig()
    assert config.broadcaster.health == HealthConfig()
    assert (config.broadcaster.confirmations, config.broadcaster.resign) == (3, False)


def test_private_relay_with_method_auth_label_and_link(tmp_path):
    config = load_home(
        tmp_path,
        """
[[links]]
name = "wan2"
source_address = "192.0.2.10"

[[links]]
name = "via-proxy"
proxy = "http://proxy.internal:3128"

[[links]]
name = "default"

[[relays]]
name = "rpc-a"
kind = "evm-rpc"
url = "https://user:secret@rpc.example.org/v3/0123456789abcdef0123456789abcdef"
chain_id = 1
link = "via-proxy"
method = "eth_sendRawTransaction"
timeout_seconds = 1
batch_size = 20

[[relays]]
name = "flashbots"
kind = "evm-private"
url = "https://relay.flashbots.net"
chain_id = 1
link = "wan2"
method = "eth_sendPrivateTransaction"
auth_key_label = "flashbots-auth"
timeout_seconds = 10.5
connect_timeout_seconds = 3

[[relays]]
name = "sepolia"
kind = "evm-rpc"
url = "http://[::1]:8545"
chain_id = 11155111
""",
    )
    assert config.links == (
        LinkConfig(name="wan2", source_address="192.0.2.10"),
        LinkConfig(name="via-proxy", proxy="http://proxy.internal:3128"),
        LinkConfig(name="default"),
    )
    public, private, sepolia = config.relays
    assert (public.link, public.private, public.batch_size) == ("via-proxy", False, 20)
    # a total timeout below the default connect timeout pulls the latter down with it
    assert (public.timeout_seconds, public.connect_timeout_seconds) == (1.0, 1.0)
    assert private.private
    assert (private.method, private.auth_key_label, private.link) == (
        "eth_sendPrivateTransaction",
        "flashbots-auth",
        "wan2",
    )
    assert (private.timeout_seconds, private.connect_timeout_seconds) == (10.5, 3.0)
    assert (sepolia.chain_id, sepolia.link) == (11155111, None)


def test_ipv6_source_address_is_normalised(tmp_path):
    config = load(tmp_path, '[[links]]\nname = "v6"\nsource_address = "2001:DB8:0:0::1"\n')
    assert config.links[0].source_address == "2001:db8::1"


def test_broadcaster_and_health(tmp_path):
    config = load(
        tmp_path,
        """
[broadcaster]
confirmations = 1
reorg_depth = 10
bump_after_blocks = 2
bump_after_seconds = 30
rebroadcast_seconds = 45.5
reconcile_seconds = 5
resign = true
resign_max_fee_per_gas = 500000000000

[broadcaster.health]
probe_seconds = 1
probe_down_seconds = 0.25
fall = 5
rise = 1
slow_ms = 800
""",
    )
    assert config.broadcaster == BroadcasterConfig(
        confirmations=1,
        reorg_depth=10,
        bump_after_blocks=2,
        bump_after_seconds=30.0,
        rebroadcast_seconds=45.5,
        reconcile_seconds=5.0,
        resign=True,
        resign_max_fee_per_gas=500_000_000_000,
        health=HealthConfig(
            probe_seconds=1.0, probe_down_seconds=0.25, fall=5, rise=1, slow_ms=800
        ),
    )
    assert isinstance(config.broadcaster.bump_after_seconds, float)


def test_unset_reorg_depth_follows_confirmations(tmp_path):
    assert load(tmp_path, "[broadcaster]\nconfirmations = 100\n").broadcaster.reorg_depth == 100
    assert load(tmp_path, "[broadcaster]\nconfirmations = 12\n").broadcaster.reorg_depth == 64


def q(text: str) -> str:
    return f'"{text}"'


def relay(**settings: str | None) -> str:
    """One [[relays]] table: the acceptance relay with ``settings`` (TOML values) replaced or,
    when None, removed."""
    base = {"name": q("rpc-a"), "kind": q("evm-rpc"), "url": q("http://127.0.0.1:8545")}
    base["chain_id"] = "31337"
    base.update(settings)
    lines = [f"{key} = {value}" for key, value in base.items() if value is not None]
    return "[[relays]]\n" + "\n".join(lines) + "\n"


RELAY = relay()
LINK_WAN2 = '[[links]]\nname = "wan2"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # [[relays]]: presence and shape
        (relay(name=None), r"\[\[relays\]\] #1: missing required setting\(s\) name"),
        (relay(kind=None), r'\[\[relays\]\] "rpc-a": missing required setting\(s\) kind'),
        (relay(url=None), r'"rpc-a": missing required setting\(s\) url'),
        (relay(chain_id=None), r'"rpc-a": missing required setting\(s\) chain_id'),
        (relay(name=q("bad name")), r"#1 name must be 1-64 characters"),
        (relay(name=q("x" * 65)), r"#1 name must be 1-64 characters"),
        (relay(name="7"), r"#1 name must be 1-64 characters"),
        (RELAY + RELAY, r"\[\[relays\]\] #2 name 'rpc-a' is already used by \[\[relays\]\] #1"),
        (relay(kind=q("evm")), r"kind must be one of evm-rpc, evm-private, got 'evm'"),
        (relay(colour=q("red")), r'\[\[relays\]\] "rpc-a": unknown setting\(s\) colour'),
        ('relays = "x"\n', r"relays must be an array of tables \(\[\[relays\]\]\)"),
        ('[relays]\nname = "x"\n', r"relays must be an array of tables"),
        ("relays = [1, 2]\n", r"relays must be an array of tables"),
        # url
        (relay(url=q("ftp://127.0.0.1:8545")), r'"rpc-a" url must be an http:// or https:// URL'),
        (relay(url=q("127.0.0.1:8545")), r"url must be an http:// or https:// URL"),
        (relay(url=q("http://127.0.0.1 :8545")), r'"rpc-a" url must not contain whitespace'),
        (relay(url=q("http://host/a\\tb")), r"url must not contain whitespace"),
        (relay(url=q("http:///path")), r'"rpc-a" url has no host'),
        (relay(url=q("http://host:99999")), r'"rpc-a" url is not a valid URL'),
        (relay(url=q("")), r"url must be a non-empty string"),
        (relay(url="8545"), r"url must be a non-empty string"),
        # chain_id
        (relay(chain_id="0"), r'"rpc-a" chain_id must be an integer in 1..9223372036854775807'),
        (relay(chain_id="true"), r"chain_id must be an integer"),
        (relay(chain_id=q("1")), r"chain_id must be an integer"),
        (relay(chain_id="9223372036854775808"), r"chain_id must be an integer"),
        (relay(chain_id="1.0"), r"chain_id must be an integer"),
        # link
        (relay(link=q("wan2")), r'"rpc-a" link must name a \[\[links\]\] entry.*none are defined'),
        (
            LINK_WAN2 + relay(link=q("wan3")),
            r"link must name a \[\[links\]\] entry, got 'wan3'; known: wan2",
        ),
        # method, auth_key_label: evm-private only
        (relay(method=q("eth_sendPrivateTransaction")), r'"rpc-a" method .* only for evm-private'),
        (relay(method=q("eth_call")), r'"rpc-a" method must be one of eth_sendRawTransaction'),
        (
            relay(kind=q("evm-private"), method=q("eth_sendBundle")),
            r"method must be one of eth_sendRawTransaction, eth_sendPrivateTransaction",
        ),
        (relay(auth_key_label=q("fb")), r'"rpc-a" auth_key_label is only for evm-private'),
        (
            relay(kind=q("evm-private"), auth_key_label=q("")),
            r'"rpc-a" auth_key_label must be a string of 1-64 characters',
        ),
        # timeouts, batch size
        (
            relay(timeout_seconds="3", connect_timeout_seconds="4"),
            r'"rpc-a" connect_timeout_seconds \(4\) must not exceed timeout_seconds \(3\)',
        ),
        (relay(timeout_seconds="0.05"), r'"rpc-a" timeout_seconds must be a number in 0.1..120'),
        (relay(timeout_seconds="121"), r"timeout_seconds must be a number"),
        (relay(timeout_seconds="true"), r"timeout_seconds must be a number"),
        (relay(connect_timeout_seconds="61"), r"connect_timeout_seconds must be a number"),
        (relay(batch_size="0"), r'"rpc-a" batch_size must be an integer in 1..1000'),
        (relay(batch_size="1001"), r"batch_size must be an integer"),
        # [[links]]
        (
            '[[links]]\nname = "l"\nsource_address = "10.0.0.1"\nproxy = "http://p:3128"\n',
            r'\[\[links\]\] "l": set source_address or proxy, not both',
        ),
        (
            '[[links]]\nname = "l"\nsource_address = "10.0.0.256"\n',
            r'\[\[links\]\] "l" source_address must be an IPv4 or IPv6 address',
        ),
        ('[[links]]\nname = "l"\nsource_address = "eth0"\n', "must be an IPv4 or IPv6"),
        ('[[links]]\nname = "l"\nsource_address = 10\n', "must be an IPv4 or IPv6"),
        ('[[links]]\nname = "l"\nproxy = "socks5://p:1080"\n', r'"l" proxy must be an http://'),
        ('[[links]]\nname = "l"\nproxy = "http://"\n', r'"l" proxy has no host'),
        ('[[links]]\nname = "l"\nmtu = 1500\n', r'\[\[links\]\] "l": unknown setting\(s\) mtu'),
        ('[[links]]\nproxy = "http://p"\n', r"\[\[links\]\] #1: missing required setting"),
        (LINK_WAN2 + LINK_WAN2, r"\[\[links\]\] #2 name 'wan2' is already used"),
        ('links = {name = "x"}\n', r"links must be an array of tables"),
        # [broadcaster]
        (
            "[broadcaster]\nresign = true\n",
            r"resign = true needs resign_max_fee_per_gas: re-signing needs a cap",
        ),
        ('[broadcaster]\nresign = "yes"\n', r"\[broadcaster\] resign must be true or false"),
        (
            "[broadcaster]\nconfirmations = 10\nreorg_depth = 5\n",
            r"\[broadcaster\] reorg_depth \(5\) must be >= confirmations \(10\)",
        ),
        ("[broadcaster]\nconfirmations = 0\n", r"\[broadcaster\] confirmations must be an integer"),
        ("[broadcaster]\nconfirmations = 2.0\n", r"confirmations must be an integer"),
        ("[broadcaster]\nreorg_depth = 100001\n", r"reorg_depth must be an integer"),
        ("[broadcaster]\nbump_after_blocks = 0\n", r"bump_after_blocks must be an integer"),
        ("[broadcaster]\nbump_after_seconds = 0\n", r"bump_after_seconds must be a number"),
        ("[broadcaster]\nrebroadcast_seconds = true\n", r"rebroadcast_seconds must be a number"),
        ("[broadcaster]\nreconcile_seconds = 86401\n", r"reconcile_seconds must be a number"),
        ("[broadcaster]\nresign_max_fee_per_gas = 0\n", r"resign_max_fee_per_gas must be an"),
        ("[broadcaster]\nrelays = 1\n", r"\[broadcaster\]: unknown setting\(s\) relays"),
        ('broadcaster = "x"\n', r"\[broadcaster\] must be a table"),
        ("[broadcaster]\nhealth = 1\n", r"\[broadcaster\] health must be a table"),
        # [broadcaster.health]
        ("[broadcaster.health]\nprobe_seconds = 0\n", r"\[broadcaster.health\] probe_seconds"),
        ("[broadcaster.health]\nprobe_down_seconds = 3601\n", r"probe_down_seconds must be a"),
        ("[broadcaster.health]\nfall = 0\n", r"\[broadcaster.health\] fall must be an integer"),
        ("[broadcaster.health]\nrise = 101\n", r"rise must be an integer in 1..100"),
        ("[broadcaster.health]\nslow_ms = false\n", r"slow_ms must be an integer"),
        ("[broadcaster.health]\njitter = 1\n", r"\[broadcaster.health\]: unknown setting"),
    ],
)
def test_bad_relay_link_broadcaster_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def test_url_errors_never_print_credentials(tmp_path):
    text = relay(url=q("ftp://alice:hunter2@rpc.example/v3/0123456789abcdef0123456789abcdef"))
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert "hunter2" not in str(info.value)
    assert "0123456789abcdef" not in str(info.value)
    assert "ftp://***@rpc.example/v3/***" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://rpc.example.org/", "https://rpc.example.org/"),
        ("https://alice:hunter2@rpc.example.org", "https://***@rpc.example.org"),
        ("https://token@rpc.example.org:8443/rpc", "https://***@rpc.example.org:8443/rpc"),
        (
            "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef",
            "https://mainnet.infura.io/v3/***",
        ),
        (
            "https://eth-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "https://eth-mainnet.g.alchemy.com/v2/***",
        ),
        ("https://rpc.example.org/a/b/c", "https://rpc.example.org/a/b/c"),
        (
            "https://rpc.example.org/1234567890123456789",
            "https://rpc.example.org/1234567890123456789",
        ),
        ("https://rpc.example.org/12345678901234567890", "https://rpc.example.org/***"),
        ("https://rpc.example.org/?apikey=s3cret", "https://rpc.example.org/?***"),
        ("https://rpc.example.org/rpc?a=1&b=2#frag", "https://rpc.example.org/rpc?***#***"),
        (
            "https://u:p@rpc.example.org/0123456789abcdef0123/x?key=k",
            "https://***@rpc.example.org/***/x?***",
        ),
        ("http://[::1", "***"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


BYBIT_ACCEPTANCE = """
[bybit]
base_url = "http://127.0.0.1:18080"   # the simulator; https://api.bybit.com in production
api_key = "XXXXXXXXXXXXXXXXXX"
secret_label = "bybit-hmac"           # HSM object holding the secret, or
# rsa_key_label = "bybit-rsa"         # an HSM RSA key for self-generated API keys
recv_window_ms = 5000
"""


def test_bybit_acceptance_shape(tmp_path):
    config = load_home(tmp_path, BYBIT_ACCEPTANCE)
    assert config.bybit == BybitConfig(
        base_url="http://127.0.0.1:18080",
        api_key="XXXXXXXXXXXXXXXXXX",
        secret_label="bybit-hmac",
    )
    bybit = config.bybit
    assert (bybit.sign_type, bybit.rsa_key_label, bybit.recv_window_ms) == ("hmac", None, 5000)
    assert (bybit.intent_key_label, bybit.category, bybit.timeout_seconds) == (
        "airlock-intents",
        "linear",
        10.0,
    )
    assert bybit.policy == PolicyConfig()


def test_bybit_absent_is_none(tmp_path):
    assert load(tmp_path, "").bybit is None
    assert load(tmp_path, RELAY).bybit is None


def test_bybit_api_key_is_never_printed_in_full(tmp_path):
    config = load_home(
        tmp_path, BYBIT_ACCEPTANCE.replace("XXXXXXXXXXXXXXXXXX", "AbCdEfGhIjKlMnOpQr")
    )
    assert config.bybit is not None
    assert config.bybit.api_key == "AbCdEfGhIjKlMnOpQr"
    assert config.bybit.api_key_hint == "AbCd\u2026"
    assert "AbCdEfGh" not in repr(config.bybit)
    assert "AbCdEfGh" not in repr(config)
    # a short key never shows more than half of itself
    assert BybitConfig(base_url="http://h", api_key="abcd", secret_label="s").api_key_hint == (
        "ab\u2026"
    )


def test_bybit_rsa_variant_and_every_setting(tmp_path):
    config = load(
        tmp_path,
        """
[bybit]
base_url = "https://api.bybit.com"
api_key = "k3y-with.punctuation!"
rsa_key_label = "bybit-rsa"
recv_window_ms = 60000
intent_key_label = "desk-intents"
category = "spot"
timeout_seconds = 2.5
""",
    )
    bybit = config.bybit
    assert bybit is not None
    assert (bybit.sign_type, bybit.rsa_key_label, bybit.secret_label) == ("rsa", "bybit-rsa", None)
    assert (bybit.base_url, bybit.api_key) == ("https://api.bybit.com", "k3y-with.punctuation!")
    assert (bybit.recv_window_ms, bybit.intent_key_label) == (60000, "desk-intents")
    assert (bybit.category, bybit.timeout_seconds) == ("spot", 2.5)
    assert bybit.policy == PolicyConfig()


def test_bybit_policy_table(tmp_path):
    config = load(
        tmp_path,
        BYBIT_ACCEPTANCE
        + """
[bybit.policy]
default_ttl_s = 1800
max_ttl_s = 7200
market_ttl_s = 30
immediate_ttl_s = 2
max_slippage_bps = 100
allow_market_with_ref = false
market_limit_tif = "IOC"
""",
    )
    assert config.bybit is not None
    assert config.bybit.policy == PolicyConfig(
        default_ttl_s=1800,
        max_ttl_s=7200,
        market_ttl_s=30,
        immediate_ttl_s=2,
        max_slippage_bps=100,
        allow_market_with_ref=False,
        market_limit_tif="IOC",
    )
    partial = load(tmp_path, BYBIT_ACCEPTANCE + "[bybit.policy]\nmax_slippage_bps = 50\n")
    assert partial.bybit is not None
    assert partial.bybit.policy == PolicyConfig(max_slippage_bps=50)


def bybit(**settings: str | None) -> str:
    """The acceptance [bybit] table with ``settings`` (TOML values) replaced or, when None,
    removed."""
    base: dict[str, str | None] = {
        "base_url": q("http://127.0.0.1:18080"),
        "api_key": q("XXXXXXXXXXXXXXXXXX"),
        "secret_label": q("bybit-hmac"),
        "recv_window_ms": "5000",
    }
    base.update(settings)
    lines = [f"{key} = {value}" for key, value in base.items() if value is not None]
    return "[bybit]\n" + "\n".join(lines) + "\n"


BYBIT = bybit()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # presence and shape
        (bybit(base_url=None), r"\[bybit\]: missing required setting\(s\) base_url"),
        (bybit(api_key=None), r"\[bybit\]: missing required setting\(s\) api_key"),
        ("[bybit]\n", r"\[bybit\]: missing required setting\(s\) base_url, api_key"),
        ('bybit = "x"\n', r"\[bybit\] must be a table"),
        (
            bybit(secret=q("s")),
            r"\[bybit\]: unknown setting\(s\) secret; known: account, account_seconds, api_key",
        ),
        # labels: exactly one of secret_label / rsa_key_label
        (
            bybit(rsa_key_label=q("bybit-rsa")),
            r"\[bybit\]: set exactly one of secret_label .* or rsa_key_label .*; both are set",
        ),
        (bybit(secret_label=None), r"set exactly one of secret_label .*; neither is set"),
        (bybit(secret_label=q("")), r"\[bybit\] secret_label must be a string of 1-64"),
        (
            bybit(secret_label=None, rsa_key_label=q("x" * 65)),
            r"\[bybit\] rsa_key_label must be a string of 1-64",
        ),
        (bybit(intent_key_label="1"), r"\[bybit\] intent_key_label must be a string of 1-64"),
        # base_url
        (bybit(base_url=q("ftp://api.bybit.com")), r"\[bybit\] base_url must be an http://"),
        (bybit(base_url=q("api.bybit.com")), r"base_url must be an http:// or https:// URL"),
        (bybit(base_url=q("https://")), r"\[bybit\] base_url has no host"),
        (bybit(base_url=q("https://api.bybit.com:0x")), r"base_url is not a valid URL"),
        (bybit(base_url=q("http://a b")), r"base_url must not contain whitespace"),
        (bybit(base_url="18080"), r"\[bybit\] base_url must be a non-empty string"),
        # api_key
        (bybit(api_key=q("")), r"\[bybit\] api_key must be 1-128 printable ASCII .* 0 char"),
        (bybit(api_key=q("abc def")), r"api_key must be 1-128 printable ASCII characters"),
        (bybit(api_key=q("k" * 129)), r"api_key must be .*, got 129 characters"),
        (bybit(api_key=q("kéy")), r"api_key must be 1-128 printable ASCII"),
        (bybit(api_key="12345"), r"api_key must be .*, got int"),
        # recv_window_ms, category, timeout_seconds
        (bybit(recv_window_ms="0"), r"\[bybit\] recv_window_ms must be an integer in 1..60000"),
        (bybit(recv_window_ms="70000"), r"recv_window_ms must be an integer in 1..60000"),
        (bybit(recv_window_ms="true"), r"recv_window_ms must be an integer in 1..60000, got True"),
        (bybit(recv_window_ms="5000.0"), r"recv_window_ms must be an integer"),
        (
            bybit(category=q("option")),
            r"\[bybit\] category must be one of linear, spot, inverse, got 'option'",
        ),
        (bybit(category="1"), r"category must be one of linear, spot, inverse"),
        (bybit(timeout_seconds="0.05"), r"\[bybit\] timeout_seconds must be a number in 0.1..120"),
        (bybit(timeout_seconds="121"), r"timeout_seconds must be a number"),
        (bybit(timeout_seconds="false"), r"timeout_seconds must be a number"),
        # [bybit.policy]
        (bybit(policy="1"), r"\[bybit\] policy must be a table \(\[bybit.policy\]\)"),
        (
            BYBIT + "[bybit.policy]\nttl = 1\n",
            r"\[bybit.policy\]: unknown setting\(s\) ttl; known: allow_market_with_ref",
        ),
        (
            BYBIT + "[bybit.policy]\ndefault_ttl_s = 0\n",
            r"\[bybit.policy\] default_ttl_s must be a positive integer, got 0",
        ),
        (
            BYBIT + "[bybit.policy]\nmax_ttl_s = 60.0\n",
            r"\[bybit.policy\] max_ttl_s must be a positive integer",
        ),
        (
            BYBIT + "[bybit.policy]\nmarket_ttl_s = true\n",
            r"\[bybit.policy\] market_ttl_s must be a positive integer",
        ),
        (
            BYBIT + "[bybit.policy]\nmax_ttl_s = 600\n",
            r"\[bybit.policy\] default_ttl_s \(3600\) exceeds max_ttl_s \(600\)",
        ),
        (
            BYBIT + "[bybit.policy]\nmax_slippage_bps = 10000\n",
            r"\[bybit.policy\] max_slippage_bps must be an integer in 0..9999",
        ),
        (
            BYBIT + '[bybit.policy]\nallow_market_with_ref = "yes"\n',
            r"\[bybit.policy\] allow_market_with_ref must be true or false",
        ),
        (
            BYBIT + '[bybit.policy]\nmarket_limit_tif = "FOK"\n',
            r"\[bybit.policy\] market_limit_tif must be GTC or IOC, got 'FOK'",
        ),
        # [bybit.policy] alone still needs the rest of [bybit]
        ("[bybit.policy]\nmax_ttl_s = 600\n", r"\[bybit\]: missing required setting"),
    ],
)
def test_bad_bybit_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


@pytest.mark.parametrize(
    "text",
    [
        bybit(api_key=q("AbCdEfGh IjKlMnOp")),
        bybit(api_key=q("AbCdEfGhIjKlMnOp" * 9)),
        bybit(api_key=q("AbCdEfGhIjKlMnOp"), secret_label=None),
        bybit(api_key=q("AbCdEfGhIjKlMnOp"), base_url=q("ftp://x")),
    ],
)
def test_bybit_errors_never_print_the_api_key(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert "AbCdEfGh" not in str(info.value)


def test_bybit_url_errors_are_redacted(tmp_path):
    text = bybit(base_url=q("ftp://alice:hunter2@api.bybit.com/"))
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert "hunter2" not in str(info.value)
    assert "ftp://***@api.bybit.com/" in str(info.value)
