"""Retention planning (backupd.core.retention): golden reasons on small histories, a synthetic year of
daily backups checked against an independent expectation, and properties over random histories
(chain safety, idempotence, monotonicity in the policy)."""

from __future__ import annotations

from dataclasses import replace

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backupd.core.chain import resolve_chain
from backupd.core.retention import (
    NO_POLICY,
    RULES,
    BackupInfo,
    DestinationLimits,
    RetentionPlan,
    RetentionPolicy,
    apply_plan,
    kept_on,
    plan_retention,
)
from backupd.errors import MissingChainMember

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
BOTH = frozenset({"local", "offsite"})


def bk(
    bid: str,
    strategy: str,
    parent: str | None,
    at: datetime,
    *,
    verified: bool = False,
    on: frozenset[str] = BOTH,
    source: str = "db",
) -> BackupInfo:
    return BackupInfo(bid, source, strategy, parent, at, at + timedelta(hours=1) if verified else None, on)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def chain_ids(backup_id: str, backups: list[BackupInfo]) -> list[str]:
    return [b.backup_id for b in resolve_chain(backup_id, {b.backup_id: b for b in backups})]


# ---------------------------------------------------------------------------------------------------
# Hand-written examples with their exact reasons


def test_keep_last_keeps_the_chain_and_explains_every_delete():
    backups = [
        bk("f", "full", None, days_ago(5)),
        bk("i1", "incremental", "f", days_ago(4)),
        bk("i2", "incremental", "i1", days_ago(3)),
        bk("d3", "differential", "f", days_ago(2)),
        bk("i4", "incremental", "d3", days_ago(1)),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_last=2), NOW)
    assert plan.keep == {
        "i4": ["keep_last 1/2", "newest restorable backup"],
        "d3": ["keep_last 2/2", "needed by i4 (chain)"],
        "f": ["needed by i4 (chain)", "needed by d3 (chain)"],
    }
    assert plan.delete == {
        "i2": ["keep_last 2: not among the 2 newest"],
        "i1": ["keep_last 2: not among the 2 newest"],
    }
    assert plan.keep_copies == {} and plan.delete_copies == {}


def test_calendar_rules_take_the_newest_of_each_bucket():
    backups = [
        bk("f", "full", None, datetime(2026, 10, 30, 23, tzinfo=UTC)),  # Friday, ISO week 44
        bk("a", "differential", "f", datetime(2026, 11, 23, 1, tzinfo=UTC)),  # Monday, week 48
        bk("b", "differential", "f", datetime(2026, 11, 23, 22, tzinfo=UTC)),
        # 01:30 in UTC+2 is 23:30 on the 23rd in UTC: buckets are UTC days
        bk("c", "differential", "f", datetime(2026, 11, 24, 1, 30, tzinfo=timezone(timedelta(hours=2)))),
        bk("e", "differential", "f", datetime(2026, 11, 25, 9, tzinfo=UTC)),
    ]
    policy = RetentionPolicy(keep_daily=2, keep_weekly=2, keep_monthly=1, keep_yearly=1)
    plan = plan_retention(backups, policy, NOW)
    assert plan.keep == {
        "e": [
            "keep_daily 1/2 (2026-11-25)",
            "keep_weekly 1/2 (2026-W48)",
            "keep_monthly 1/1 (2026-11)",
            "keep_yearly 1/1 (2026)",
            "newest restorable backup",
        ],
        "c": ["keep_daily 2/2 (2026-11-23)"],
        "f": ["keep_weekly 2/2 (2026-W44)", "needed by e (chain)", "needed by c (chain)"],
    }
    assert plan.delete == {
        "b": [
            "keep_daily 2: 2026-11-23 is kept as c",
            "keep_weekly 2: 2026-W48 is kept as e",
            "keep_monthly 1: 2026-11 is kept as e",
            "keep_yearly 1: 2026 is kept as e",
        ],
        "a": [
            "keep_daily 2: 2026-11-23 is kept as c",
            "keep_weekly 2: 2026-W48 is kept as e",
            "keep_monthly 1: 2026-11 is kept as e",
            "keep_yearly 1: 2026 is kept as e",
        ],
    }


