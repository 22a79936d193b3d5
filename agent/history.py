"""Job history: per job, the seconds spent in each verdict and cause, kept in node-local SQLite.

One row per (job, diagnosis interval) holds the verdict, the cause, the GPUs' mean utilization,
SM, tensor and DRAM activity, idle GPU-seconds (by cause where diagnosis attributes them) and
energy; one row per job holds its identity and first/last seen. WAL mode and one transaction per
diagnosis: a SIGKILLed agent loses at most the interval being written, never the database.
Retention is bounded by age and by file size; the schema is versioned (`PRAGMA user_version`)
with forward migrations. A full disk pauses history (`paused` says why) and never the sampling.

Job identity is `JobReport.id`, the one the exporter labels with (Slurm job id, pod UID, unit).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nodetune.agent.history_file import FileLoss, file_identity, file_lost
from nodetune.agent.lost_hours import has_data, idle_by_cause, idle_share, lost_seconds, total
from nodetune.diagnosis.findings import GpuVerdict, JobReport, Report

DEFAULT_HISTORY = "/var/lib/nodetune/history.sqlite"
SCHEMA_VERSION = 3


class HistoryError(Exception):
    """The history database cannot be used; `str(exc)` is the one line a person sees."""


# Each migration takes the database from version N-1 to N. Version 1 is the first released
# schema; 2 adds idle seconds by cause and the per-job event log (automatic tuning changes).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE jobs (
               job TEXT PRIMARY KEY, kind TEXT NOT NULL, user TEXT, command TEXT,
               gpus TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL)""",
        """CREATE TABLE intervals (
               job TEXT NOT NULL REFERENCES jobs(job) ON DELETE CASCADE,
               t_start REAL NOT NULL, t_end REAL NOT NULL, verdict TEXT NOT NULL, cause TEXT,
               healthy INTEGER NOT NULL, gpus INTEGER NOT NULL,
               util_pct REAL, sm_pct REAL, tensor_pct REAL, dram_pct REAL,
               idle_gpu_s REAL NOT NULL, energy_j REAL)""",
        "CREATE INDEX intervals_job_t ON intervals(job, t_start)",
        "CREATE INDEX jobs_last_seen ON jobs(last_seen)",
    ),
    2: (
        "ALTER TABLE intervals ADD COLUMN idle_by_cause TEXT NOT NULL DEFAULT '{}'",
        """CREATE TABLE events (
               job TEXT NOT NULL REFERENCES jobs(job) ON DELETE CASCADE,
               t REAL NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL)""",
        "CREATE INDEX events_job_t ON events(job, t)",
    ),
    # 3: lost GPU-seconds by agent/lost_hours.py's definition (idle time plus unproductive busy
    # time); older intervals only knew their idle time, which is what they lost as far as is known
    3: (
        "ALTER TABLE intervals ADD COLUMN lost_gpu_s REAL NOT NULL DEFAULT 0",
        "UPDATE intervals SET lost_gpu_s = idle_gpu_s",
    ),
}


@dataclass
class Interval:
    """One diagnosis interval of one job."""

    t_start: float
    t_end: float
    verdict: str
    cause: str | None
    healthy: bool
    gpus: int
    util_pct: float | None
    sm_pct: float | None
    tensor_pct: float | None
    dram_pct: float | None
    idle_gpu_s: float
    energy_j: float | None
    idle_by_cause: dict[str, float] = field(default_factory=dict)
    lost_gpu_s: float = 0.0  # agent/lost_hours.py: idle GPU-seconds plus unproductive busy ones


@dataclass
class JobSummary:
    """A job as `nodetune history` lists it."""

    job: str
    kind: str
    user: str | None
    command: str | None
    gpus: list[int]
    first_seen: float
    last_seen: float
    seconds: dict[str, float]  # verdict -> seconds
    dominant: str
    lost_gpu_hours: float  # agent/lost_hours.py: idle GPU time by cause plus unproductive busy time
    energy_kwh: float | None
    mean: dict[str, float | None] = field(default_factory=dict)  # util/sm/tensor/dram, time-weighted


@dataclass
class Event:
    t: float
    kind: str
    text: str


@dataclass
class JobTimeline:
    job: JobSummary
    intervals: list[Interval]
    events: list[Event]


def _weighted(rows: list[Interval], key: str) -> float | None:
    num = den = 0.0
    for r in rows:
        v = getattr(r, key)
        if v is not None:
            w = r.t_end - r.t_start
            num += v * w
            den += w
    return round(num / den, 1) if den else None


