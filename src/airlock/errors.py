"""The exception hierarchy every room raises from.

Callers catch :class:`AirlockError` at the edge (the CLI turns it into a message on
stderr and a non-zero exit; the local API into a problem document). Each subclass says
*what kind* of thing went wrong; the message says what to do about it. The whole tree,
with the room that raises each branch::

    AirlockError
    ├── InvalidInput (ValueError)        bad input at a boundary; .field, .index
    │   ├── InvalidTransaction           signer/evm_fields: a transaction field
    │   ├── OrderRefused                 queue/bybit: the outage policy said no; .rule
    │   └── (also) IdempotencyConflict, ItemNotFound, NonceConflict, NothingToCancel
    ├── ConfigError                      config/: airlock.toml or the environment
    ├── HsmError                         hsm/errors: module, token, PIN, keys, operations
    │   ├── ModuleLoadError, SoftHsmConfError, TokenNotFound, TokenUnavailable
    │   ├── PinError ── PinIncorrect, PinLocked
    │   └── KeyNotFound, KeyExists, WrongKeyType, HsmOperationError
    ├── SignatureError                   signer/evm: a signature that does not check out
    ├── CanonicalError (ValueError)      encoding/canonical: no canonical JSON form
    ├── QueueError                       queue/errors: the store
    │   ├── SchemaTooNew, StoreUnavailable, KekError, PayloadTampered, StaleItems
    │   ├── IllegalTransition ── NothingToCancel
    │   ├── IdempotencyConflict, ItemNotFound, NonceConflict   (also InvalidInput)
    │   └── AuditIntegrityError          the stored log no longer matches what was signed
    ├── AuditError                       audit/errors: an export that does not verify
    │   └── CheckpointError, ManifestError, ContentError, EvmCheckError,
    │       OrderCheckError, ProofError, InclusionError, VerifyFailure
    ├── RelayError                       relays/errors: the network
    │   ├── TransportError               no usable answer (timeouts, refused, garbage)
    │   │   ├── HttpError ── ConnectError (ConnectTimeout), ReadTimeout,
    │   │   │                ConnectionLost, BodyTooLarge
    │   │   └── RelayTransportError, BybitTransportError
    │   ├── RejectedError                a well-formed "no": RelayRpcError, BybitApiError,
    │   │                                BybitAuthError
    │   ├── BybitError                   the Bybit client's family (three of the above)
    │   └── RpcError                     the blocking helper of operator commands
    ├── ServiceLocked                    broadcaster/lock: another broadcaster runs
    ├── ApiUnavailable                   api/serve: the local API's socket is taken
    ├── WaitTimeout (TimeoutError), ItemEnded      api/waiting: Airlock.wait
    └── AnvilError, DemoFailed, VenueRefusal       sim/: the drills' stand-ins
"""


class AirlockError(Exception):
    """Base class of every error airlock raises on purpose."""


class InvalidInput(AirlockError, ValueError):
    """Input from outside (CLI, config, API caller) failed validation at the boundary.

    ``field`` names the input that is wrong when one field is (the local API answers 400
    naming it); None when the problem is the combination, or not one field's. ``index``
    is the element of a batch it is about, when it is about one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index: int | None = None


class ConfigError(AirlockError):
    """The configuration is missing, unreadable or inconsistent."""