def test_older_buckets_are_named_as_such():
    backups = [bk(f"f{d}", "full", None, datetime(2026, 11, d, 12, tzinfo=UTC)) for d in (20, 21, 22)]
    plan = plan_retention(backups, RetentionPolicy(keep_daily=1, keep_weekly=1), NOW)
    assert plan.keep == {
        "f22": ["keep_daily 1/1 (2026-11-22)", "keep_weekly 1/1 (2026-W47)", "newest restorable backup"],
    }
    assert plan.delete["f20"] == [
        "keep_daily 1: 2026-11-20 is older than the 1 newest days",
        "keep_weekly 1: 2026-W47 is kept as f22",
    ]


def test_a_broken_chain_is_deleted_and_the_newest_restorable_kept():
    backups = [
        bk("f", "full", None, days_ago(4)),
        bk("i1", "incremental", "f", days_ago(3)),
        bk("i3", "incremental", "i2", days_ago(1)),  # i2 is gone
        bk("i4", "incremental", "i3", days_ago(0.5)),
        bk("i5", "incremental", None, days_ago(0.2)),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_last=1), NOW)
    assert plan.keep == {"i1": ["keep_last 1/1", "newest restorable backup"], "f": ["needed by i1 (chain)"]}
    assert plan.delete == {
        "i5": ["chain broken: i5 (incremental) names no parent"],
        "i4": ["chain broken: i3 needs i2, which is missing"],
        "i3": ["chain broken: i3 needs i2, which is missing"],
    }


def test_the_last_verified_chain_stays_until_a_newer_chain_is_verified():
    backups = [
        bk("f1", "full", None, days_ago(6), verified=True),
        bk("i1", "incremental", "f1", days_ago(5), verified=True),
        bk("i2", "incremental", "i1", days_ago(4)),  # not verified: the verified chain ends at i1
        bk("f2", "full", None, days_ago(3)),
        bk("d2", "differential", "f2", days_ago(2), verified=True),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_last=1), NOW)
    assert plan.keep == {
        "d2": ["keep_last 1/1", "newest restorable backup"],
        "f2": ["needed by d2 (chain)"],
        "i1": ["newest verified chain"],
        "f1": ["needed by i1 (chain)"],
    }
    assert plan.delete == {"i2": ["keep_last 1: not among the 1 newest"]}

    verified_f2 = [b if b.backup_id != "f2" else bk("f2", "full", None, days_ago(3), verified=True) for b in backups]
    plan = plan_retention(verified_f2, RetentionPolicy(keep_last=1), NOW)
    assert plan.keep == {
        "d2": ["keep_last 1/1", "newest restorable backup", "newest verified chain"],
        "f2": ["needed by d2 (chain)"],
    }
    assert set(plan.delete) == {"f1", "i1", "i2"}


def test_without_a_global_rule_everything_is_kept():
    backups = [
        bk("f", "full", None, days_ago(400)),
        bk("i", "incremental", "f", days_ago(300)),
        bk("x", "incremental", "gone", days_ago(1)),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_daily=0), NOW)
    assert plan.keep == {
        "x": [NO_POLICY],
        "i": [NO_POLICY, "newest restorable backup"],
        "f": [NO_POLICY, "needed by i (chain)"],
    }
    assert plan.delete == {}


def test_destination_limits_delete_copies_but_not_a_chain_kept_there():
    backups = [
        bk("f", "full", None, days_ago(10)),
        bk("i1", "incremental", "f", days_ago(9)),
        bk("i2", "incremental", "i1", days_ago(8)),
        bk("f2", "full", None, days_ago(3)),
        bk("i3", "incremental", "f2", days_ago(2)),
    ]
    policy = RetentionPolicy(keep_last=5, per_destination={"local": DestinationLimits(max_count=2)})
    plan = plan_retention(backups, policy, NOW)
    assert set(plan.keep) == {"f", "i1", "i2", "f2", "i3"}
    assert plan.keep_copies == {
        ("i3", "local"): ["max_count 1/2"],
        ("f2", "local"): ["max_count 2/2"],
    }
    assert plan.delete_copies == {
        ("i2", "local"): ["max_count 2: copy 3 on local"],
        ("i1", "local"): ["max_count 2: copy 4 on local"],
        ("f", "local"): ["max_count 2: copy 5 on local"],
    }

    policy = RetentionPolicy(keep_last=5, per_destination={"local": DestinationLimits(max_count=1, max_age_days=9)})
    plan = plan_retention(backups, policy, NOW)
    assert plan.keep_copies == {
        ("i3", "local"): ["max_count 1/1", "max_age_days 9 (2 days old)"],
        ("f2", "local"): ["needed by i3 on local (chain)"],
    }
    assert plan.delete_copies[("i1", "local")] == ["max_count 1: copy 4 on local"]  # 9 days old is within 9 days
    assert plan.delete_copies[("f", "local")] == [
        "max_count 1: copy 5 on local",
        "max_age_days 9: 10 days old on local",
    ]


