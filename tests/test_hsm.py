"""The HSM layer against a real SoftHSM2 token: keys, operations, errors, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from airlock.config import HsmConfig, embedded_paths, load_config
from airlock.errors import ConfigError
from airlock.hsm import errors
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing, translate
from airlock.hsm.keys import KeyKind
from airlock.hsm.pin import resolve_pin
from airlock.hsm.softhsm import init_embedded
from airlock.hsm.worker import HsmWorker, load_module
from airlock.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri

SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")
CURVES = {"secp256k1": ec.SECP256K1(), "p256": ec.SECP256R1()}


def label(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def verify_ecdsa(public_point: bytes, curve: str, digest: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless raw r||s verifies over the prehashed digest."""
    assert len(signature) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(CURVES[curve], public_point)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def digest_of(i: int | str) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


@pytest.fixture(scope="module")
def generated(keyring: KeyRing) -> dict[str, str]:
    """One key of each generated kind, made once (rsa4096 takes a few seconds)."""
    labels = {}
    for kind in ("secp256k1", "p256", "aes256", "rsa2048", "rsa4096"):
        labels[kind] = label(kind)
        keyring.generate(kind, labels[kind])
    return labels


# -- the embedded token ----------------------------------------------------------------


@pytest.fixture
def logged_out(keyring: KeyRing) -> Iterator[None]:
    """Close the shared session (logging the process out), then reconnect afterwards.

    PKCS#11 login state is per process: while the shared keyring is logged in, any other
    C_Login on the token fails with UserAlreadyLoggedIn before the PIN is even checked.
    """
    keyring.worker.run(lambda conn: conn.session.close())
    yield
    _heal(keyring)


