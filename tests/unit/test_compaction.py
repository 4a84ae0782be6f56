import datetime as dt
from pathlib import Path

from pipeline.config import Config
from pipeline.data.compaction import compact

DAY = dt.date(2013, 3, 1)


def _raw(cfg: Config, ticker: str, day: dt.date, size: int = 100) -> Path:
    path = cfg.layout.raw_path(ticker, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def _features(cfg: Config, key: str, day: dt.date, size: int = 1000) -> Path:
    folder = cfg.layout.features_dir(key, day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.parquet").write_bytes(b"x" * size)
    (folder / "meta.json").write_bytes(b"{}")
    return folder


def _days(*offsets: int) -> list[dt.date]:
    return [DAY - dt.timedelta(days=n) for n in offsets]


def test_old_pulls_and_feature_folders_go_and_the_rest_stays(make_cfg) -> None:
    cfg = make_cfg(retention__raw_days=10, retention__features_days=5, retention__pages_days=7)
    pages = cfg.layout.root / "reports" / "daily"
    pages.mkdir(parents=True)
    for d in _days(8, 7, 0):
        (pages / f"{d.isoformat()}.html").write_text("x" * 50)
        (pages / f"{d.isoformat()}.json").write_text("{}")
    old_raw = [_raw(cfg, t, d) for t in ("GOOG", "BF.B") for d in _days(11, 40)]
    kept_raw = [_raw(cfg, "GOOG", d) for d in _days(10, 0, -3)]  # the edge, today, later
    old_feats = [_features(cfg, "GOOG", d) for d in _days(6, 30)]
    kept_feats = [_features(cfg, "GOOG", d) for d in _days(5, -1)]  # the edge, a later day
    # the newest of a ticker or model stays, however old
    kept_feats += [_features(cfg, "IBM", d) for d in _days(60)]
    old_feats += [
        _features(cfg, k, d) for k, d in (("IBM", _days(90)[0]), ("universe", _days(30)[0]))
    ]
    kept_feats += [_features(cfg, "universe", d) for d in _days(6)]
    stray = cfg.layout.raw_path("GOOG", DAY).with_name("notes.csv")
    stray.write_text("not a day's pull")

    out = compact(cfg, DAY)

    assert out == {
        "day": "2013-03-01",
        "raw_files": 4,
        "raw_bytes": 400,
        "feature_dirs": 4,
        "feature_bytes": 4 * 1002,
        "page_files": 1,
        "page_bytes": 50,
        "bytes_freed": 400 + 4 * 1002 + 50,
    }
    assert sorted(p.name for p in pages.iterdir()) == sorted(
        [f"{d.isoformat()}.json" for d in _days(8, 7, 0)]
        + [f"{d.isoformat()}.html" for d in _days(7, 0)]
    )  # the JSON stays: the page is written again from it
    assert not any(p.exists() for p in old_raw + old_feats)
    assert all(p.exists() for p in [*kept_raw, *kept_feats, stray])


def test_null_keeps_everything_and_a_second_run_finds_nothing(make_cfg) -> None:
    cfg = make_cfg(retention__raw_days="null", retention__features_days="null")
    files = [_raw(cfg, "GOOG", d) for d in _days(400, 1)] + [
        _features(cfg, "GOOG", d) for d in _days(400, 1)
    ]
    assert compact(cfg, DAY)["bytes_freed"] == 0
    assert all(p.exists() for p in files)
    again = make_cfg(retention__raw_days=0, retention__features_days=0)
    assert compact(again, DAY)["raw_files"] == 2 and compact(again, DAY)["bytes_freed"] == 0


def test_a_fresh_state_has_nothing_to_compact(cfg: Config) -> None:
    assert compact(cfg, DAY)["bytes_freed"] == 0
