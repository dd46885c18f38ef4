"""The seeded chaos suite: combined faults against the real broadcaster, with invariants.

One *scenario* is one seed: ``random.Random(seed)`` draws a few HSM EVM senders with a few
transfers each (three-level fee ladders with pre-signed cancels), a few Bybit orders, and
a fault plan over a short timeline: relay links flapping, slow links, relays answering
garbage, HTTP errors or flakily, a *lying* relay (fault proxy mode ``lie``), ``kill -9`` of
the broadcaster process and a restart, the HSM refusing to sign for a while, the Bybit
simulator's clock skewed and jumping, venue faults (a lost answer after accept, retCode
10006/10016, a delay), the venue link flapping, operator cancels, and anvil reorgs of
depth 1-3 under confirmed items. Bybit's private stream is on, with its timers scaled
down, under faults of its own (drawn from a generator of their own, so older seeds keep
their scenario): connections dropped, streams silent past the stale bound, messages lost
in a gap, executions delivered twice; and, in the seeds that send orders over the trade
stream (``send_over = "ws"``), trade replies lost after the op ran.

One module per job, in the order a run meets them:

- :mod:`~airlock.sim.chaos.plan`: a seed's plan, pure data drawn in a fixed order;
- :mod:`~airlock.sim.chaos.rig`: what a whole run shares (one token, one anvil, the keys);
- :mod:`~airlock.sim.chaos.netns`: rpc-a over a veth pair in a network namespace (root);
- :mod:`~airlock.sim.chaos.scenario`: one seed's run (queue, start, timeline, stop,
  settle), and :func:`~airlock.sim.chaos.scenario.run_seeds` for many;
- :mod:`~airlock.sim.chaos.outage`: ``serve``, the CLI's service with an outage keyring;
- :mod:`~airlock.sim.chaos.invariants`: what must hold after every scenario;
- :mod:`~airlock.sim.chaos.accounts`: the store's positions and balances against the
  simulator's, and what the venue's streams saw;
- :mod:`~airlock.sim.chaos.report`: the outcomes, the summary and docs/reliability.md;
- ``__main__``: the command line::

    python -m airlock.sim.chaos run --seeds 1-200 [--json] [--report docs/reliability.md]
    python -m airlock.sim.chaos run --seeds 137          # replay one seed
    python -m airlock.sim.chaos plan --seeds 137         # the plan only, nothing runs
    python -m airlock.sim.chaos serve --config F --hsm-outage START_S,DURATION_S

This file imports nothing: the children the suite starts (``serve``, and ``forward``
inside a namespace) load only the modules they run.
"""