def test_a_backup_whose_every_copy_is_over_its_limits_goes_unless_something_needs_it():
    local = frozenset({"local"})
    backups = [
        bk("f", "full", None, days_ago(40), on=local),
        bk("i1", "incremental", "f", days_ago(39), on=local),
        bk("f2", "full", None, days_ago(2), on=local),
        bk("d2", "differential", "f2", days_ago(1), on=local),
    ]
    limits = {"local": DestinationLimits(max_age_days=30)}
    policy = RetentionPolicy(keep_daily=7, keep_monthly=6, per_destination=limits)
    plan = plan_retention(backups, policy, NOW)
    assert set(plan.keep) == {"d2", "f2"}
    assert plan.delete["i1"] == [
        "every copy is over its destination's limits",
        "max_age_days 30: 39 days old on local",
        "global rules alone keep it: keep_daily 3/7 (2026-10-18); keep_monthly 2/6 (2026-10)",
    ]
    assert plan.delete["f"] == [
        "every copy is over its destination's limits",
        "max_age_days 30: 40 days old on local",
        "global rules alone keep it: keep_daily 4/7 (2026-10-17); needed by i1 (chain)",
    ]

    # the newest restorable backup and its chain stay even when every copy is too old
    old = [b for b in backups if b.backup_id in ("f", "i1")]
    plan = plan_retention(old, policy, NOW)
    assert plan.keep == {
        "i1": ["keep_daily 1/7 (2026-10-18)", "keep_monthly 1/6 (2026-10)", "newest restorable backup"],
        "f": ["keep_daily 2/7 (2026-10-17)", "needed by i1 (chain)"],
    }
    assert plan.keep_copies == {
        ("i1", "local"): ["last copy of a kept backup"],
        ("f", "local"): ["needed by i1 on local (chain)"],
    }
    assert plan.delete == {} and plan.delete_copies == {}


def test_max_count_counts_every_backup_on_the_destination_so_rules_stay_monotone():
    local = frozenset({"local"})
    backups = [
        bk("p", "full", None, datetime(2026, 10, 31, tzinfo=UTC), on=local),
        bk("n2", "full", None, days_ago(1), on=local),
        bk("n", "full", None, days_ago(0), on=local),
    ]
    limits = {"local": DestinationLimits(max_count=2)}
    # the window on local is {n, n2} whatever the global rules keep: p is outside it
    small = plan_retention(backups, RetentionPolicy(keep_daily=1, keep_monthly=2, per_destination=limits), NOW)
    assert set(small.keep) == {"n"}
    assert small.delete["n2"] == [
        "keep_daily 1: 2026-11-25 is older than the 1 newest days",
        "keep_monthly 2: 2026-11 is kept as n",
    ]
    assert small.delete["p"] == [
        "every copy is over its destination's limits",
        "max_count 2: copy 3 on local",
        "global rules alone keep it: keep_monthly 2/2 (2026-10)",
    ]
    large = plan_retention(backups, RetentionPolicy(keep_daily=2, keep_monthly=2, per_destination=limits), NOW)
    assert set(large.keep) == {"n", "n2"}
    assert large.keep_copies == {("n", "local"): ["max_count 1/2"], ("n2", "local"): ["max_count 2/2"]}


