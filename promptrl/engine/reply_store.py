"""Where paid replies are kept (a run's reply_cache/, or language_model.cache_dir): one SQLite
table, `replies.sqlite`, written on a thread of its own.

Kept on the event loop through diskcache, each reply cost ~0.2-0.3 ms of CPU and took up to a
quarter of the efficiency at 32-128 calls in flight. Here the loop only hands the reply over; the
writer commits it at once, with whatever else arrived meanwhile in the same transaction (5-35 us a
reply; sqlite3 releases the GIL while it works). A reply waiting for its write is read from memory.
`flush()` waits for every write; `close()` flushes and lets the thread and files go - the recipes
close their stores as a run's last step, and at interpreter exit every store left open is closed. A SIGKILL loses only replies handed over in its last moments.

Directories written by earlier versions (diskcache's `cache.db`) are still read: a run started
before an upgrade resumes without paying again for what it paid.
"""

from __future__ import annotations

import atexit
import os
import queue
import sqlite3
import threading
import weakref

FILE = "replies.sqlite"
_BATCH = 256  # most writes in one transaction
_OPEN: "weakref.WeakValueDictionary[str, ReplyStore]" = weakref.WeakValueDictionary()
_OPENING = threading.Lock()


def reply_store(directory: str) -> "ReplyStore":
    """The process's one store for `directory` (the models of a run share their run's cache)."""
    key = os.path.abspath(directory)
    with _OPENING:
        store = _OPEN.get(key)
        if store is None:
            store = _OPEN[key] = ReplyStore(key)
        return store


def _connect(path: str) -> sqlite3.Connection:
    # autocommit; WAL: readers (other runs sharing a cache_dir included) never wait for the writer
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return db


class ReplyStore:
    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._path = os.path.join(directory, FILE)
        self._reader = _connect(self._path)
        self._read_lock = threading.Lock()  # one connection, used from whichever thread runs the loop
        self._legacy = None
        if os.path.exists(os.path.join(directory, "cache.db")):  # written by diskcache (earlier versions)
            import diskcache

            self._legacy = diskcache.Cache(directory)
        self._pending: dict[str, str] = {}  # handed over, not yet committed
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._starting = threading.Lock()
        self.error: BaseException | None = None  # a write that failed (disk full): told at flush
        self._closed = False

    def get(self, key: str) -> str | None:
        value = self._pending.get(key)
        if value is not None:
            return value
        with self._read_lock:
            row = self._reader.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return row[0]
        return self._legacy.get(key) if self._legacy is not None else None

    def put(self, key: str, value: str) -> None:
        if self._closed:
            raise RuntimeError(f"the reply store of {self.directory} is closed; open it again with reply_store()")
        self._pending[key] = value
        if self._writer is None:
            with self._starting:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                                    name=f"promptrl-replies:{self.directory}")
                    self._writer.start()
        self._queue.put(key)

    def flush(self) -> None:
        """Return once every reply handed over so far is committed and in replies.sqlite itself (not
        only in its write-ahead log: the file alone can be copied); OSError if one could not be."""
        if self._writer is not None:
            self._queue.join()  # the writer marks every reply done, written or not
            try:
                with self._read_lock:
                    self._reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                self.error = self.error or error
        if self.error is not None or self._pending:
            error, self.error = self.error, None
            raise OSError(f"could not keep {len(self._pending)} replies in {self._path}"
                          + (f": {error}" if error else "")) from error

    def close(self) -> None:
        """Flush, stop the writer, close the file (SQLite then removes its -wal and -shm files) and
        leave the process's stores: the next `reply_store` of this directory opens it again."""
        with _OPENING:
            if _OPEN.get(self.directory) is self:
                del _OPEN[self.directory]
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join(timeout=60)
            with self._read_lock:
                self._reader.close()

    def _write_forever(self) -> None:
        try:
            db = _connect(self._path)
        except Exception as error:  # noqa: BLE001 - told at flush; the replies stay in memory
            self.error, db = error, None
        while True:
            first = self._queue.get()
            if first is None:  # close()
                if db is not None:
                    db.close()
                self._queue.task_done()
                return
            if db is None:  # the file cannot be opened: every reply stays in memory, flush says so
                self._queue.task_done()
                continue
            keys = [first]  # then whatever arrived meanwhile: one transaction for all
            while len(keys) < _BATCH:
                try:
                    keys.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                if keys[-1] is None:  # close() asked meanwhile: write these first
                    keys.pop()
                    self._queue.task_done()
                    self._queue.put(None)
                    break
            rows = [(key, self._pending[key]) for key in dict.fromkeys(keys) if key in self._pending]
            try:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)", rows)
                db.execute("COMMIT")
            except Exception as error:  # noqa: BLE001 - kept for flush(); the replies stay in memory
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self.error = error
            else:
                for key, value in rows:
                    if self._pending.get(key) is value:  # not handed over again meanwhile
                        del self._pending[key]
            finally:
                for _ in keys:
                    self._queue.task_done()


@atexit.register
def _close_all() -> None:
    for store in list(_OPEN.values()):
        try:
            store.close()
        except (OSError, sqlite3.Error):
            pass  # the run already reported it, or there is no one left to tell
