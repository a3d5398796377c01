"""
The catalog's files on disk: where they are, their CSV format, and a cached loader.

Contract: `offers.csv` holds one row per `Offer` (every field; per-target details in a compact
JSON column `extra`), `regions.csv` one row per `Region`. Both are written by `build.py` and
`refresh.py` through `write_offers` / `write_regions`, so the format lives in one place. The
bundled copy under `data/` is the default; `MDEPLOY_CATALOG_DIR` points at a refreshed one.

Parsing is paid once per catalog, not once per command: the parsed rows are pickled under the
user cache dir ($XDG_CACHE_HOME/mdeploy, default ~/.cache/mdeploy), keyed by mdeploy's
version, the directory and both files' size and mtime; a cache that is corrupt, foreign or
unwritable is ignored and rebuilt. Offers stay plain tuples until someone asks for an `Offer`
(`offer_groups` lets the planner reject whole regions without building any).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from mdeploy.catalog.models import Offer, Region
from mdeploy.errors import InputError
from mdeploy.jurisdictions import JURISDICTIONS
from mdeploy.target_names import placement_names

__all__ = [
    "BUNDLED_DIR",
    "CATALOG_DIR_ENV",
    "JURISDICTIONS",
    "OFFER_COLUMNS",
    "REGION_COLUMNS",
    "TARGETS",
    "OfferGroup",
    "OfferView",
    "catalog_dir",
    "clear_caches",
    "format_offers",
    "format_regions",
    "gpu_names",
    "load_offers",
    "load_regions",
    "offer_groups",
    "read_offers",
    "read_regions",
]

BUNDLED_DIR = Path(__file__).parent / "data"
CATALOG_DIR_ENV = "MDEPLOY_CATALOG_DIR"
# Every placement target the registry of targets declares (read as data: catalog is below it).
TARGETS = placement_names()

OFFER_COLUMNS = (
    "target",
    "region",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "hourly_usd",
    "country",
    "jurisdiction",
    "estimate",
    "flagged",
    "price_source",
    "source",
    "extra",
)
REGION_COLUMNS = ("target", "region", "country", "jurisdiction", "notes", "access")
# Before region access was recorded (refreshed catalogs written by older versions).
_OLD_REGION_COLUMNS = REGION_COLUMNS[:-1]
ACCESS = ("open", "opt-in", "restricted", "partition")
_CACHE_FORMAT = "mdeploy-catalog-3"


def catalog_dir() -> Path:
    """The directory offers and regions are read from: the env override or the bundled one."""
    override = os.environ.get(CATALOG_DIR_ENV, "").strip()
    return Path(override).expanduser().resolve() if override else BUNDLED_DIR


# ---------------------------------------------------------------- format


def _number(value: float) -> str:
    """Shortest text that reads back as the same float, so rebuilds are byte-identical."""
    return repr(float(value))


def _offer_row(offer: Offer) -> list[str]:
    return [
        offer.target,
        offer.region,
        offer.instance_type,
        offer.gpu,
        str(offer.gpu_count),
        _number(offer.gpu_memory_gib),
        "" if offer.hourly_usd is None else _number(offer.hourly_usd),
        offer.country,
        offer.jurisdiction,
        "true" if offer.estimate else "false",
        offer.flagged or "",
        offer.price_source,
        offer.source,
        json.dumps(offer.extra, sort_keys=True, separators=(",", ":")) if offer.extra else "",
    ]


def _sort_key(offer: Offer) -> tuple[str, str, str, str, int]:
    return (offer.target, offer.region, offer.instance_type, offer.gpu, offer.gpu_count)


def format_offers(offers: Iterable[Offer]) -> str:
    """Render offers as the catalog CSV, in a stable order (target, region, instance type)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OFFER_COLUMNS)
    for offer in sorted(offers, key=_sort_key):
        writer.writerow(_offer_row(offer))
    return buf.getvalue()