def test_a_chain_across_destinations_keeps_one_copy_of_each_member():
    backups = [
        bk("f", "full", None, days_ago(20), on=frozenset({"nas", "offsite"})),
        bk("i1", "incremental", "f", days_ago(1), on=frozenset({"local"})),
    ]
    limits = {"nas": DestinationLimits(max_age_days=7), "offsite": DestinationLimits(max_age_days=7)}
    plan = plan_retention(backups, RetentionPolicy(keep_last=1, per_destination=limits), NOW)
    assert plan.keep == {"i1": ["keep_last 1/1", "newest restorable backup"], "f": ["needed by i1 (chain)"]}
    assert plan.keep_copies == {("f", "nas"): ["last copy of a kept backup"]}
    assert plan.delete_copies == {("f", "offsite"): ["max_age_days 7: 20 days old on offsite"]}


def test_hourly_backups_to_one_destination_do_not_crowd_out_nightly_ones_to_another():
    """Each stream (the destinations a schedule chose) gets the rules on its own."""
    backups = []
    for day in range(10, 0, -1):
        night = f"n{day:02d}"
        backups.append(replace(bk(night, "full", None, days_ago(day), on=frozenset({"offsite"})), stream=("offsite",)))
        for hour in range(1, 24, 6):
            hourly = bk(f"h{day:02d}-{hour:02d}", "full", None, days_ago(day) + timedelta(hours=hour),
                        on=frozenset({"local"}))
            backups.append(replace(hourly, stream=("local",)))
    plan = plan_retention(backups, RetentionPolicy(keep_daily=3), NOW)
    assert sorted(i for i in plan.keep if i.startswith("n")) == ["n01", "n02", "n03"]
    newest_per_day: dict[object, BackupInfo] = {}
    for b in sorted((b for b in backups if b.stream == ("local",)), key=lambda b: b.created_at):
        newest_per_day[b.created_at.date()] = b
    expected = sorted(b.backup_id for day, b in sorted(newest_per_day.items())[-3:])
    assert sorted(i for i in plan.keep if i.startswith("h")) == expected
    assert plan.keep["n01"] == [f"keep_daily 1/3 ({days_ago(1).date()}) [to offsite]", "newest restorable backup [to offsite]"]
    assert plan.delete["n04"] == [f"keep_daily 3: {days_ago(4).date()} is older than the 3 newest days [to offsite]"]


def test_to_json_is_the_dry_run_shape():
    backups = [
        bk("f", "full", None, days_ago(2)),
        bk("i", "incremental", "f", days_ago(1)),
        bk("g", "full", None, days_ago(3)),
    ]
    policy = RetentionPolicy(keep_last=1, per_destination={"local": DestinationLimits(max_count=1)})
    assert plan_retention(backups, policy, NOW).to_json() == {
        "keep": [
            {"id": "i", "reasons": ["keep_last 1/1", "newest restorable backup"]},
            {"id": "f", "reasons": ["needed by i (chain)"]},
        ],
        "delete": [{"id": "g", "reasons": ["keep_last 1: not among the 1 newest"]}],
        "keep_copies": [
            {"id": "i", "destination": "local", "reasons": ["max_count 1/1"]},
            {"id": "f", "destination": "local", "reasons": ["needed by i on local (chain)"]},
        ],
        "delete_copies": [],
    }


def test_sources_are_planned_separately():
    backups = [
        bk("a1", "full", None, days_ago(2), source="a"),
        bk("a2", "full", None, days_ago(1), source="a"),
        bk("b1", "full", None, days_ago(3), source="b"),
        bk("b2", "incremental", "a1", days_ago(0.5), source="b"),  # a parent in another source is missing
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_last=1), NOW)
    assert list(plan.keep) == ["a2", "b1"]
    assert plan.delete == {
        "a1": ["keep_last 1: not among the 1 newest"],
        "b2": ["chain broken: b2 needs a1, which is missing"],
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetentionPolicy(keep_last=-1),
        lambda: RetentionPolicy(keep_daily=True),
        lambda: DestinationLimits(max_count=0),
        lambda: DestinationLimits(max_age_days=1.5),
        lambda: bk("x", "snapshot", None, NOW),
        lambda: BackupInfo("x", "db", "full", None, datetime(2026, 1, 1)),
        lambda: plan_retention([], RetentionPolicy(), datetime(2026, 1, 1)),
        lambda: plan_retention([bk("x", "full", None, NOW), bk("x", "full", None, NOW)], RetentionPolicy(), NOW),
    ],
)
def test_bad_input_is_a_value_error(make):
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------------------------------------------
# A synthetic year: one backup a day, a full on Sundays (and on the first day), differentials on
# Wednesdays, incrementals otherwise.

