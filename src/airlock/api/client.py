"""The library: :class:`Airlock`, the front door of trading bots and of the CLI.

One object holds the HSM session and the queue. It queues EVM transactions (fee ladder
and cancel pre-signed in the HSM, nonce allocated in the same durable transaction) and
Bybit orders (the outage policy decides, the HSM signs the intent), looks items up,
cancels them, and waits for them. Nothing here touches the network except the optional
venue probe of ``queue_order(venue="auto")``; the broadcaster service sends.

Errors are the :mod:`airlock.errors` tree: :class:`~airlock.errors.InvalidInput` (its
``field`` names the input), :class:`OrderRefused` (its ``rule`` names the policy rule),
:class:`IdempotencyConflict` (the key names other content), :class:`ItemNotFound`,
:class:`WaitTimeout` and :class:`ItemEnded`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.api import checks, orders, txparams, waiting
from airlock.api.records import CancelAction, Cancelled, Event, Item, Queued
from airlock.api.waiting import WaitTimeout
from airlock.config import AirlockConfig, BybitConfig, load_config
from airlock.errors import ConfigError, InvalidInput
from airlock.hsm import errors as hsm_errors
from airlock.queue.account import RESUME_NOTE
from airlock.queue.errors import ItemNotFound
from airlock.queue.items import Kind
from airlock.queue.payloads import SignedIntent
from airlock.queue.states import State
from airlock.queue.store import Builder, Draft, Enqueued, Store

if TYPE_CHECKING:
    from decimal import Decimal

    from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
    from airlock.hsm.pin import Prompt
    from airlock.queue.account import Balance, Position
    from airlock.queue.bybit import IntentKey
    from airlock.queue.nonces import SyncResult
    from airlock.queue.policy import Decision, OrderRequest


@dataclass(frozen=True)
class _Decided:
    """One order of a batch once the policy has decided, before anything is signed."""

    asked: OrderRequest
    request: OrderRequest
    strategy: str
    decision: Decision
    warnings: tuple[str, ...]


class Airlock:
    """Queue, look up, cancel and wait for items; see the module doc.

    Open with :meth:`open` (the configuration from ``airlock.toml`` and the environment,
    the PIN from ``AIRLOCK_PIN_FILE``, ``AIRLOCK_PIN``, the configured ``pin_source`` or
    ``prompt``), use as a context manager, and share one per process: the HSM session and
    the queue are safe to use from several threads. The service builds one over its own
    session and queue (:meth:`over`) for its local HTTP API.
    """

    def __init__(
        self,
        config: AirlockConfig,
        keyring: KeyRing,
        store: Store,
        *,
        venue_view: orders.ReachabilityView | None = None,
        owns: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.store = store
        self._owns = owns
        self._monotonic = monotonic
        self._sleep = sleep
        self._venue_view = venue_view
        self._signing_keys: dict[str, HsmEcdsaKey] = {}
        self._intent_key: IntentKey | None = None

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: str | Path | AirlockConfig | None = None,
        *,
        pin: str | None = None,
        prompt: Prompt | None = None,
    ) -> Airlock:
        """Open the HSM session and the queue that ``config`` names (default: the
        ``airlock.toml`` of ``$AIRLOCK_HOME``, or ``~/.airlock``)."""
        from airlock.hsm.keyring import KeyRing
        from airlock.queue.kek import HsmKek

        settings = config if isinstance(config, AirlockConfig) else load_config(_path(config))
        ring = KeyRing.open(settings.hsm, pin=pin, prompt=prompt)
        try:
            kek = HsmKek(ring, settings.queue.kek_label)
            store = Store.open(
                settings.queue.location, kek, rotate_after=settings.queue.rotate_after
            )
        except BaseException:
            ring.close()
            raise
        return cls(settings, ring, store, owns=True)

    @classmethod
    def over(
        cls,
        config: AirlockConfig,
        keyring: KeyRing,
        store: Store,
        venue_view: orders.ReachabilityView | None = None,
    ) -> Airlock:
        """One over a session and a queue someone else owns (and closes): the service's."""
        return cls(config, keyring, store, venue_view=venue_view)

    def close(self, *, checkpoint: bool = True) -> None:
        """Sign an audit checkpoint if one is due, then close what :meth:`open` opened."""
        try:
            if checkpoint:
                self.checkpoint_if_due()
        finally:
            if self._owns:
                self.store.close()
                self.keyring.close()

    def __enter__(self) -> Airlock:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(checkpoint=kind is None)  # a failing HSM must not hide the first error

    def checkpoint_if_due(self) -> None:
        """Sign a checkpoint of the audit log when ``[audit]`` says one is due."""
        from airlock.audit.log import AuditKey, checkpoint_if_due

        audit = self.config.audit
        checkpoint_if_due(
            self.store,
            AuditKey(self.keyring, audit.key_label),
            max_entries=audit.checkpoint_every,
            max_age_ms=audit.checkpoint_seconds * 1000,
        )

    # -- EVM transactions ---------------------------------------------------------------

    def queue_transaction(self, tx: Mapping[str, Any] | None = None, /, **options: Any) -> Queued:
        """Sign a transaction (and its fee ladder and cancel) in the HSM and queue it.

        ``tx`` is an optional web3.py ``TxParams`` dict; keywords give the rest (see
        :func:`prepare_transaction`): ``key`` (the HSM label, required), ``chain_id``,
        ``to``, ``value``, ``gas``, ``data``, ``max_fee`` and ``priority_fee`` (type 2) or
        ``gas_price`` (type 0/1), ``tx_type``, ``access_list``, ``nonce`` (default:
        allocated), ``ladder`` (levels, default 1), ``bump_pct``, ``max_fee_cap``,
        ``with_cancel``, ``ttl`` (seconds), ``idempotency_key``, ``strategy``, ``private``,
        ``priority`` (``"cancel"``, ``"risk-reducing"``, ``"normal"``).

        Durable when it returns. The same ``idempotency_key`` again answers with the same
        item (``replayed``); with other content it raises :class:`IdempotencyConflict`.
        """
        draft, build = self._transaction(tx, options)
        return self._queued_transaction(self.store.items.enqueue(draft, build), draft)

    def queue_transactions(self, transactions: Iterable[Mapping[str, Any]]) -> list[Queued]:
        """Queue several transactions in one durable transaction: all of them or none.

        Each element holds :meth:`queue_transaction`'s keywords (a web3 dict under
        ``"tx"``). A bad element raises with ``index`` set on the error; nothing is stored.
        """
        prepared = []
        for index, options in enumerate(transactions):
            with checks.at_index(index):
                if not isinstance(options, Mapping):
                    raise InvalidInput(f"item {index} is not an object of keyword arguments")
                rest = dict(options)
                prepared.append(self._transaction(rest.pop("tx", None), rest))
        done = self._enqueue_many(prepared)
        return [self._queued_transaction(d, p[0]) for d, p in zip(done, prepared, strict=True)]

    def _transaction(
        self, tx: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> tuple[Draft, Builder]:
        from airlock.queue.evm import prepare_transaction
        from airlock.signer.ladder import LadderSpec

        merged = txparams.merge(tx, options)
        unknown = sorted(set(merged) - checks.TX_OPTIONS)
        if unknown:
            raise InvalidInput(
                f"unknown transaction argument(s): {', '.join(unknown)}", field=unknown[0]
            )
        label = merged.get("key")
        if not isinstance(label, str) or not label:
            raise InvalidInput("key (the HSM label of the sending key) is required", field="key")
        signing_key = self._signing_key(label)
        checks.check_from(tx, signing_key)
        evm = self.config.evm
        cap = txparams.whole_number("max_fee_cap", merged.get("max_fee_cap"))
        spec = checks.field_errors(
            lambda: LadderSpec(
                levels=merged.get("ladder", 1),
                bump_pct=merged.get("bump_pct", evm.bump_pct),  # 0 is refused, not a default
                max_fee_cap=evm.max_fee_cap if cap is None else cap,
                with_cancel=checks.flag("with_cancel", merged.get("with_cancel", False)),
            )
        )
        return checks.field_errors(
            lambda: prepare_transaction(
                signing_key,
                txparams.intent_arguments(merged),
                nonce=merged.get("nonce"),
                ladder=spec,
                ttl_s=merged.get("ttl"),
                idempotency_key=merged.get("idempotency_key"),
                strategy=merged.get("strategy", "default"),
                private=checks.flag("private", merged.get("private", False)),
                priority=txparams.priority(merged.get("priority", "normal")),
            )
        )

    def _queued_transaction(self, done: Enqueued, draft: Draft) -> Queued:
        warnings = list(done.warnings)
        if done.existing:
            warnings.append(f"idempotency key already queued as {done.item.id}; nothing new stored")
        else:
            wanted = draft.request["ladder"]["levels"]
            steps = sum(1 for v in done.variants if v.kind == "step")
            if steps < wanted:
                warnings.append(f"the fee cap left room for {steps} of {wanted} ladder levels")
        item = Item.of(done.item, done.variants)  # what was just stored: no re-read
        return Queued.of_item(item, replayed=done.existing, warnings=tuple(warnings))

    def sync_nonces(
        self, rpc_url: str, *, keys: Iterable[str] = (), timeout: float = 10.0
    ) -> list[SyncResult]:
        """Raise the local nonce counters to a node's pending nonce (never lower them): every
        sender the queue knows on the node's chain, and the addresses of ``keys``. Each
        result says whether the node is behind (not lowered) and which queued items hold
        nonces the chain has already used."""
        from airlock.relays import rpc  # urllib: one blocking call per sender

        chain_id = rpc.quantity(rpc.call(rpc_url, "eth_chainId", [], timeout), "eth_chainId")
        senders = set(self.store.nonces.senders(chain_id)) | {self.address(k) for k in keys}
        if not senders:
            raise InvalidInput(f"no senders known on chain {chain_id}; name a key", field="keys")
        readings = {
            sender: rpc.quantity(
                rpc.call(rpc_url, "eth_getTransactionCount", [sender, "pending"], timeout),
                "eth_getTransactionCount",
            )
            for sender in sorted(senders)
        }
        return self.store.nonces.sync(chain_id, readings)

    def address(self, key: str) -> str:
        """The checksum address of the HSM's secp256k1 key ``key``: the sender it signs as."""
        from airlock.signer.evm import address_from_public_key

        return address_from_public_key(self._signing_key(key).public_key)

    def _signing_key(self, label: str) -> HsmEcdsaKey:
        key = self._signing_keys.get(label)
        if key is None:
            try:
                key = self.keyring.ecdsa_key(label, curve="secp256k1")
            except (hsm_errors.KeyNotFound, hsm_errors.WrongKeyType) as exc:
                raise InvalidInput(f"{exc}: key must name a secp256k1 key", field="key") from exc
            self._signing_keys[label] = key
        return key

    # -- Bybit orders -------------------------------------------------------------------

    def queue_order(self, /, **options: Any) -> Queued:
        """Queue a Bybit order under the outage policy; the broadcaster sends it.

        Keywords: ``symbol``, ``side`` (``Buy``/``Sell``), ``order_type``
        (``Limit``/``Market``), ``qty``, ``price`` (Limit), ``tif``, ``ttl`` (seconds),
        ``ref_price`` and ``slippage_bps`` (a Market order that may have to wait),
        ``idempotency_key`` (default: a new one), ``category`` (default: ``[bybit]``'s),
        ``reduce_only``, ``strategy``, ``venue`` (``auto`` asks whether the venue is
        reachable; ``up``/``down`` force the answer). Raises :class:`OrderRefused` naming
        the rule when the policy refuses; the refusal is audited and nothing is queued.
        """
        settings = self.bybit_config
        reach = orders.reachability(options.pop("venue", "auto"), self._view(settings))
        return self._queue_orders(settings, reach, [options], batched=False)[0]

    def queue_orders(
        self, batch: Iterable[Mapping[str, Any]], *, venue: str = "auto"
    ) -> list[Queued]:
        """Queue several orders in one durable transaction: all of them or none. One
        reachability answer serves the whole batch; a refusal of any refuses all (with
        ``index`` set on the error)."""
        settings = self.bybit_config
        reach = orders.reachability(venue, self._view(settings))
        elements = []
        for index, options in enumerate(batch):
            with checks.at_index(index):
                if not isinstance(options, Mapping):
                    raise InvalidInput(f"item {index} is not an object of keyword arguments")
                if "venue" in options:
                    raise InvalidInput("venue is given once for the whole batch", field="venue")
                elements.append(dict(options))
        return self._queue_orders(settings, reach, elements, batched=True)

    def _queue_orders(
        self,
        settings: BybitConfig,
        reach: orders.Reachability,
        batch: list[dict[str, Any]],
        *,
        batched: bool,
    ) -> list[Queued]:
        """Decide every order, sign every queued intent in one HSM job, store them all in
        one durable transaction (one order: its own)."""
        from airlock.queue.bybit import prepare_order
        from airlock.signer.bybit import start_intent_signatures

        key, created = self._order_key(settings)
        notes = [reach.note] + ([created] if created else [])
        decided = [
            self._decide_order(settings, reach, options, index if batched else None)
            for index, options in enumerate(batch)
        ]
        intents = [d.decision.intent for d in decided if d.decision.intent is not None]
        signatures = iter(start_intent_signatures(key.key, intents))
        prepared = []
        for index, d in enumerate(decided):
            with checks.at_index(index if batched else None), checks.order_fields():
                prepared.append(
                    prepare_order(
                        self.store,
                        d.request,
                        d.decision,
                        key,
                        account=settings.account,
                        strategy=d.strategy,
                        asked=d.asked,
                        signature=next(signatures) if d.decision.intent is not None else None,
                    )
                )
        done = self._enqueue_many(prepared)
        return [
            self._queued_order(e, p[0], d.decision, reach, tuple(notes), d.warnings)
            for e, p, d in zip(done, prepared, decided, strict=True)
        ]

    def _decide_order(
        self,
        settings: BybitConfig,
        reach: orders.Reachability,
        options: dict[str, Any],
        index: int | None,
    ) -> _Decided:
        """One order's request, the slow-link rule and the policy's decision (nothing
        stored, nothing signed yet)."""
        from airlock.queue.evm import check_strategy
        from airlock.queue.policy import decide_order

        with checks.at_index(index), checks.order_fields():
            asked = request = self._order_request(settings, options)
            strategy = check_strategy(options.get("strategy", "default"))
            warning = None
            # A retry answers with the stored order whatever the link is now: the rule
            # rewrites (and audits) new orders only.
            if (
                reach.reachable
                and reach.latency_ms is not None
                and self.store.items.by_key(request.idempotency_key) is None
            ):
                slow = orders.slow_link_rule(
                    self.store, request, reach.latency_ms, self.config.failover
                )
                request, warning = slow.request, slow.warning
            decision = decide_order(
                request,
                venue_reachable=reach.reachable,
                config=settings.policy,
                position=self._position(settings, request),
            )
        return _Decided(asked, request, strategy, decision, (warning,) if warning else ())

    def _position(self, settings: BybitConfig, request: OrderRequest) -> Decimal | None:
        """The instrument's reconciled position, signed (None: never reconciled)."""
        from airlock.queue.account import signed_size

        held = self.store.account.position(settings.account, request.category, request.symbol)
        return signed_size(held)

    def _order_request(self, settings: BybitConfig, options: Mapping[str, Any]) -> OrderRequest:
        from airlock.queue.policy import OrderRequest

        unknown = sorted(set(options) - checks.ORDER_OPTIONS)
        if unknown:
            raise InvalidInput(f"unknown order argument(s): {', '.join(unknown)}", field=unknown[0])
        for required in ("symbol", "side", "order_type", "qty"):
            if options.get(required) is None:
                raise InvalidInput(f"{required} is required", field=required)
        key = options.get("idempotency_key")
        if key is None:
            key = f"auto-{uuid.uuid4().hex}"
        elif not isinstance(key, str):
            raise InvalidInput(
                f"idempotency_key must be a string, got {type(key).__name__}",
                field="idempotency_key",
            )
        return OrderRequest(
            category=options.get("category") or settings.category,
            symbol=options["symbol"],
            side=options["side"],
            order_type=options["order_type"],
            qty=options["qty"],
            idempotency_key=key,
            price=options.get("price"),
            tif=options.get("tif"),
            ttl_s=options.get("ttl"),
            ref_price=options.get("ref_price"),
            slippage_bps=options.get("slippage_bps"),
            reduce_only=checks.flag("reduce_only", options.get("reduce_only", False)),
        )

    def _queued_order(
        self,
        done: Enqueued,
        draft: Draft,
        decision: Decision,
        reach: orders.Reachability,
        notes: tuple[str, ...],
        warnings: tuple[str, ...],
    ) -> Queued:
        """The answer for one order. A new one is described from what was just stored (no
        decryption, no re-read); a replay from the stored payload: the decision it was
        queued under, not the one the policy would take now."""
        from airlock.queue.venue import VenueRef
        from airlock.signer.bybit import intent_dict

        if done.existing:
            stored = SignedIntent.of(self.store.items.payload(done.item.id))
            warnings += (
                f"idempotency key already queued as {done.item.id} (now {done.item.state}); "
                "nothing new stored",
            )
            item, rule, message = self.item(done.item.id), stored.policy.rule, stored.policy.message
            intent = stored.intent
        else:
            assert draft.venue is not None and decision.intent is not None
            v = draft.venue
            ref = VenueRef(done.item.id, v.action, v.category, v.symbol, v.link_id)
            item, rule, message = Item.of(done.item, venue=ref), decision.rule, decision.message
            intent = intent_dict(decision.intent)
        return Queued.of_item(
            item,
            replayed=done.existing,
            rule=rule,
            message=message,
            warnings=warnings,
            notes=notes,
            venue_reachable=reach.reachable,
            intent=intent,
        )

    def _order_key(self, settings: BybitConfig) -> tuple[IntentKey, str | None]:
        if self._intent_key is not None:
            return self._intent_key, None
        key, created = orders.intent_key(self.keyring, settings.intent_key_label)
        self._intent_key = key
        return key, created

    @property
    def bybit_config(self) -> BybitConfig:
        """The ``[bybit]`` section; :class:`ConfigError` naming the file when it is absent."""
        settings = self.config.bybit
        if settings is None:
            where = self.config.source or self.config.home / "airlock.toml"
            raise ConfigError(
                f"no [bybit] section in {where}: add one with base_url, api_key and "
                "secret_label (or rsa_key_label) to queue Bybit orders (see "
                "docs/configuration.md)"
            )
        return settings

    def _view(self, settings: BybitConfig) -> orders.ReachabilityView:
        if self._venue_view is None:
            self._venue_view = orders.VenueProbe(settings)
        return self._venue_view

    # -- both ---------------------------------------------------------------------------

    def _enqueue_many(self, prepared: list[tuple[Draft, Builder]]) -> list[Enqueued]:
        if len(prepared) == 1:
            return [self.store.items.enqueue(*prepared[0])]
        return self.store.items.enqueue_many(prepared)

    def cancel(self, item_id: str) -> Cancelled:
        """Cancel an item, locally when it never left.

        A Bybit order already at the venue gets a signed cancel, queued ahead of every
        new order; an EVM transaction whose nonce later ones need is replaced by its
        pre-signed cancel. Anything already sent otherwise cannot be cancelled here.
        """
        from airlock.queue.bybit import cancel_order

        item = self.store.items.get(item_id)
        if item.kind is Kind.BYBIT_ORDER:
            key, _ = self._order_key(self.bybit_config)
            outcome = cancel_order(self.store, item, key)
            cancel_item = None if outcome.cancel is None else self.item(outcome.cancel.item.id)
            return Cancelled(
                action="local" if outcome.action == "local" else "queued",
                message=outcome.message,
                item=self.item(outcome.order.id),
                rule=outcome.rule,
                cancel_item=cancel_item,
                replayed=outcome.cancel is not None and outcome.cancel.existing,
            )
        if item.kind is Kind.BYBIT_CANCEL:
            raise InvalidInput(f"item {item_id} is itself a cancel; it cannot be cancelled")
        result = self.store.items.cancel(item_id)
        action: CancelAction = "presigned" if result.action == "cancel_requested" else "local"
        return Cancelled(action=action, message=result.message, item=self.item(item_id))

    # -- reading ------------------------------------------------------------------------

    def item(self, item_id: str) -> Item:
        """The item as the queue knows it now (raises :class:`ItemNotFound`)."""
        stored = self.store.items.get(item_id)
        variants = self.store.items.variants(item_id) if stored.kind is Kind.EVM_TX else None
        venue = fills = None
        if stored.kind is not Kind.EVM_TX:
            pair = self.store.venue.of_item(item_id)
            venue = None if pair is None else pair[1]
            fills = self.store.venue.fills(item_id)
        return Item.of(stored, variants, venue, fills)

    def items(
        self,
        state: str | Collection[str] | None = None,
        kind: str | Collection[str] | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Item]:
        """Items in creation order (or newest first), filtered by state(s) and kind(s);
        ``after`` an item id continues a listing (ids sort by creation)."""
        states = [State(s) for s in checks.names("state", state, checks.STATE_NAMES)] or None
        kinds = [Kind(k) for k in checks.names("kind", kind, checks.KIND_NAMES)] or None
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidInput(f"limit must be a whole number >= 1, got {limit!r}", field="limit")
        found = self.store.items.select(
            states, limit, kinds=kinds, after=after, newest_first=newest_first
        )
        return [self.item(i.id) for i in found]

    def inspect(self, item_id: str) -> dict[str, Any]:
        """Everything the queue holds of one item, decrypted through the HSM: metadata,
        payload (the request, the signed intent), signed variants with their raw bytes and
        the history, as ``airlock queue export`` writes it. ``"error"`` is set instead of the
        payload when it fails authentication (the item is then quarantined)."""
        return self.store.items.export_one(self.store.items.get(item_id))

    def order(self, order_link_id: str) -> Item:
        """The Bybit order queued under this orderLinkId (raises :class:`ItemNotFound`)."""
        pair = self.store.venue.order_by_link(order_link_id)
        if pair is None:
            raise ItemNotFound(f"no Bybit order with orderLinkId {order_link_id!r} in the queue")
        return self.item(pair[0].id)

    def positions(self, account: str | None = None) -> list[Position]:
        """The account's positions as the private stream and REST reconcile last saw
        them (each with the venue's time of that state and where it came from)."""
        return self.store.account.positions(account)

    def balances(self, account: str | None = None) -> list[Balance]:
        """The account's wallet coins, as last seen (like :meth:`positions`)."""
        return self.store.account.balances(account)

    def resume_bybit(self) -> None:
        """Tell the service the Bybit key was fixed: a stream stopped by a refused key
        connects again at its next pass (``airlock bybit resume``)."""
        self.store.notes.set_many({RESUME_NOTE: str(self.store.now_ms())})

    def events(self, after: int = 0, limit: int = 1000, item_id: str | None = None) -> list[Event]:
        """Events numbered above ``after`` (oldest first): creations, state changes, fills."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInput(f"after must be an event id >= 0, got {after!r}", field="after")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be 1..10000, got {limit!r}", field="limit")
        return [Event.of(row) for row in self.store.events.after(after, limit, item_id)]

    def wait(
        self,
        item_id: str,
        until: str | Collection[str] = ("confirmed",),
        timeout: float = waiting.DEFAULT_WAIT_S,
    ) -> Item:
        """Block until the item is in one of the ``until`` states; return it.

        Raises :class:`ItemEnded` as soon as it reaches a final state not in ``until``
        (no point waiting any longer) and :class:`WaitTimeout` after ``timeout`` seconds.
        """
        wanted = waiting.wanted_states(until)
        deadline = self._monotonic() + timeout
        while True:
            item = self.item(item_id)
            verdict = waiting.judge(item, wanted)
            if verdict is not None:
                return verdict
            if self._monotonic() >= deadline:
                raise WaitTimeout(
                    f"item {item_id} still {item.state} after {timeout:g} s "
                    f"(waiting for {', '.join(sorted(wanted))})",
                    item,
                )
            self._sleep(waiting.WAIT_POLL_S)


def _path(config: str | Path | None) -> Path | None:
    return None if config is None else Path(config)
