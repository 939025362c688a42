"""The energy model (host_tools/fleet/energy.py) against a case worked by hand."""

from __future__ import annotations

import pytest

from host_tools.fleet import energy


def test_an_hour_of_counts_gives_the_hand_computed_current():
    # One hour: 3000 s radio off (of which 150 s awake, 2850 s asleep), 20 s joining,
    # 580 s joined; 2 handshakes; 125000 bytes sent (1 s of air), 250000 received (2 s).
    counts = {"uptime-ms": 3_600_000, "awake-ms": 750_000, "asleep-ms": 2_850_000,
              "radio-off-ms": 3_000_000, "joining-ms": 20_000, "joined-ms": 580_000,
              "handshakes": 2, "tx-bytes": 125_000, "rx-bytes": 250_000}
    # by hand, mA x s:
    asleep = 2850 * 0.8  # 2280
    awake = 150 * 30.0  # 4500
    joining = 20 * 90.0  # 1800
    joined = 580 * 34.12  # 19789.6
    tx = 1 * (260 - 34.12)  # 225.88
    rx = 2 * (90 - 34.12)  # 111.76
    sensors = 3600 * (0.6 + 0.59184 + 0.6 + 0.006)  # 6472.224
    bus = 3600 * (442 * 9 / 400_000) * (30.0 - 0.8)  # 1045.3968
    expected = (asleep + awake + joining + joined + tx + rx + sensors + bus) / 3600
    got = energy.estimate(counts)
    assert got.average_ma == pytest.approx(expected, rel=1e-9)
    assert got.average_ma == pytest.approx(10.062, abs=1e-3)  # 36224.86 mA s / 3600 s
    assert got.radio_on_share == pytest.approx(600 / 3600)
    assert got.handshakes_per_hour == pytest.approx(2.0)
    assert got.days(400) == pytest.approx(400 / expected / 24)


def test_boots_add_up_and_no_time_is_an_error():
    boots = [{"uptime-ms": 1000, "handshakes": 1}, {"uptime-ms": 500, "handshakes": 2}]
    assert energy.total(boots)["uptime-ms"] == 1500
    assert energy.total(boots)["handshakes"] == 3
    with pytest.raises(ValueError, match="no time counted"):
        energy.estimate(energy.total([]))