def format_regions(regions: Iterable[Region]) -> str:
    """Render regions as the catalog CSV, sorted by target then region."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REGION_COLUMNS)
    for r in sorted(regions, key=lambda r: (r.target, r.region)):
        writer.writerow([r.target, r.region, r.country, r.jurisdiction, r.notes, r.access])
    return buf.getvalue()


_OFFER_FIELDS = (
    "target",
    "region",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "hourly_usd",
    "country",
    "jurisdiction",
    "price_source",
    "estimate",
    "source",
    "flagged",
    "extra",
)  # fmt: skip  (Offer's own field order: a row tuple is Offer(*row))
OfferRow = tuple[Any, ...]
GroupKey = tuple[str, str, str, str]  # target, region, country, jurisdiction


def _parse_row(row: list[str], strings: dict[str, str]) -> OfferRow:
    """One offers.csv row (OFFER_COLUMNS order) as a tuple in Offer's field order."""
    # Repeated texts (provenance, countries, GPU names) share one string object: a smaller
    # cache file that unpickles faster.
    (target, region, instance_type, gpu, count, memory, price, country, jurisdiction,
     estimate, flagged, basis, source, extra) = map(strings.setdefault, row, row)  # fmt: skip
    return (
        target,
        region,
        instance_type,
        gpu,
        int(count),
        float(memory),
        float(price) if price else None,
        country,
        jurisdiction,
        basis,
        estimate == "true",
        source,
        flagged or None,
        extra,  # the JSON text; decoded once per distinct value by _offer_rows
    )


def _read_csv(path: Path, columns: tuple[str, ...], *also: tuple[str, ...]) -> list[list[str]]:
    """Rows of a catalog CSV whose header is `columns` (or one of the older headers `also`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"catalog file {path} is missing",
            hint=f"run `mdeploy catalog refresh --out {path.parent}`, or unset "
            f"{CATALOG_DIR_ENV} to use the bundled catalog",
        ) from None
    rows = list(csv.reader(io.StringIO(text)))
    header = tuple(rows[0]) if rows else ()
    if header != columns and header not in also:
        raise InputError(
            f"{path}: unexpected columns {list(header)}",
            hint=f"expected {', '.join(columns)}; rebuild it with `mdeploy catalog refresh`",
        )
    return rows


def _offer_rows(path: Path) -> tuple[OfferRow, ...]:
    rows = _read_csv(path, OFFER_COLUMNS)
    strings: dict[str, str] = {}
    extras: dict[str, dict[str, str]] = {"": {}}
    out = []
    try:
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(OFFER_COLUMNS):
                raise ValueError(f"line {line}: {len(row)} fields, expected {len(OFFER_COLUMNS)}")
            parsed = _parse_row(row, strings)
            text = parsed[-1]
            if text not in extras:
                extras[text] = json.loads(text)
            out.append((*parsed[:-1], extras[text]))
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}: malformed row: {exc}", hint="rebuild the catalog") from None
    return tuple(out)


def _region_rows(path: Path) -> tuple[tuple[str, ...], ...]:
    """regions.csv rows with `access` last; an older file without it gets the build's rule."""
    from mdeploy.catalog._provenance import region_access

    rows = _read_csv(path, REGION_COLUMNS, _OLD_REGION_COLUMNS)
    old = tuple(rows[0]) == _OLD_REGION_COLUMNS
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if old:
            row = [*row, region_access(row[0], row[1])]
        if len(row) != len(REGION_COLUMNS) or row[-1] not in ACCESS:
            raise InputError(
                f"{path}:{line}: malformed region row {row[:2]}",
                hint=f"access is one of {', '.join(ACCESS)}; rebuild the catalog",
            )
        out.append(tuple(row))
    return tuple(out)


# ---------------------------------------------------------------- parsed-catalog cache


def _cache_file(directory: Path) -> Path | None:
    """
    Where the parsed form of `directory` is cached: `catalog-<directory>-<state>.pickle`, the
    state being mdeploy's version and both files' size and mtime.
    """
    from mdeploy import __version__

    try:
        stats = [(directory / n).stat() for n in ("offers.csv", "regions.csv")]
    except OSError:
        return None  # a missing file: its reader reports it, nothing is cached
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no home directory: run without a cache
            return None
    files = [(s.st_size, s.st_mtime_ns) for s in stats]
    where = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    state = hashlib.sha256(repr((__version__, _CACHE_FORMAT, files)).encode()).hexdigest()[:12]
    return Path(base) / "mdeploy" / f"catalog-{where}-{state}.pickle"