FIRST_DAY = date(2025, 11, 27)  # a Thursday
YEAR = [FIRST_DAY + timedelta(days=i) for i in range(365)]  # to 2026-11-26
YEAR_NOW = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)


def year_strategy(i: int) -> str:
    weekday = YEAR[i].weekday()
    return "full" if i == 0 or weekday == 6 else "differential" if weekday == 2 else "incremental"


def year_chain(i: int) -> list[int]:
    """Day indexes the restore of day i needs, from the calendar alone (not from parent links)."""
    if year_strategy(i) == "full":
        return [i]
    if year_strategy(i) == "differential":
        return [max(j for j in range(i) if year_strategy(j) == "full"), i]
    return year_chain(i - 1) + [i]


def year_of_backups(verified_before: date) -> list[BackupInfo]:
    out: list[BackupInfo] = []
    for i, day in enumerate(YEAR):
        strategy = year_strategy(i)
        parent = None if strategy == "full" else YEAR[year_chain(i)[-2]].isoformat()
        at = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
        verified = at + timedelta(days=1) if day < verified_before else None  # verification lags
        out.append(BackupInfo(day.isoformat(), "db", strategy, parent, at, verified, BOTH))
    return out


def test_a_year_of_daily_backups_keeps_exactly_what_the_policy_says_and_every_chain():
    verified_before = date(2026, 10, 21)  # a Wednesday: the newest fully verified backup is 2026-10-20
    backups = year_of_backups(verified_before)
    policy = RetentionPolicy(
        keep_daily=14, keep_weekly=8, keep_monthly=12, keep_yearly=3,
        per_destination={"local": DestinationLimits(max_age_days=30)},
    )  # fmt: skip
    plan = plan_retention(backups, policy, YEAR_NOW)

    # the expectation, from the calendar
    last = len(YEAR) - 1
    days = set(range(last - 13, last + 1))
    weeks: dict[tuple[int, int], int] = {}
    months: dict[tuple[int, int], int] = {}
    years: dict[int, int] = {}
    for i, day in enumerate(YEAR):  # oldest first, so the last write per bucket is its newest day
        weeks[day.isocalendar()[:2]] = i
        months[(day.year, day.month)] = i
        years[day.year] = i
    weekly = set(sorted(weeks.values())[-8:])
    monthly = set(sorted(months.values())[-12:])
    yearly = set(sorted(years.values())[-3:])
    newest_verified = YEAR.index(date(2026, 10, 20))
    assert year_strategy(newest_verified) == "incremental"
    direct = days | weekly | monthly | yearly | {last, newest_verified}
    expected = {j for i in direct for j in year_chain(i)}

    assert {YEAR[i].isoformat() for i in expected} == set(plan.keep)
    assert set(plan.keep) | set(plan.delete) == {b.backup_id for b in backups}
    assert not set(plan.keep) & set(plan.delete)
    # spot checks of the exact sets and reasons
    assert len(yearly) == 2 and YEAR.index(date(2025, 12, 31)) in yearly
    assert YEAR.index(date(2026, 10, 11)) in weekly and YEAR.index(date(2026, 10, 4)) not in weekly  # Sundays
    assert plan.keep["2026-11-26"] == [
        "keep_daily 1/14 (2026-11-26)",
        "keep_weekly 1/8 (2026-W48)",
        "keep_monthly 1/12 (2026-11)",
        "keep_yearly 1/3 (2026)",
        "newest restorable backup",
    ]
    assert plan.keep["2026-10-20"] == ["newest verified chain"]
    assert plan.keep["2026-10-18"] == [  # the Sunday full of that chain
        "keep_weekly 7/8 (2026-W42)",
        "needed by 2026-10-20 (chain)",
    ]
    assert plan.keep["2026-10-19"] == ["needed by 2026-10-20 (chain)"]
    assert plan.keep["2025-12-31"][0] == "keep_monthly 12/12 (2025-12)"
    assert plan.delete["2026-06-10"] == [
        "keep_daily 14: 2026-06-10 is older than the 14 newest days",
        "keep_weekly 8: 2026-W24 is older than the 8 newest weeks",
        "keep_monthly 12: 2026-06 is kept as 2026-06-30",
        "keep_yearly 3: 2026 is kept as 2026-11-26",
    ]

    # no kept backup loses its chain, checked by the restore path's own chain resolution
    remaining = apply_plan(backups, plan)
    for b in remaining:
        day = YEAR.index(date.fromisoformat(b.backup_id))
        assert chain_ids(b.backup_id, remaining) == [YEAR[j].isoformat() for j in year_chain(day)]
    # local keeps 30 days plus the chains they need; offsite (no limits) keeps every kept backup
    local = {b.backup_id for b in remaining if "local" in b.destinations}
    recent = {i for i in expected if (YEAR_NOW.date() - YEAR[i]).days <= 30}
    assert local == {YEAR[j].isoformat() for i in recent for j in year_chain(i)}
    assert all("offsite" in b.destinations for b in remaining)
    assert plan_retention(remaining, policy, YEAR_NOW).delete == {}