def _is_full(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("full" in str(exc) or "disk I/O" in str(exc))


class History:
    """The node's job history; every method turns a database error into `HistoryError` or `paused`."""

    def __init__(self, path: str, retention_days: float = 90, max_bytes: int = 256 << 20,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.retention_s = retention_days * 86400
        self.max_bytes = max_bytes
        self.clock = clock
        self.paused: str | None = None  # why writes stopped (disk full); cleared by the next good write
        self.writes = 0
        self.write_errors = 0
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file the connection holds

    # -- opening and migrating ------------------------------------------------------------------

    def open(self, create: bool = True) -> History:
        if not create and not os.path.exists(self.path):
            raise HistoryError(f"{self.path}: no job history (the agent writes it; is it running?)")
        if create:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA foreign_keys = ON")
            if create:
                db.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a crash loses at most the last transaction, never the file
                db.execute("PRAGMA synchronous = NORMAL")
            self._db = db
            self._migrate(create)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: cannot open job history: {exc}") from None
        self._file = file_identity(self.path)
        return self

    def file_lost(self) -> FileLoss | None:
        """Why the file at `path` is no longer the database this connection writes, or None."""
        return file_lost(self.path, self._file)

    def _migrate(self, write: bool) -> None:
        db = self._conn()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{self.path}: schema version {version} is newer than this nodetune's "
                               f"({SCHEMA_VERSION}); upgrade nodetune")
        if version == SCHEMA_VERSION:
            return
        if not write:
            raise HistoryError(f"{self.path}: schema version {version}; the agent migrates it to "
                               f"{SCHEMA_VERSION} when it starts")
        with self._txn():
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[v]:
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise HistoryError(f"{self.path}: history is not open")
        return self._db

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLITE_FULL has rolled back already
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- writing ----------------------------------------------------------------------------------

    def record(self, report: Report, t_start: float, t_end: float) -> bool:
        """Add one diagnosis interval for every job in `report`; False (and `paused`) on failure."""
        gpus = {g.index: g for g in report.gpus}
        # a job that took its turn on a GPU gets a row for the part of the interval it was there
        spans = [(j, j.within(report.window_s, t_start, t_end)) for j in report.jobs]
        rows = [(j, self._interval(j, [gpus[i] for i in j.gpus if i in gpus], *span))
                for j, span in spans if span is not None]
        if not rows:
            return True
        return self._write(lambda db: self._insert(db, rows, t_end))

    def event(self, job: str, kind: str, text: str) -> bool:
        """Log an event (an automatic tuning change) in a job's history."""
        now = self.clock()

        def ins(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR IGNORE INTO jobs VALUES (?, 'unknown', NULL, NULL, '[]', ?, ?)", (job, now, now))
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (job, now, kind, text))

        return self._write(ins)

    def _write(self, fn: Callable[[sqlite3.Connection], None]) -> bool:
        try:
            with self._txn() as db:
                fn(db)
        except sqlite3.Error as exc:
            self.write_errors += 1
            self.paused = (f"{self.path}: disk full, history paused: {exc}" if _is_full(exc)
                           else f"{self.path}: history write failed: {exc}")
            return False
        self.writes += 1
        self.paused = None
        return True

    @staticmethod
    def _interval(j: JobReport, gv: list[GpuVerdict], t0: float, t1: float) -> Interval:
        dt = max(0.0, t1 - t0)

        def mean(key: str) -> float | None:
            vals = [float(v) for g in gv if isinstance(v := g.metrics.get(key), int | float)]
            return round(sum(vals) / len(vals), 1) if vals else None

        power = [float(p) for g in gv if isinstance(p := g.metrics.get("power_w"), int | float)]
        by_cause: dict[str, float] = {}
        lost = 0.0
        for g in gv:
            for cause, secs in idle_by_cause(g, dt).items():
                by_cause[cause] = by_cause.get(cause, 0.0) + secs
            lost += total(lost_seconds(g, dt))
        idle = sum(idle_share(g) for g in gv if has_data(g)) * dt
        return Interval(t0, t1, j.verdict, j.cause, j.healthy, len(gv), mean("util_pct"), mean("sm_active_pct"),
                        mean("tensor_active_pct"), mean("dram_bw_pct"), round(idle, 3),
                        round(sum(power) * dt, 1) if power else None, {k: round(v, 3) for k, v in by_cause.items()},
                        round(lost, 3))

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple[JobReport, Interval]], now: float) -> None:
        for j, iv in rows:
            db.execute("""INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)
                          ON CONFLICT(job) DO UPDATE SET last_seen = excluded.last_seen, gpus = excluded.gpus,
                          kind = excluded.kind, user = COALESCE(excluded.user, jobs.user),
                          command = COALESCE(excluded.command, jobs.command)""",
                       (j.id, j.kind, j.user, j.command, json.dumps(sorted(j.gpus)), iv.t_start, now))
            db.execute("INSERT INTO intervals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (j.id, iv.t_start, iv.t_end, iv.verdict, iv.cause, int(iv.healthy), iv.gpus, iv.util_pct,
                        iv.sm_pct, iv.tensor_pct, iv.dram_pct, iv.idle_gpu_s, iv.energy_j,
                        json.dumps(iv.idle_by_cause, sort_keys=True), iv.lost_gpu_s))

    def prune(self) -> int:
        """Drop jobs older than the retention, then the oldest until the file fits; jobs dropped."""
        cutoff = self.clock() - self.retention_s
        dropped = 0

        def by_age(db: sqlite3.Connection) -> None:
            nonlocal dropped
            dropped += db.execute("DELETE FROM jobs WHERE last_seen < ?", (cutoff,)).rowcount

        if not self._write(by_age):
            return dropped
        while self.size_bytes() > self.max_bytes:
            oldest = self._conn().execute("SELECT job FROM jobs ORDER BY last_seen LIMIT 32").fetchall()
            if not oldest:
                break

            def drop(db: sqlite3.Connection, jobs: list[Any] = oldest) -> None:
                nonlocal dropped
                dropped += db.execute(f"DELETE FROM jobs WHERE job IN ({','.join('?' * len(jobs))})",
                                      [r[0] for r in jobs]).rowcount

            if not self._write(drop):
                break
            # space freed by DELETE is reused by later inserts; VACUUM shrinks the file itself
            try:
                self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn().execute("VACUUM")
            except sqlite3.Error as exc:
                self.paused = f"{self.path}: cannot compact history: {exc}"
                break
        return dropped

    def size_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def integrity(self) -> str:
        return str(self._conn().execute("PRAGMA integrity_check").fetchone()[0])

    # -- reading ----------------------------------------------------------------------------------

    def jobs(self, since: float | None = None, user: str | None = None, limit: int = 50) -> list[JobSummary]:
        """Recent jobs, newest first."""
        q = "SELECT job FROM jobs WHERE last_seen >= ?" + (" AND user = ?" if user else "") + \
            " ORDER BY last_seen DESC LIMIT ?"
        args: list[Any] = [since or 0.0] + ([user] if user else []) + [limit]
        try:
            ids = [r[0] for r in self._conn().execute(q, args).fetchall()]
            return [self._summary(j) for j in ids]
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot read job history: {exc}") from None

    def timeline(self, job: str) -> JobTimeline:
        try:
            ids = [r[0] for r in self._conn().execute(
                "SELECT job FROM jobs WHERE job = ? OR job LIKE ? ORDER BY last_seen DESC", (job, f"{job}%"))]
            if not ids:
                raise HistoryError(f"no job {job!r} in {self.path} (see `nodetune history`)")
            if len(ids) > 1 and job not in ids:
                raise HistoryError(f"{job!r} names {len(ids)} jobs ({', '.join(ids[:4])}...); give more of the id")
            jid = job if job in ids else ids[0]
            return JobTimeline(self._summary(jid), self._intervals(jid), [
                Event(t, k, txt) for t, k, txt in self._conn().execute(
                    "SELECT t, kind, text FROM events WHERE job = ? ORDER BY t", (jid,))])
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot read job history: {exc}") from None

    def _intervals(self, job: str) -> list[Interval]:
        rows = self._conn().execute(
            """SELECT t_start, t_end, verdict, cause, healthy, gpus, util_pct, sm_pct, tensor_pct, dram_pct,
                      idle_gpu_s, energy_j, idle_by_cause, lost_gpu_s FROM intervals WHERE job = ?
               ORDER BY t_start""", (job,))
        out = []
        for r in rows:
            try:
                by_cause = json.loads(r[12]) if r[12] else {}
            except ValueError:
                by_cause = {}
            out.append(Interval(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                                by_cause if isinstance(by_cause, dict) else {}, r[13]))
        return out

    def _summary(self, job: str) -> JobSummary:
        kind, user, command, gpus, first, last = self._conn().execute(
            "SELECT kind, user, command, gpus, first_seen, last_seen FROM jobs WHERE job = ?", (job,)).fetchone()
        ivs = self._intervals(job)
        seconds: dict[str, float] = {}
        for iv in ivs:
            seconds[iv.verdict] = seconds.get(iv.verdict, 0.0) + (iv.t_end - iv.t_start)
        energy = [iv.energy_j for iv in ivs if iv.energy_j is not None]
        try:
            gpu_list = [int(g) for g in json.loads(gpus)]
        except (ValueError, TypeError):
            gpu_list = []
        return JobSummary(job, kind, user, command, gpu_list, first, last,
                          {k: round(v, 1) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])},
                          max(seconds, key=lambda k: seconds[k]) if seconds else "-",
                          round(sum(iv.lost_gpu_s for iv in ivs) / 3600, 4),
                          round(sum(energy) / 3.6e6, 4) if energy else None,
                          {k: _weighted(ivs, k) for k in ("util_pct", "sm_pct", "tensor_pct", "dram_pct")})