def _valid(data: object) -> bool:
    return (
        isinstance(data, tuple)
        and len(data) == 4
        and data[0] == _CACHE_FORMAT
        and isinstance(data[1], tuple)
        and isinstance(data[2], bytes)
        and isinstance(data[3], tuple)
        and all(isinstance(g, tuple) and len(g) == 3 for g in data[3][:1])
    )


def _read_cache(path: Path) -> tuple[Any, ...] | None:
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh)
    except Exception:  # a missing, truncated or foreign cache is simply rebuilt
        return None
    return data if _valid(data) else None


def _write_cache(path: Path, data: object) -> None:
    """
    Atomic write, replacing the caches of earlier states of the same directory; a cache that
    cannot be written (read-only home) is not an error.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
        prefix = path.name.rsplit("-", 1)[0]
        for stale in path.parent.glob(f"{prefix}-*.pickle"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        pass


class OfferView(NamedTuple):
    """
    An offer row with Offer's field names, for code that only reads offers (the planner).
    Building one is a C-level tuple copy, several times cheaper than an Offer; `extra` may be
    shared between views, so it must not be modified.
    """

    target: str
    region: str
    instance_type: str
    gpu: str
    gpu_count: int
    gpu_memory_gib: float
    hourly_usd: float | None
    country: str
    jurisdiction: str
    price_source: str
    estimate: bool
    source: str
    flagged: str | None
    extra: dict[str, str]


class OfferGroup:
    """
    The offers of one (target, region, country, jurisdiction): the planner checks the
    region-level rules once per group. Its rows stay pickled bytes until first asked for, so
    a region the planner rejects whole costs one object, not one per offer.
    """

    __slots__ = ("_blob", "_rows", "country", "jurisdiction", "names", "region", "target")

    def __init__(
        self,
        key: GroupKey,
        names: tuple[str, ...],
        blob: bytes | None = None,
        rows: tuple[OfferRow, ...] | None = None,
    ) -> None:
        self.target, self.region, self.country, self.jurisdiction = key
        self.names = names  # instance types, in row order
        self._blob, self._rows = blob, rows

    @property
    def rows(self) -> tuple[OfferRow, ...]:
        if self._rows is None:
            self._rows = pickle.loads(self._blob or pickle.dumps(()))
        return self._rows

    def instance_types(self) -> tuple[str, ...]:
        return self.names

    def offers(self) -> list[Offer]:
        return [_offer(row) for row in self.rows]

    def views(self) -> list[OfferView]:
        """The rows as read-only OfferViews: Offer's fields, built in C (the planner's view)."""
        return list(map(OfferView._make, self.rows))


def _group(rows: tuple[OfferRow, ...]) -> list[OfferGroup]:
    """Rows by (target, region, country, jurisdiction), sorted, each group by instance type."""
    groups: dict[GroupKey, list[OfferRow]] = {}
    for row in rows:
        groups.setdefault((row[0], row[1], row[7], row[8]), []).append(row)
    out = []
    for key in sorted(groups):
        ordered = tuple(sorted(groups[key], key=lambda r: r[2]))  # stable: ties keep file order
        out.append(OfferGroup(key, tuple(r[2] for r in ordered), rows=ordered))
    return out


class _Catalog:
    """One catalog directory as parsed (or loaded from the cache) in this process."""

    def __init__(
        self,
        region_rows: tuple[tuple[str, ...], ...],
        groups: list[OfferGroup],
        rows_blob: bytes | None = None,
        rows: tuple[OfferRow, ...] | None = None,
    ) -> None:
        self.region_rows, self.groups = region_rows, groups
        self._rows_blob, self._rows = rows_blob, rows

    @property
    def rows(self) -> tuple[OfferRow, ...]:
        """Every offer row in file order (the catalog commands' view), unpickled on demand."""
        if self._rows is None:
            self._rows = pickle.loads(self._rows_blob or pickle.dumps(()))
        return self._rows


def _dump(rows: object) -> bytes:
    return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


@cache
def _parsed(directory: Path) -> _Catalog:
    """
    `directory` parsed: from the cache when its files are unchanged, else from the CSVs (and
    the cache written). The cache holds the rows twice, once in file order and once per
    region group, each as pickled bytes: a command unpickles only the part it reads.
    """
    cache_path = _cache_file(directory)
    if cache_path is not None:
        data = _read_cache(cache_path)
        if data is not None:
            groups = [OfferGroup(key, names, blob) for key, names, blob in data[3]]
            return _Catalog(data[1], groups, rows_blob=data[2])
    offers = _offer_rows(directory / "offers.csv")
    groups = _group(offers)
    if cache_path is None:  # no regions.csv (offers alone still load) or no cache dir
        return _Catalog((), groups, rows=offers)
    parsed = _Catalog(_region_rows(directory / "regions.csv"), groups, rows=offers)
    specs = tuple((g.target, g.region, g.country, g.jurisdiction) for g in groups)
    blobs = tuple((key, g.names, _dump(g.rows)) for key, g in zip(specs, groups, strict=True))
    _write_cache(cache_path, (_CACHE_FORMAT, parsed.region_rows, _dump(offers), blobs))
    return parsed


def _offer(row: OfferRow) -> Offer:
    offer = Offer(*row[:-1])
    if row[-1]:
        object.__setattr__(offer, "extra", dict(row[-1]))  # each offer owns its dict
    return offer


# ---------------------------------------------------------------- load


def clear_caches() -> None:
    """Forget what this process parsed (after `refresh` rewrote a catalog directory)."""
    read_offers.cache_clear()
    read_regions.cache_clear()
    _parsed.cache_clear()


@cache
def read_offers(directory: Path) -> tuple[Offer, ...]:
    """Every offer in `directory/offers.csv`, flagged ones included; parsed once."""
    return tuple(_offer(row) for row in _parsed(directory).rows)


@cache
def read_regions(directory: Path) -> dict[tuple[str, str], Region]:
    """Every region in `directory/regions.csv`, keyed by (target, region)."""
    rows = _parsed(directory).region_rows or _region_rows(directory / "regions.csv")
    regions = (Region(*row) for row in rows)
    return {(r.target, r.region): r for r in regions}


def offer_groups(
    targets: Iterable[str] | None = None, *, include_flagged: bool = False
) -> list[OfferGroup]:
    """
    The catalog's offers grouped by (target, region, country, jurisdiction), sorted, each
    group's rows by instance type (ties in file order): the order `rank` lists rejections in.

    What the planner reads: it can reject a whole region (residency, access, allow-list)
    without building an Offer for each of its rows, which is what keeps a 100× catalog cheap.
    The grouping itself is cached with the parsed catalog.
    """
    wanted = _check_targets(targets) if targets is not None else None
    out = []
    for group in _parsed(catalog_dir()).groups:
        if wanted is not None and group.target not in wanted:
            continue
        if not include_flagged:
            rows = tuple(row for row in group.rows if row[12] is None)
            if not rows:
                continue
            key = (group.target, group.region, group.country, group.jurisdiction)
            group = OfferGroup(key, tuple(r[2] for r in rows), rows=rows)
        out.append(group)
    return out


def _check_targets(targets: Iterable[str]) -> set[str]:
    wanted = {t.strip().lower() for t in targets}
    known = placement_names()  # live: a target folder added since import counts
    unknown = sorted(wanted - set(known))
    if unknown:
        raise InputError(
            f"unknown target {', '.join(map(repr, unknown))}",
            hint=f"targets are {', '.join(known)}",
        )
    return wanted


def load_offers(
    targets: Iterable[str] | None = None, *, include_flagged: bool = False
) -> list[Offer]:
    """
    Offers the planner may rank, optionally for some targets only.

    Flagged offers (a source price that looks wrong) are left out unless `include_flagged`.
    `kubernetes` has no catalog rows: its offers are the spec's own node pools.
    """
    wanted = _check_targets(targets) if targets is not None else None
    return [
        o
        for o in read_offers(catalog_dir())
        if (wanted is None or o.target in wanted) and (include_flagged or o.flagged is None)
    ]


def load_regions() -> dict[tuple[str, str], Region]:
    """Region → country → jurisdiction for every target, keyed by (target, region)."""
    return dict(read_regions(catalog_dir()))


def gpu_names(*, include_flagged: bool = True) -> list[str]:
    """Canonical GPU names that appear in the catalog's offers, sorted."""
    offers = read_offers(catalog_dir())
    return sorted({o.gpu for o in offers if include_flagged or o.flagged is None})