# ---------------------------------------------------------------------------------------------------
# Properties over random histories: several sources, any mix of strategies, gaps from none to a
# year, random verification and copies, and some backups lost (so some chains are broken).

DESTINATIONS = ("local", "nas", "offsite")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
GAP = st.one_of(st.integers(0, 2 * 86400), st.integers(0, 120 * 86400))


@st.composite
def source_history(draw, source: str, destinations: tuple[str, ...]) -> list[BackupInfo]:
    steps = draw(st.lists(st.sampled_from(["full", "incremental", "differential"]), max_size=16))
    out: list[BackupInfo] = []
    lost: set[str] = set()
    t = T0
    last = full = None
    for i, strategy in enumerate(["full", *steps]):
        t += timedelta(seconds=draw(GAP))
        bid = f"{source}{i:02d}"
        parent = None if strategy == "full" else last if strategy == "incremental" else full
        on = draw(st.frozensets(st.sampled_from(destinations), min_size=1))
        verified = t + timedelta(hours=1) if draw(st.booleans()) else None
        stream = tuple(sorted(on)) if draw(st.integers(0, 3)) == 0 else ()  # sent to chosen destinations
        out.append(BackupInfo(bid, source, strategy, parent, t, verified, on, stream))
        last = bid
        if strategy == "full":
            full = bid
        if draw(st.integers(0, 9)) == 0:
            lost.add(bid)
    return [b for b in out if b.backup_id not in lost]


@st.composite
def histories(draw, destinations: tuple[str, ...] = DESTINATIONS) -> tuple[list[BackupInfo], datetime]:
    sources = draw(st.sampled_from([["a"], ["a", "b"]]))
    backups = [b for source in sources for b in draw(source_history(source, destinations))]
    newest = max((b.created_at for b in backups), default=T0)
    return backups, newest + timedelta(seconds=draw(st.one_of(st.integers(0, 3 * 86400), st.integers(0, 90 * 86400))))


RULE_N = st.one_of(st.none(), st.integers(0, 4))
LIMITS = st.builds(DestinationLimits, st.one_of(st.none(), st.integers(1, 60)), st.one_of(st.none(), st.integers(1, 4)))


@st.composite
def policies(draw, destinations: tuple[str, ...] = DESTINATIONS) -> RetentionPolicy:
    at_least = min(len(destinations), draw(st.sampled_from([0, 1, 1, 2])))  # limits matter most
    limited = draw(st.lists(st.sampled_from(destinations), unique=True, min_size=at_least))
    return RetentionPolicy(*(draw(RULE_N) for _ in range(5)), per_destination={d: draw(LIMITS) for d in limited})


