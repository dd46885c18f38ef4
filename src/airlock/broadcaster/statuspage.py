"""The service's live status page: ``airlock status`` as one HTML5 document.

Pure: :func:`render_page` takes the data of :mod:`airlock.broadcaster.status` (the
service's own link monitor for LINKS, the store for the rest) and returns the text; the
endpoint (:meth:`airlock.broadcaster.metrics.Metrics.serve`) serves it at ``GET /``.

- **Self-contained**: one inline stylesheet, no script, no image, no font, no external
  asset; the Content-Security-Policy (:data:`CSP`) allows exactly that stylesheet (by its
  hash) and nothing else.
- **Refreshes itself** with ``<meta http-equiv="refresh">``: the browser fetches the whole
  page again every ``refresh_s`` seconds. No JavaScript, no connection held open on the
  service, and a page that keeps trying while the service restarts (why: see
  docs/observability.md, "The status page").
- **Readable on a phone**: a viewport meta, a single column, tables that scroll sideways
  inside their box and turn into one card per row on a narrow screen.
- **Stable hooks** for tests and scrapers: ``data-section`` on each section,
  ``data-link``/``data-state``/``data-usable`` on link rows, ``id="queue-live"`` (its
  ``data-count`` is the live count) and the other ids listed in the docs.
- **Escaped**: every value interpolated, text or attribute, goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from airlock.broadcaster.status import STATE_ORDER, age, ago

DEFAULT_REFRESH_S = 5
MIN_REFRESH_S = 1
MAX_REFRESH_S = 300

STYLE = """
:root{--fg:#1b1f24;--muted:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;
--up:#1a7f37;--warn:#9a6700;--down:#cf222e}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header,main{max-width:72rem;margin:0 auto;padding:.75rem 1rem}
header{border-bottom:1px solid var(--line)}
h1{font-size:1.3rem;margin:0}
h2{font-size:1.05rem;margin:0 0 .5rem;display:flex;flex-wrap:wrap;gap:.5rem;align-items:baseline}
.meta,.muted{color:var(--muted);font-size:.85rem}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:.75rem 1rem;margin:0 0 1rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{font-weight:600;color:var(--muted);white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;
overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.8rem;
font-weight:600;border:1px solid currentColor;overflow-wrap:anywhere}
[data-state=up] .badge,.ok{color:var(--up)}
[data-state=degraded] .badge,[data-state=slow] .badge,.warn{color:var(--warn)}
[data-state=down] .badge,[data-state=disabled] .badge,[data-state=wrong-chain] .badge,
.bad{color:var(--down)}
.alarm{color:#fff;background:var(--down);border-radius:6px;padding:.4rem .6rem;
font-weight:600;margin:.25rem 0 .5rem}
.big{font-size:1.6rem;font-weight:700;font-variant-numeric:tabular-nums}
.error{color:var(--down);font-size:.85rem;overflow-wrap:anywhere}
ul.alerts{list-style:none;margin:0;padding:0}
ul.alerts li{border-left:4px solid var(--warn);padding:.3rem .6rem;margin:0 0 .5rem}
ul.alerts li[data-severity=critical]{border-color:var(--down)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dt{color:var(--muted)}dd{margin:0}
@media (max-width:40rem){
body{font-size:15px}header,main{padding:.5rem}section{padding:.6rem}
table.cards thead{display:none}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards tr{border:1px solid var(--line);border-radius:6px;margin:0 0 .5rem;
padding:.25rem .5rem}
table.cards td{border:0;padding:.15rem 0;display:flex;flex-wrap:wrap;gap:0 .75rem;
text-align:left}
table.cards td .error{flex-basis:100%}
table.cards td::before{content:attr(data-label);color:var(--muted);min-width:6.5rem}
}
@media (prefers-color-scheme:dark){
:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#161b22;--line:#30363d;
--up:#3fb950;--warn:#d29922;--down:#f85149}}
"""

_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{_STYLE_HASH}'; "
    "img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its one stylesheet (by hash) and the empty
``data:`` favicon that stops the browser asking for ``/favicon.ico``; nothing else."""

HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""Headers on every answer of the page and of ``/status.json``."""


def esc(value: object) -> str:
    """``value`` as text safe in HTML text and in a double- or single-quoted attribute."""
    return html.escape(str(value), quote=True)


def refresh_from_query(raw: str | None) -> int:
    """The ``?refresh=N`` of a request, within bounds; the default when absent or bad."""
    try:
        asked = int(raw) if raw is not None else DEFAULT_REFRESH_S
    except ValueError:
        return DEFAULT_REFRESH_S
    return min(MAX_REFRESH_S, max(MIN_REFRESH_S, asked))


# --------------------------------------------------------------------------- the page


def render_page(data: Mapping[str, Any], *, refresh_s: int = DEFAULT_REFRESH_S) -> str:
    """The whole document for one reading of the status data."""
    links = data["links"]
    if "store_error" in data:
        rest = [_store_error(str(data["store_error"]))]
        live = None
    else:
        rest = [
            _queue(data["queue"], str(data["queue_path"])),
            _nonces(data["nonces"]),
            _broadcaster(data["broadcaster"]),
            _alerts(data["alerts"]),
        ]
        live = int(data["queue"]["live"])
    generated = int(data["generated_ms"])
    body = "\n".join([_links(links), *rest])
    return _document(_title(links, live), generated, refresh_s, body)


def render_unavailable(reason: str, *, refresh_s: int = DEFAULT_REFRESH_S) -> str:
    """The page when the status could not be read at all (it keeps refreshing)."""
    body = (
        '<section id="unavailable" data-section="unavailable">'
        "<h2>Status unavailable</h2>"
        f'<p class="alarm">{esc(reason)}</p>'
        '<p class="muted">This page tries again by itself.</p></section>'
    )
    return _document("airlock status: unavailable", None, refresh_s, body)


def _document(title: str, generated_ms: int | None, refresh_s: int, body: str) -> str:
    refresh = refresh_from_query(str(refresh_s))
    when = "" if generated_ms is None else _iso(generated_ms)
    stamp = "" if generated_ms is None else f' data-generated-ms="{esc(generated_ms)}"'
    shown = f'<time datetime="{esc(when)}" id="generated">{esc(when)}</time> · ' if when else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="refresh" content="{refresh}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{esc(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n</head>\n"
        f'<body{stamp} data-refresh-s="{refresh}">\n'
        "<header><h1>airlock status</h1>"
        f'<p class="meta">{shown}refreshes every {refresh} s</p></header>\n'
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _title(links: Mapping[str, Any], live: int | None) -> str:
    rows = _link_rows(links)
    up = sum(1 for r in rows if r["usable"])
    title = f"airlock: {up} of {len(rows)} links up"
    return title if live is None else f"{title}, {live} live"


def _iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _section(name: str, title: str, inner: str, attrs: str = "") -> str:
    return (
        f'<section id="{esc(name)}" data-section="{esc(name)}"{attrs}>'
        f"<h2>{title}</h2>{inner}</section>"
    )


def _attrs(**values: object) -> str:
    """``data-*`` attributes (``_`` becomes ``-``), each value escaped; None left out."""
    return "".join(
        f' data-{name.replace("_", "-")}="{esc(_word(value))}"'
        for name, value in values.items()
        if value is not None
    )


def _word(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _table(
    header: Sequence[str],
    rows: Sequence[tuple[str, Sequence[str]]],
    numeric: AbstractSet[int] = frozenset(),
    *,
    cards: bool = False,
) -> str:
    """A table of already-escaped cells; each row is (its attributes, its cells)."""
    heads = "".join(
        f'<th{" class=n" if i in numeric else ""} scope="col">{esc(h)}</th>'
        for i, h in enumerate(header)
    )
    body = []
    for attrs, cells in rows:
        tds = "".join(
            f'<td{" class=n" if i in numeric else ""} data-label="{esc(header[i])}">{c}</td>'
            for i, c in enumerate(cells)
        )
        body.append(f"<tr{attrs}>{tds}</tr>")
    kind = ' class="cards"' if cards else ""
    return (
        f'<div class="scroll"><table{kind}><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# --------------------------------------------------------------------------- sections


def _link_rows(links: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    bybit = links.get("bybit")
    return [*links["relays"], *([bybit] if bybit is not None else [])]


def _links(links: Mapping[str, Any]) -> str:
    rows = _link_rows(links)
    attrs = _attrs(any_up=bool(links["any_up"]), down=len(links["down"]), links=len(rows))
    if not rows:
        inner = '<p id="links-summary">none configured (add [[relays]] or [bybit])</p>'
        return _section("links", "Links", inner, attrs)
    up = sum(1 for r in rows if r["usable"])
    summary = f'<span id="links-summary" class="muted">{up} of {len(rows)} up</span>'
    alarm = ""
    if not links["any_up"]:
        alarm = (
            '<p class="alarm" id="links-alarm">NO LINK IS UP: nothing can be sent; '
            "queued items wait</p>"
        )
    elif links["down"]:
        down = ", ".join(esc(name) for name in links["down"])
        alarm = f'<p class="alarm" id="links-alarm">DOWN: {down}</p>'
    table = _table(
        ["name", "kind", "state", "head / clock", "latency", "url"],
        [_link_row(row) for row in rows],
        {4},
        cards=True,
    )
    return _section("links", f"Links {summary}", alarm + table, attrs)


def _link_row(row: Mapping[str, Any]) -> tuple[str, list[str]]:
    if row["kind"] == "bybit":
        offset = row.get("offset_ms")
        detail = "-" if offset is None else f"clock offset {int(offset):+d} ms"
    else:
        detail = "-" if row.get("head") is None else f"head {row['head']}"
    latency = "-" if row.get("latency_ms") is None else f"{row['latency_ms']} ms"
    state = str(row["state"])
    error = row.get("last_error")
    url = f"<code>{esc(row['url'])}</code>"
    if error:
        url += f'<div class="error">{esc(error)}</div>'
    attrs = _attrs(link=row["name"], state=state, kind=row["kind"], usable=bool(row["usable"]))
    cells = [
        f'<span class="mono">{esc(row["name"])}</span>',
        esc(row["kind"]),
        f'<span class="badge">{esc(state.upper())}</span>',
        esc(detail),
        esc(latency),
        url,
    ]
    return attrs, cells


def _queue(queue: Mapping[str, Any], path: str) -> str:
    attrs = _attrs(exists=bool(queue["exists"]))
    live, total = int(queue["live"]), int(queue["total"])
    counts = (
        f'<p><span id="queue-live" class="big" data-count="{live}">{live}</span> live, '
        f'<span id="queue-total" data-count="{total}">{total}</span> in all</p>'
    )
    if not queue["exists"]:
        inner = f'{counts}<p class="muted">no queue yet (<code>{esc(path)}</code>)</p>'
        return _section("queue", "Queue", inner, attrs)
    present = [str(s) for s in STATE_ORDER if str(s) in queue["by_state"]]
    rows = []
    for kind, by_state in sorted(queue["by_kind"].items()):
        cells = [esc(kind)] + [
            f"<span{_attrs(kind=kind, state=s, count=by_state.get(s, 0))}>"
            f"{esc(by_state.get(s, '-'))}</span>"
            for s in present
        ]
        rows.append((_attrs(kind=kind), cells))
    table = _table(["kind", *present], rows, set(range(1, len(present) + 1))) if rows else ""
    oldest = queue["oldest_live"]
    tail = f'<p class="muted">queue <code>{esc(path)}</code></p>'
    if oldest is not None:
        tail = (
            f'<p id="queue-oldest"{_attrs(item=oldest["id"], age_s=oldest["age_s"])}>'
            f"oldest live: <code>{esc(oldest['id'])}</code> {esc(oldest['kind'])} "
            f"{esc(oldest['state'])}, waiting {esc(age(oldest['age_s']))} "
            f"(<code>{esc(oldest['account'])}</code>)</p>"
        ) + tail
    return _section("queue", "Queue", counts + table + tail, attrs)


def _nonces(nonces: Sequence[Mapping[str, Any]]) -> str:
    if not nonces:
        return _section("nonces", "Nonces", '<p class="muted">no senders yet</p>', _attrs(rows=0))
    rows = []
    for n in nonces:
        gaps = ", ".join(map(str, n["gaps"])) if n["gaps"] else "-"
        cells = [
            esc(n["chain_id"]),
            f"<code>{esc(n['sender'])}</code>",
            esc(n["next_nonce"]),
            esc(n["live"]),
            esc("-" if n["lowest_live"] is None else n["lowest_live"]),
            esc("-" if n["chain_pending"] is None else n["chain_pending"]),
            esc(ago(n["synced_age_s"])),
            esc(gaps),
        ]
        attrs = _attrs(chain=n["chain_id"], sender=n["sender"], gaps=len(n["gaps"]))
        rows.append((attrs, cells))
    header = ["chain", "sender", "next", "live", "lowest", "chain pending", "synced", "gaps"]
    alarm = ""
    if any(n["gaps"] for n in nonces):
        alarm = '<p class="alarm">GAPS: later nonces wait until each gap is filled</p>'
    table = _table(header, rows, {2, 3, 4, 5}, cards=True)
    return _section("nonces", "Nonces", alarm + table, _attrs(rows=len(nonces)))


def _broadcaster(b: Mapping[str, Any]) -> str:
    if b["heartbeat_ms"] is None:
        state, words = "never", "no heartbeat ever recorded (never run as a service here?)"
    elif b["stale"]:
        state = "stale"
        words = f"NOT RUNNING? last heartbeat {ago(b['heartbeat_age_s'])}"
    else:
        state, words = "running", "running"
    css = {"running": "ok", "stale": "bad", "never": "warn"}[state]
    pid = "-" if b["pid"] is None else str(b["pid"])
    inner = (
        f'<p id="broadcaster-state" class="{css}">{esc(words)}</p><dl>'
        f'<dt>heartbeat</dt><dd id="broadcaster-heartbeat">{esc(ago(b["heartbeat_age_s"]))}</dd>'
        f"<dt>pid</dt><dd>{esc(pid)}</dd>"
        f"<dt>last reconcile</dt><dd>{esc(ago(b['last_reconcile_age_s']))}</dd></dl>"
    )
    return _section("broadcaster", "Broadcaster", inner, _attrs(state=state))


def _alerts(alerts: Sequence[Mapping[str, Any]]) -> str:
    attrs = _attrs(open=len(alerts))
    if not alerts:
        return _section("alerts", "Alerts", '<p class="muted">none open</p>', attrs)
    items = "".join(
        f"<li{_attrs(alert=a['key'], severity=a['severity'], count=a['count'])}>"
        f'<span class="badge">{esc(str(a["severity"]).upper())}</span> '
        f"<code>{esc(a['key'])}</code> x{esc(a['count'])} "
        f'<span class="muted">first {esc(ago(a["first_age_s"]))}, '
        f"last {esc(ago(a['last_age_s']))}</span>"
        f"<div>{esc(a['message'])}</div></li>"
        for a in alerts
    )
    title = f'Alerts <span class="muted">{len(alerts)} open</span>'
    return _section("alerts", title, f'<ul class="alerts">{items}</ul>', attrs)


def _store_error(message: str) -> str:
    inner = (
        f'<p class="alarm">{esc(message)}</p>'
        '<p class="muted">queue, nonces, broadcaster and alerts are shown again once it '
        "answers; the links above are live.</p>"
    )
    return _section("store-error", "Queue unreadable", inner)
