"""The [queue] and [evm] sections: defaults, overrides, and a clear error for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.config import load_config
from airlock.errors import ConfigError


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