@pytest.mark.usefixtures("logged_out")
def test_init_embedded_is_idempotent(token_home: Path) -> None:
    report = init_embedded(token_home)
    assert report.created == []
    assert not report.changed
    paths = embedded_paths(token_home)
    assert paths["conf"].is_file()
    assert "directories.tokendir" in paths["conf"].read_text()
    for name in ("user_pin", "so_pin"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600


# -- generation and description ------------------------------------------------------


def test_generate_each_kind(keyring: KeyRing, generated: dict[str, str]) -> None:
    listed = {info.label: info.kind for info in keyring.list()}
    for kind, name in generated.items():
        assert keyring.info(name).kind == KeyKind(kind)
        assert listed[name] == KeyKind(kind)
    assert keyring.info(generated["aes256"]).public_key is None


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_ec_public_key_and_pem(keyring: KeyRing, generated: dict[str, str], curve: str) -> None:
    info = keyring.info(generated[curve])
    assert info.public_key is not None
    assert len(info.public_key) == 65
    assert info.public_key[0] == 0x04
    public = serialization.load_pem_public_key(keyring.public_key_pem(generated[curve]).encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == CURVES[curve].name
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert point == info.public_key


def test_duplicate_label_is_refused(keyring: KeyRing, generated: dict[str, str]) -> None:
    with pytest.raises(errors.KeyExists, match="already exists"):
        keyring.generate("secp256k1", generated["secp256k1"])
    with pytest.raises(errors.KeyExists, match="already exists"):
        keyring.generate("aes256", generated["p256"])
    with pytest.raises(errors.KeyExists, match="already exists"):
        keyring.import_hmac_secret(generated["aes256"], b"s" * 36)


# -- operations -----------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_ecdsa_sign_digest_verifies(
    keyring: KeyRing, generated: dict[str, str], curve: str
) -> None:
    key = keyring.ecdsa_key(generated[curve], curve=curve)
    assert key.curve == curve
    for i in range(5):
        digest = digest_of(f"{curve}-{i}")
        signature = key.sign_digest(digest)
        verify_ecdsa(key.public_key, curve, digest, signature)
    with pytest.raises(InvalidSignature):
        verify_ecdsa(key.public_key, curve, digest_of("other"), signature)


def test_submit_digest_returns_future(eth_key: HsmEcdsaKey) -> None:
    digest = digest_of("future")
    signature = eth_key.submit_digest(digest).result(timeout=10)
    verify_ecdsa(eth_key.public_key, "secp256k1", digest, signature)


def test_hmac_matches_python(keyring: KeyRing) -> None:
    name = label("hmac")
    secret = os.urandom(36)
    info = keyring.import_hmac_secret(name, secret)
    assert info.kind is KeyKind.HMAC
    assert info.public_key is None
    for data in (b"", b"GET /v5/account", os.urandom(1000)):
        expected = hmac.new(secret, data, hashlib.sha256).digest()
        assert keyring.hmac_sha256(name, data) == expected


def test_short_hmac_secret_is_refused_and_not_stored(keyring: KeyRing) -> None:
    name = label("hmac-short")
    with pytest.raises(errors.WrongKeyType, match="32"):
        keyring.import_hmac_secret(name, b"x" * 16)
    with pytest.raises(errors.KeyNotFound, match="no key labelled"):
        keyring.info(name)
    assert name not in {info.label for info in keyring.list()}


@pytest.mark.parametrize("kind", ["rsa2048", "rsa4096"])
def test_rsa_sign_sha256_verifies(keyring: KeyRing, generated: dict[str, str], kind: str) -> None:
    data = b"timestamp=1700000000000&api_key=abc"
    signature = keyring.rsa_sign_sha256(generated[kind], data)
    public = serialization.load_pem_public_key(keyring.public_key_pem(generated[kind]).encode())
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
    assert len(signature) == (256 if kind == "rsa2048" else 512)


def test_aes_gcm_round_trip(keyring: KeyRing, generated: dict[str, str]) -> None:
    name = generated["aes256"]
    nonce = os.urandom(12)
    plaintext = os.urandom(64)
    ciphertext = keyring.aes_gcm_encrypt(name, nonce, plaintext, b"aad-1")
    assert len(ciphertext) == len(plaintext) + 16
    assert ciphertext[:64] != plaintext
    assert keyring.aes_gcm_decrypt(name, nonce, ciphertext, b"aad-1") == plaintext
    with pytest.raises(errors.HsmError):
        keyring.aes_gcm_decrypt(name, nonce, ciphertext, b"aad-2")
    # The keyring still works after a failed tag.
    assert keyring.aes_gcm_decrypt(name, nonce, ciphertext, b"aad-1") == plaintext


# -- errors ----------------------------------------------------------------------------


def test_missing_module(hsm_config: HsmConfig, tmp_path: Path) -> None:
    config = dataclasses.replace(hsm_config, module_path=tmp_path / "nope.so")
    with pytest.raises(errors.ModuleLoadError, match="does not exist"):
        load_module(config)
    with pytest.raises(errors.ModuleLoadError, match="does not exist"):
        KeyRing.open(config, pin="irrelevant")


def test_module_that_is_not_pkcs11(hsm_config: HsmConfig, tmp_path: Path) -> None:
    text = tmp_path / "not-a-module.so"
    text.write_text("hello\n")
    with pytest.raises(errors.ModuleLoadError, match="not a usable PKCS#11 module"):
        load_module(dataclasses.replace(hsm_config, module_path=text))
    libz = Path("/lib/x86_64-linux-gnu/libz.so.1")
    if libz.exists():
        with pytest.raises(errors.ModuleLoadError, match="not a usable PKCS#11 module"):
            load_module(dataclasses.replace(hsm_config, module_path=libz))
    with pytest.raises(errors.ModuleLoadError, match="is not a file"):
        load_module(dataclasses.replace(hsm_config, module_path=tmp_path))


def test_bad_softhsm_conf(hsm_config: HsmConfig, user_pin: str, tmp_path: Path) -> None:
    before = os.environ.get("SOFTHSM2_CONF")
    missing = dataclasses.replace(hsm_config, softhsm_conf=tmp_path / "missing.conf")
    with pytest.raises(errors.SoftHsmConfError, match="does not exist"):
        HsmWorker(missing, user_pin)
    with pytest.raises(errors.SoftHsmConfError, match="does not exist"):
        load_module(missing)
    no_tokendir = tmp_path / "empty.conf"
    no_tokendir.write_text("log.level = ERROR\n")
    with pytest.raises(errors.SoftHsmConfError, match=r"no directories\.tokendir"):
        load_module(dataclasses.replace(hsm_config, softhsm_conf=no_tokendir))
    gone_dir = tmp_path / "gone.conf"
    gone_dir.write_text(f"directories.tokendir = {tmp_path / 'no-such-dir'}\n")
    with pytest.raises(errors.SoftHsmConfError, match="does not exist"):
        load_module(dataclasses.replace(hsm_config, softhsm_conf=gone_dir))
    if os.geteuid() != 0:  # root reads a 0000 file anyway
        unreadable = tmp_path / "unreadable.conf"
        unreadable.write_text("directories.tokendir = /tmp\n")
        unreadable.chmod(0)
        with pytest.raises(errors.SoftHsmConfError, match="not readable"):
            load_module(dataclasses.replace(hsm_config, softhsm_conf=unreadable))
    # A failed check never points the process at the bad file.
    assert os.environ.get("SOFTHSM2_CONF") == before


def _heal(keyring: KeyRing) -> None:
    """Make the shared worker notice a dead session with a raw (untranslated) job.

    Used after a test that deliberately breaks the process-wide module state.
    """
    keyring.worker.run(lambda conn: list(conn.session.get_objects({pkcs11.Attribute.LABEL: "-"})))


def test_token_not_found(hsm_config: HsmConfig, user_pin: str, keyring: KeyRing) -> None:
    config = dataclasses.replace(hsm_config, token_label="no-such-token")
    generation = keyring.worker.generation
    with pytest.raises(errors.TokenNotFound, match="no-such-token"):
        KeyRing.open(config, pin=user_pin)
    # A wrong label must not disturb a keyring that is already open: no reconnect needed.
    keyring.list()
    assert keyring.worker.generation == generation


@pytest.mark.usefixtures("logged_out")
def test_wrong_pin(hsm_config: HsmConfig) -> None:
    with pytest.raises(errors.PinIncorrect, match="rejected the PIN"):
        KeyRing.open(hsm_config, pin="wrong-pin")


def test_second_keyring_in_same_process(hsm_config: HsmConfig, user_pin: str, keyring: KeyRing):
    keyring.list()  # the shared keyring is logged in
    with KeyRing.open(hsm_config, pin=user_pin) as second:
        second.list()


def test_pin_locked_translation() -> None:
    # SoftHSM never locks a user PIN however many wrong PINs it sees, so the locked case
    # cannot be produced against the real token; check the translation as a unit.
    translated = translate(pkcs11.PinLocked(), "x")
    assert isinstance(translated, errors.PinLocked)
    assert "locked" in str(translated)
    assert str(translated).startswith("x:")


def test_unknown_label(keyring: KeyRing) -> None:
    name = label("missing")
    with pytest.raises(errors.KeyNotFound, match="no key labelled"):
        keyring.info(name)
    with pytest.raises(errors.KeyNotFound, match="no key labelled"):
        keyring.ecdsa_key(name)
    with pytest.raises(errors.KeyNotFound, match="no key labelled"):
        keyring.hmac_sha256(name, b"data")
    with pytest.raises(errors.KeyNotFound, match="no key labelled"):
        keyring.public_key_pem(name)


def test_wrong_key_type(keyring: KeyRing, generated: dict[str, str]) -> None:
    with pytest.raises(errors.WrongKeyType, match="not an EC signing key"):
        keyring.ecdsa_key(generated["aes256"])
    with pytest.raises(errors.WrongKeyType, match="not p256"):
        keyring.ecdsa_key(generated["secp256k1"], curve="p256")
    with pytest.raises(errors.WrongKeyType, match="not hmac"):
        keyring.hmac_sha256(generated["secp256k1"], b"data")
    with pytest.raises(errors.WrongKeyType, match="not rsa2048 or rsa4096"):
        keyring.rsa_sign_sha256(generated["p256"], b"data")
    with pytest.raises(errors.WrongKeyType, match="not aes256"):
        keyring.aes_gcm_encrypt(generated["rsa2048"], os.urandom(12), b"x", b"")
    with pytest.raises(errors.WrongKeyType, match="has no public key"):
        keyring.public_key_pem(generated["aes256"])


def test_unknown_kind(keyring: KeyRing, generated: dict[str, str]) -> None:
    with pytest.raises(errors.WrongKeyType, match="unknown key type 'ed25519'"):
        keyring.generate("ed25519", label("kind"))
    with pytest.raises(errors.WrongKeyType, match="imported, not generated"):
        keyring.generate("hmac", label("kind"))
    with pytest.raises(errors.WrongKeyType, match="unknown key type"):
        keyring.ecdsa_key(generated["secp256k1"], curve="p384")


@pytest.mark.parametrize("bad", ["", " edge", "x" * 65, "tab\there"])
def test_bad_label(keyring: KeyRing, bad: str) -> None:
    with pytest.raises(errors.HsmOperationError, match="bad key label"):
        keyring.generate("aes256", bad)


def test_empty_hmac_secret(keyring: KeyRing) -> None:
    with pytest.raises(errors.HsmOperationError, match="empty"):
        keyring.import_hmac_secret(label("empty"), b"")


# -- PIN resolution --------------------------------------------------------------------


@pytest.fixture
def clean_pin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_PIN", raising=False)
    monkeypatch.delenv("AIRLOCK_PIN_FILE", raising=False)


@pytest.mark.usefixtures("clean_pin_env")
class TestResolvePin:
    def test_airlock_pin_wins(self, tmp_path: Path) -> None:
        pin_file = tmp_path / "pin"
        pin_file.write_text("from-file\n")
        env = {"AIRLOCK_PIN": "from-env", "AIRLOCK_PIN_FILE": str(pin_file)}
        assert resolve_pin(f"file:{pin_file}", env=env) == "from-env"

    def test_pin_file_next_and_newline_stripped(self, tmp_path: Path) -> None:
        pin_file = tmp_path / "pin"
        pin_file.write_text("1234\n")
        other = tmp_path / "other"
        other.write_text("5678\n")
        env = {"AIRLOCK_PIN_FILE": str(pin_file)}
        assert resolve_pin(f"file:{other}", env=env) == "1234"

    def test_pin_source_file(self, tmp_path: Path) -> None:
        pin_file = tmp_path / "pin"
        pin_file.write_text("abcd\r\n")
        assert resolve_pin(f"file:{pin_file}", env={}) == "abcd"

    def test_pin_source_env(self) -> None:
        assert resolve_pin("env:MY_PIN", env={"MY_PIN": "9999"}) == "9999"
        with pytest.raises(errors.PinError, match="MY_PIN, which is not set"):
            resolve_pin("env:MY_PIN", env={})

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(errors.PinError, match="does not exist"):
            resolve_pin(f"file:{tmp_path / 'absent'}", env={})
        with pytest.raises(errors.PinError, match="does not exist"):
            resolve_pin(None, env={"AIRLOCK_PIN_FILE": str(tmp_path / "absent")})

    def test_empty_file(self, tmp_path: Path) -> None:
        pin_file = tmp_path / "pin"
        pin_file.write_text("\n")
        with pytest.raises(errors.PinError, match="is empty"):
            resolve_pin(f"file:{pin_file}", env={})

    def test_multi_line_file(self, tmp_path: Path) -> None:
        pin_file = tmp_path / "pin"
        pin_file.write_text("1234\n5678\n")
        with pytest.raises(errors.PinError, match="more than one line"):
            resolve_pin(f"file:{pin_file}", env={})

    def test_no_source_and_no_prompt(self) -> None:
        with pytest.raises(errors.PinError, match="AIRLOCK_PIN_FILE"):
            resolve_pin(None, env={}, prompt=None)

    def test_prompt_used_last(self) -> None:
        assert resolve_pin(None, env={}, prompt=lambda message: "typed") == "typed"
        with pytest.raises(errors.PinError, match="no PIN entered"):
            resolve_pin(None, env={}, prompt=lambda message: "")

    def test_unknown_source(self) -> None:
        with pytest.raises(errors.PinError, match="unknown pin_source"):
            resolve_pin("vault:secret", env={})


# -- pkcs11: URIs ----------------------------------------------------------------------


def test_parse_full_uri() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Token;object=bybit-key;type=private"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/airlock/pin"
    )
    assert uri == Pkcs11Uri(
        token="My Token",
        object="bybit-key",
        type="private",
        module_path="/usr/lib/softhsm/libsofthsm2.so",
        pin_source="file:/etc/airlock/pin",
    )


