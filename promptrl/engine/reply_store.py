"""Where paid replies are kept (a run's reply_cache/, or language_model.cache_dir): one SQLite
table, `replies.sqlite`, written on a thread of its own.

Kept on the event loop through diskcache, each reply cost ~0.2-0.3 ms of CPU and took up to a
quarter of the efficiency at 32-128 calls in flight. Here the loop appends the reply to the store's
journal (one write(2): the kernel holds it even if the process is killed the next instant) and
hands it over; the writer commits what arrived within half a second in one transaction (5-35 us a
reply; sqlite3 releases the GIL while it works). Woken per reply, the writer's thread switches had
cost the loop ~0.1 ms of CPU per reply. A reply waiting for its commit is read from memory.
`flush()` waits for every commit; `close()` flushes, removes the journal and lets the thread and
files go - the recipes close their stores as a run's last step, and at interpreter exit every store
left open is closed. A process killed before its commits leaves its journal: the next store opened
on the directory (the `--resume`) puts those replies into the table. Only calls in flight are lost.

Directories written by earlier versions (diskcache's `cache.db`) are still read: a run started
before an upgrade resumes without paying again for what it paid.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # Windows: no journal (a kill loses the replies of the writer's last half second)
    fcntl = None

FILE = "replies.sqlite"
_BATCH = 4096  # most writes in one transaction
_GATHER_S = 0.5  # the writer wakes at most this often (the journal keeps what waits meanwhile)
_JOURNALS = "replies.*.journal"  # one per open store that was handed replies; locked while it lives
_INSERT = "INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)"
_OPEN: "weakref.WeakValueDictionary[str, ReplyStore]" = weakref.WeakValueDictionary()
_OPENING = threading.Lock()
log = logging.getLogger("promptrl")


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


def _insert(db: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    """Every row in one transaction, or none (rolled back)."""
    db.execute("BEGIN")
    try:
        db.executemany(_INSERT, rows)
        db.execute("COMMIT")
    except BaseException:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


def _recover_journals(directory: str, db: sqlite3.Connection) -> None:
    """Commit the replies of stores whose process died before committing them (SIGKILL, a crash):
    their journals are no longer locked. A journal still locked belongs to a live store."""
    if fcntl is None:
        return
    for path in glob.glob(os.path.join(glob.escape(directory), _JOURNALS + ".new")):
        try:  # left by a store killed while creating its journal (empty); a fresh one is being created
            if os.path.getmtime(path) < time.time() - 60:
                os.unlink(path)
        except OSError:
            pass
    for path in glob.glob(os.path.join(glob.escape(directory), _JOURNALS)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # recovered by another process meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            with os.fdopen(os.dup(fd), "rb") as journal:
                rows = list(_journal_rows(journal))
            _insert(db, rows)
            os.unlink(path)
        except FileNotFoundError:
            pass
        except (OSError, sqlite3.Error) as error:  # kept for the next store to try again
            log.warning("reply cache: cannot recover the replies in %s (%s); they may be paid again", path, error)
        finally:
            os.close(fd)


def _journal_rows(journal):
    """(key, value) of each whole line `key<TAB>value`; a line cut by the kill (or by a short write,
    after which the journal is no longer written) is left out."""
    for line in journal:
        if not line.endswith(b"\n"):
            break
        key, tab, value = line[:-1].decode("utf-8", "replace").partition("\t")
        if tab:
            yield key, value


class ReplyStore:
    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._path = os.path.join(directory, FILE)
        self._reader = _connect(self._path)
        _recover_journals(directory, self._reader)
        self._journal: int | None = None  # file descriptor of this store's journal, opened at the first put
        self._journal_path = ""
        self._read_lock = threading.Lock()  # one connection, used from whichever thread runs the loop
        self._legacy = None
        if os.path.exists(os.path.join(directory, "cache.db")):  # written by diskcache (earlier versions)
            import diskcache

            self._legacy = diskcache.Cache(directory)
        self._pending: dict[str, str] = {}  # handed over, not yet committed
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._putting = threading.Lock()
        self._flushing = threading.Event()
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
        """Keep `value` (one line of text, e.g. JSON) under `key` (no tab or newline)."""
        if "\t" in key or "\n" in key or "\n" in value:
            raise ValueError("a reply store keeps one-line values under keys without tabs or newlines")
        with self._putting:  # a put on another thread than close() is either whole or refused
            if self._closed:
                raise RuntimeError(f"the reply store of {self.directory} is closed; open it again with reply_store()")
            self._pending[key] = value
            if self._writer is None:
                if fcntl is not None:
                    self._open_journal()
                self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                                name=f"promptrl-replies:{self.directory}")
                self._writer.start()
            if self._journal is not None:
                line = f"{key}\t{value}\n".encode()
                try:
                    if os.write(self._journal, line) != len(line):
                        raise OSError("short write (disk full?)")
                except OSError as error:
                    self._journal_failed(error)
            self._queue.put(key)

    def _open_journal(self) -> None:
        """Created under a name recovery does not look at, locked, then renamed: no other store can
        take it for the journal of a dead process."""
        self._journal_path = os.path.join(self.directory, f"replies.{os.getpid()}.{os.urandom(4).hex()}.journal")
        creating = self._journal_path + ".new"
        try:
            self._journal = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            fcntl.flock(self._journal, fcntl.LOCK_EX)  # released by the kernel when the process dies
            os.rename(creating, self._journal_path)
        except OSError as error:
            self._journal_failed(error)

    def _journal_failed(self, error: OSError) -> None:
        """Replies are still committed from memory, only a kill before their commit would lose them."""
        log.warning("reply cache: cannot write the journal %s (%s); replies are kept, but a kill of this "
                    "process may lose those not yet committed", self._journal_path, error)
        self._close_journal(remove=False)

    def _close_journal(self, remove: bool) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            os.close(journal)  # lets go the lock: a store opened later recovers what is left
        if remove and self._journal_path:
            try:
                os.unlink(self._journal_path)
            except FileNotFoundError:
                pass

    def flush(self) -> None:
        """Return once every reply handed over so far is committed and in replies.sqlite itself (not
        only in its write-ahead log: the file alone can be copied); OSError if one could not be."""
        if self._writer is not None:
            self._flushing.set()
            try:
                self._queue.join()  # the writer marks every reply done, written or not
            finally:
                self._flushing.clear()
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
        with self._putting:
            if self._closed:
                return
            self._closed = True
        flushed = False
        try:
            self.flush()
            flushed = True
        finally:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join(timeout=60)
            with self._putting:
                self._close_journal(remove=flushed)  # kept when a reply is not in the table: recovered later
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
            if self._queue.qsize() < _BATCH:  # let replies gather: one wake and one transaction for many
                self._flushing.wait(_GATHER_S)  # a flush does not wait for the gathering
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
                _insert(db, rows)
            except Exception as error:  # noqa: BLE001 - kept for flush(); the replies stay in memory
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
