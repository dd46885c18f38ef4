"""What the tests share, one kit a job; a test module imports these (and conftest fixtures),
never another test module.

- ``anvil``: how the ``anvil`` / ``module_anvil`` fixtures of tests/conftest.py start the
  local chain (fresh per test, or one per module with ``ANVIL_PER_MODULE = True``).
- ``api``: the public library's tests: a config whose venue is down, valid transaction
  and order arguments, a snapshot for all-or-nothing checks.
- ``browser``: Debian's chromium, headless, over the DevTools protocol (``browser_or_skip``,
  ``Page.wait_for``, screenshots into ``artifacts_dir()``; skipped unless installed or required).
- ``broadcast``: funded HSM senders, queued transfers, relays, the fast broadcaster
  config, and checks against the chain.
- ``bybit``: Bybit keys in the HSM, the simulator, fast settings, queued orders, the
  airlock.toml of a broadcaster draining to the simulator.
- ``cli``: the CLI as a subprocess with a clean environment (``run``, ``airlock`` with the
  PIN file, ``command_line``), and the broadcaster service as a process.
- ``clocks``: :class:`~tests.kits.clocks.FakeClock`, the one fake ``clock_ms``.
- ``fuzz``: fuzz budgets, the hang guard, and nasty inputs (numbers, JSON, bodies).
- ``jsonrpc``: JSON-RPC over plain urllib, to see what a node or proxy puts on the wire.
- ``labels``: key labels that never collide on the shared token.
- ``postgres``: the private PostgreSQL of the ``pg_cluster`` / ``pg_url`` fixtures (one
  cluster per worker, a fresh database per test; skipped unless installed or required).
- ``queue``: a valid transfer (``FIELDS``) and ``queue_tx`` to queue it.
- ``waiting``: bounded polls (``wait_until``), never a bare sleep.
"""