@st.composite
def looser(draw, policy: RetentionPolicy) -> RetentionPolicy:
    """A policy that keeps at least as much: every N at least as large, every limit at least as loose."""
    more = st.integers(0, 3)
    rules = [(getattr(policy, r) or 0) + draw(more) for r in RULES]
    limits = {}
    for dest, lim in policy.per_destination.items():
        age = None if lim.max_age_days is None or draw(st.booleans()) else lim.max_age_days + draw(more)
        count = None if lim.max_count is None or draw(st.booleans()) else lim.max_count + draw(more)
        if draw(st.booleans()):
            limits[dest] = DestinationLimits(age, count)
    return RetentionPolicy(*rules, per_destination=limits)


def broken(backup_id: str, backups: list[BackupInfo]) -> bool:
    same = [b for b in backups if b.source == next(c.source for c in backups if c.backup_id == backup_id)]
    try:
        chain_ids(backup_id, same)
    except MissingChainMember:
        return True
    return False


def check_plan(backups: list[BackupInfo], policy: RetentionPolicy, plan: RetentionPlan) -> None:
    ids = {b.backup_id for b in backups}
    assert set(plan.keep) | set(plan.delete) == ids and not set(plan.keep) & set(plan.delete)
    assert all(plan.keep.values()) and all(plan.delete.values())
    assert all(plan.keep_copies.values()) and all(plan.delete_copies.values())
    remaining = apply_plan(backups, plan)
    by_source: dict[str, list[BackupInfo]] = {}
    for b in remaining:
        by_source.setdefault(b.source, []).append(b)
    limited = {d for d, lim in policy.per_destination.items() if lim.active}
    for b in remaining:
        # every kept copy of a limited destination is explained, every kept backup keeps a copy
        assert all((b.backup_id, d) in plan.keep_copies for d in b.destinations & limited)
        assert b.destinations
        if broken(b.backup_id, backups):
            assert policy.rules() == []  # only "no retention policy" keeps a broken chain
            continue
        # chain safety: the whole chain stays, and on each destination a kept copy's chain stays there
        chain = resolve_chain(b.backup_id, {c.backup_id: c for c in by_source[b.source]})
        for member in chain:
            assert member.destinations  # each member keeps a copy somewhere
            for d in b.destinations & limited:
                assert (member.backup_id, d) not in plan.delete_copies
    for source, items in by_source.items():
        everything = [b for b in backups if b.source == source]
        restorable = [b for b in everything if not broken(b.backup_id, backups)]
        for stream in {b.stream for b in restorable}:  # per stream: its newest restorable backup stays
            newest = max((b for b in restorable if b.stream == stream), key=lambda b: (b.created_at, b.backup_id))
            assert newest.backup_id in plan.keep
        if restorable:
            by_id = {c.backup_id: c for c in everything}
            fully_verified = [b for b in restorable if all(c.verified_at for c in resolve_chain(b.backup_id, by_id))]
            if fully_verified:
                assert max(fully_verified, key=lambda b: (b.created_at, b.backup_id)).backup_id in plan.keep
    for b in backups:  # a source with a restorable backup is never left without one
        if not broken(b.backup_id, backups):
            assert any(c.source == b.source for c in remaining)


@settings(max_examples=150, deadline=None)
@given(histories(), policies())
@example(  # a chain on two destinations, one of them keeping a single copy: the full must stay there too
    (
        [
            BackupInfo("a00", "a", "full", None, T0, None, BOTH),
            BackupInfo("a01", "a", "incremental", "a00", T0 + timedelta(days=10), None, BOTH),
        ],
        T0 + timedelta(days=11),
    ),
    RetentionPolicy(keep_last=2, per_destination={"local": DestinationLimits(max_count=1)}),
)
def test_the_plan_is_complete_chain_safe_and_keeps_the_newest_and_the_verified(history, policy):
    backups, now = history
    check_plan(backups, policy, plan_retention(backups, policy, now))


@settings(max_examples=150, deadline=None)
@given(histories(), policies())
def test_planning_again_after_applying_the_plan_deletes_nothing(history, policy):
    backups, now = history
    plan = plan_retention(backups, policy, now)
    remaining = apply_plan(backups, plan)
    again = plan_retention(remaining, policy, now)
    assert again.delete == {} and again.delete_copies == {}
    assert set(again.keep) == set(plan.keep)
    assert set(again.keep_copies) == set(plan.keep_copies)