def test_uri_refuses_pin_value() -> None:
    with pytest.raises(ConfigError, match="pin-value is refused"):
        parse_pkcs11_uri("pkcs11:token=airlock?pin-value=1234")


@pytest.mark.parametrize("bad", ["https://example.com/token", "token=airlock", "pkcs12:token=x"])
def test_uri_refuses_other_schemes(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a pkcs11: URI"):
        parse_pkcs11_uri(bad)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("pkcs11:token=a;token=b", "given twice"),
        ("pkcs11:colour=blue", "unknown path attribute"),
        ("pkcs11:token", "has no '='"),
        ("pkcs11:type=banana", "unknown object type"),
        ("pkcs11:token=a?module-name=softhsm2", "give module-path"),
    ],
)
def test_uri_refuses_ambiguity(uri: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_pkcs11_uri(uri)


def test_load_config_uses_uri_from_env(tmp_path: Path) -> None:
    env = {
        "AIRLOCK_HOME": str(tmp_path),
        "AIRLOCK_PKCS11_URI": (
            f"pkcs11:token=prod-hsm?module-path={SOFTHSM}&pin-source=env:PROD_PIN"
        ),
    }
    hsm = load_config(env=env).hsm
    assert hsm.module_path == SOFTHSM
    assert hsm.token_label == "prod-hsm"
    assert hsm.pin_source == "env:PROD_PIN"
    assert not hsm.embedded


def test_load_config_uri_conflict(tmp_path: Path) -> None:
    env = {
        "AIRLOCK_HOME": str(tmp_path),
        "AIRLOCK_PKCS11_URI": f"pkcs11:token=prod-hsm?module-path={SOFTHSM}",
        "AIRLOCK_TOKEN_LABEL": "other",
    }
    with pytest.raises(ConfigError, match="disagree"):
        load_config(env=env)


# -- concurrency and reconnect ------------------------------------------------------------


def test_threads_sign_at_once(eth_key: HsmEcdsaKey) -> None:
    threads, per_thread = 8, 50
    barrier = threading.Barrier(threads)
    results: dict[int, list[tuple[bytes, bytes]]] = {}
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            out = []
            for i in range(per_thread):
                digest = digest_of(f"thread-{n}-{i}")
                out.append((digest, eth_key.sign_digest(digest)))
            results[n] = out
        except BaseException as exc:  # reported below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(results) == list(range(threads))
    for out in results.values():
        assert len(out) == per_thread
        for digest, signature in out:
            verify_ecdsa(eth_key.public_key, "secp256k1", digest, signature)


async def test_asyncio_tasks_sign_at_once(eth_key: HsmEcdsaKey) -> None:
    digests = [digest_of(f"task-{i}") for i in range(100)]
    signatures = await asyncio.gather(*(eth_key.sign_digest_async(d) for d in digests))
    assert len(signatures) == 100
    for digest, signature in zip(digests, signatures, strict=True):
        verify_ecdsa(eth_key.public_key, "secp256k1", digest, signature)


def test_worker_reconnects_raw_job_after_session_loss(keyring: KeyRing) -> None:
    generation = keyring.worker.generation
    keyring.worker.run(lambda conn: conn.session.close())
    seen = keyring.worker.run(lambda conn: (conn.generation, len(list(conn.session.get_objects()))))
    assert seen[0] == generation + 1
    assert keyring.worker.generation == generation + 1


def test_reconnects_after_session_loss(keyring: KeyRing, eth_key: HsmEcdsaKey) -> None:
    eth_key.sign_digest(digest_of("warm"))  # caches the key handle on this session
    generation = keyring.worker.generation
    keyring.worker.run(lambda conn: conn.session.close())
    try:
        digest = digest_of("after-reconnect")
        signature = eth_key.sign_digest(digest)
        verify_ecdsa(eth_key.public_key, "secp256k1", digest, signature)
        assert keyring.worker.generation == generation + 1
        # And the new session keeps working without a further reconnect.
        eth_key.sign_digest(digest)
        assert keyring.worker.generation == generation + 1
    finally:
        _heal(keyring)