@settings(max_examples=150, deadline=None)
@given(histories(), policies(), st.data())
def test_a_policy_that_keeps_more_keeps_a_superset(history, policy, data):
    backups, now = history
    if not policy.rules():  # the empty policy keeps everything, so it sits above every other
        policy = RetentionPolicy(keep_last=1, per_destination=policy.per_destination)
    more = data.draw(looser(policy), label="looser")
    small, large = plan_retention(backups, policy, now), plan_retention(backups, more, now)
    assert set(small.keep) <= set(large.keep)


@settings(max_examples=150, deadline=None)
@given(histories(("local",)), policies(("local",)), st.data())
def test_with_one_destination_a_looser_policy_keeps_a_superset_of_copies(history, policy, data):
    backups, now = history
    if not policy.rules():
        policy = RetentionPolicy(keep_daily=1, per_destination=policy.per_destination)
    more = data.draw(looser(policy), label="looser")
    small, large = plan_retention(backups, policy, now), plan_retention(backups, more, now)
    kept_small = {(b.backup_id, d) for b in apply_plan(backups, small) for d in b.destinations}
    kept_large = {(b.backup_id, d) for b in apply_plan(backups, large) for d in b.destinations}
    assert kept_small <= kept_large


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_input_order(history, rnd):
    backups, now = history
    limits = {"local": DestinationLimits(max_age_days=30, max_count=3)}
    policy = RetentionPolicy(keep_last=1, keep_daily=2, keep_monthly=2, per_destination=limits)
    shuffled = list(backups)
    rnd.shuffle(shuffled)
    assert plan_retention(shuffled, policy, now) == plan_retention(backups, policy, now)


@settings(max_examples=300, deadline=None)
@given(histories(), policies(), st.sampled_from(DESTINATIONS))
def test_resync_restores_only_copies_the_next_prune_keeps(history, policy, dest):
    """Issue 8 item 3: a destination given exactly the copies `kept_on` names loses none of them to
    the next plan, so resync and prune never undo each other."""
    backups, now = history
    meant = {b.backup_id for b in backups}
    kept = kept_on(backups, policy, now, dest, meant)
    assert kept <= meant
    after = [replace(b, destinations=(b.destinations - {dest}) | ({dest} if b.backup_id in kept else set()))
             for b in backups]
    # a backup left with no copy anywhere is gone from every listing, not a backup with no known copies
    after = [a for a, b in zip(after, backups) if a.destinations or not b.destinations]
    plan = plan_retention(after, policy, now)
    assert not {i for (i, d) in plan.delete_copies if d == dest} & kept


def flagged_run(backups: list[BackupInfo], n: int) -> list[BackupInfo]:
    """`n` flagged fulls of source "a" (a damaged or empty source), newer than every backup."""
    t = max((b.created_at for b in backups), default=T0)
    return [BackupInfo(f"z{i:02d}", "a", "full", None, t + timedelta(hours=i + 1), None, frozenset(DESTINATIONS),
                       flagged=True) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(histories(), policies(), st.integers(1, 12))
def test_a_run_of_flagged_backups_never_pushes_the_last_good_one_out(history, policy, n):
    backups, now = history
    good = [b for b in sorted(backups, key=lambda b: (b.created_at, b.backup_id), reverse=True)
            if b.source == "a" and not broken(b.backup_id, backups)]
    run = flagged_run(backups, n)
    plan = plan_retention([*backups, *run], policy, now + timedelta(hours=n + 1))
    check_plan([*backups, *run], policy, plan)
    if good:
        assert good[0].backup_id in plan.keep
        assert all(m in plan.keep for m in chain_ids(good[0].backup_id, backups))
    if policy.rules():
        assert [b.backup_id for b in run if b.backup_id in plan.keep] == [run[-1].backup_id]


@settings(max_examples=200, deadline=None)
@given(histories(), policies(), st.integers(1, 12))
def test_flagged_backups_do_not_count_toward_the_rules(history, policy, n):
    backups, now = history
    policy = replace(policy, per_destination={})
    later = now + timedelta(hours=n + 1)
    before = plan_retention(backups, policy, later)
    after = plan_retention([*backups, *flagged_run(backups, n)], policy, later)
    assert set(before.keep) <= set(after.keep)
