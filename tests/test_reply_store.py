"""The reply store: replies handed over on the event loop, committed by a writer thread, read back
by the same process before and after their commit, by another store after `flush`, and from a
directory an earlier version wrote with diskcache."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

from promptrl.engine.reply_store import FILE, ReplyStore, reply_store


def committed(directory) -> dict:
    db = sqlite3.connect(directory / FILE)
    try:
        return dict(db.execute("SELECT key, value FROM replies").fetchall())
    finally:
        db.close()


def test_a_reply_is_read_back_before_and_after_its_commit(tmp_path):
    store = ReplyStore(str(tmp_path))
    store.put("k1", "v1")
    assert store.get("k1") == "v1"  # from memory, or from the table if the writer was quick
    store.flush()
    assert committed(tmp_path) == {"k1": "v1"} and store.get("k1") == "v1" and store.get("k2") is None
    assert ReplyStore(str(tmp_path)).get("k1") == "v1"  # another store (a resumed run) reads it


def test_many_replies_from_many_threads_are_all_committed(tmp_path):
    store = reply_store(str(tmp_path))
    assert reply_store(str(tmp_path / ".." / tmp_path.name)) is store  # one store per directory

    def put(offset):
        for i in range(500):
            store.put(f"k{offset + i}", f"v{offset + i}")

    threads = [threading.Thread(target=put, args=(t * 1000,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    assert committed(tmp_path) == {f"k{t * 1000 + i}": f"v{t * 1000 + i}" for t in range(4) for i in range(500)}
    assert store._pending == {}


def test_replies_are_on_disk_when_the_process_exits_without_a_flush(tmp_path):
    code = (f"from promptrl.engine.reply_store import reply_store\n"
            f"store = reply_store({str(tmp_path)!r})\n"
            "for i in range(300): store.put(f'k{i}', 'v')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]  # closed: no -wal or -shm left beside it
    assert len(committed(tmp_path)) == 300


def test_replies_handed_over_just_before_a_kill_are_recovered_by_the_next_store(tmp_path):
    """The writer commits at most every half second; the journal keeps what a SIGKILL would lose."""
    code = (f"import os, signal\nfrom promptrl.engine.reply_store import reply_store\n"
            f"store = reply_store({str(tmp_path)!r})\n"
            "for i in range(300): store.put(f'k{i}', f'\"v{i}\"')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == -9
    assert len(committed(tmp_path)) < 300  # the kill came before the writer's commit
    assert len(list(tmp_path.glob("replies.*.journal"))) == 1
    store = ReplyStore(str(tmp_path))  # the resumed run's store
    assert all(store.get(f"k{i}") == f'"v{i}"' for i in range(300))
    assert len(committed(tmp_path)) == 300 and not list(tmp_path.glob("replies.*.journal"))
    store.close()


def test_a_live_stores_journal_is_left_to_it_and_a_line_cut_by_a_kill_is_left_out(tmp_path):
    live = ReplyStore(str(tmp_path))
    live.put("k", '"v"')
    journal = next(tmp_path.glob("replies.*.journal"))
    ReplyStore(str(tmp_path)).close()  # another process's store, opened meanwhile
    assert journal.exists()  # locked by the live store: its writer commits it
    live.close()
    assert not journal.exists() and committed(tmp_path) == {"k": '"v"'}
    (tmp_path / "replies.1.dead.journal").write_bytes(b'a\t"1"\nb\tany text\nno tab\nd\t"cut')
    (tmp_path / "replies.2.dead.journal.new").write_bytes(b"")  # a store killed while creating its journal
    os.utime(tmp_path / "replies.2.dead.journal.new", (1, 1))
    ReplyStore(str(tmp_path)).close()
    assert committed(tmp_path) == {"k": '"v"', "a": '"1"', "b": "any text"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


def test_a_journal_is_never_seen_by_another_store_before_it_is_locked(tmp_path, monkeypatch):
    """Two runs sharing a cache_dir: a store opened while another creates its journal must not take
    it for a dead process's journal and remove it."""
    import fcntl

    from promptrl.engine import reply_store as module

    real_flock = fcntl.flock

    def flock_after_another_store_opened(fd, operation):
        if operation == fcntl.LOCK_EX:  # the journal being created, just before its lock
            ReplyStore(str(tmp_path)).close()
        return real_flock(fd, operation)

    monkeypatch.setattr(module.fcntl, "flock", flock_after_another_store_opened)
    store = ReplyStore(str(tmp_path))
    store.put("k", '"v"')
    monkeypatch.setattr(module.fcntl, "flock", real_flock)
    [journal] = tmp_path.glob("replies.*.journal")
    assert journal.read_text() == 'k\t"v"\n' and journal.stat().st_nlink == 1
    store.close()


def test_after_a_flush_the_file_alone_holds_every_reply(tmp_path):
    store = ReplyStore(str(tmp_path))
    for i in range(50):
        store.put(f"k{i}", "v")
    store.flush()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / FILE).write_bytes((tmp_path / FILE).read_bytes())  # the .sqlite file without its -wal
    assert len(committed(copy)) == 50
    store.close()


def test_a_directory_written_by_diskcache_is_still_read(tmp_path):
    import diskcache

    with diskcache.Cache(str(tmp_path)) as old:  # how earlier versions kept replies
        old["paid"] = "reply"
    store = ReplyStore(str(tmp_path))
    assert store.get("paid") == "reply" and store.get("other") is None


def test_a_failed_write_is_told_at_flush_and_the_reply_stays_readable(tmp_path):
    store = ReplyStore(str(tmp_path))
    with sqlite3.connect(tmp_path / FILE) as db:
        db.execute("CREATE TRIGGER full BEFORE INSERT ON replies BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    store.put("k", "v")
    try:
        store.flush()
    except OSError as error:
        assert "could not keep 1 replies in" in str(error) and "disk full" in str(error)
    else:
        raise AssertionError("the failed write was not told")
    assert store._pending == {"k": "v"}


def test_a_closed_store_is_let_go_and_opened_again(tmp_path):
    store = reply_store(str(tmp_path))
    store.put("k", "v")
    store.close()
    store.close()  # twice: models of a run share their store
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]
    assert not any(t.name.startswith("promptrl-replies") and t.is_alive() for t in threading.enumerate()
                   if str(tmp_path) in t.name)
    again = reply_store(str(tmp_path))
    assert again is not store and again.get("k") == "v"
    again.close()


def test_a_store_whose_file_cannot_be_opened_says_so_at_flush_instead_of_hanging(tmp_path):
    import shutil

    store = ReplyStore(str(tmp_path / "gone"))
    shutil.rmtree(tmp_path / "gone")  # the writer cannot open its file
    store.put("k", "v")
    try:
        store.flush()
    except OSError as error:
        assert "could not keep 1 replies" in str(error)
    else:
        raise AssertionError("the lost write was not told")
    assert store.get("k") == "v"


def test_the_reply_key_is_the_one_earlier_runs_kept_their_replies_under(tmp_path):
    """The key is assembled from parts encoded once per prompt state; it must stay the sha256 of the
    whole request's sorted JSON, or every run kept before would pay again on --resume - also after a
    setting, a demonstration or an extra is changed in place."""
    import hashlib
    import json

    import pydantic

    from promptrl.language_model import LanguageModel, schema_of
    from promptrl.modules import Generator
    from promptrl.program import Input

    class Question(pydantic.BaseModel):
        question: str

    class Answer(pydantic.BaseModel):
        answer: str

    lm = LanguageModel("openai/m", api_base="http://user:pw@127.0.0.1:9/v1", top_p=0.9,
                       extra_body={"b": 1, "a": "é"})
    generator = Generator(Answer, lm)
    generator(Input(Question))
    schema = schema_of(Answer)

    def documented(messages, seed):
        payload = [lm.model, "http://127.0.0.1:9/v1", lm.model_path, lm.temperature, lm.max_tokens,
                   {"top_p": lm.extra["top_p"], "extra_body": lm.extra["extra_body"]}, seed, messages, schema]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def check():
        messages = generator.render_messages({"question": "what is 2 + 2, ü?"})
        for seed in (None, 0, 17):
            for sent in (messages, messages[-1:], []):
                assert lm._cache_key(sent, schema, seed) == documented(sent, seed)
        return lm._cache_key(messages, schema, 3)

    seen = {check()}
    generator.examples = [{"input": {"question": "q"}, "output": {"answer": "a"}}] * 2
    seen.add(check())
    generator._prompt_prefix()[1]["content"] = '{"question": "changed in place"}'
    seen.add(check())
    lm.temperature = 0.5
    seen.add(check())
    lm.extra["extra_body"]["b"] = 2  # a nested extra changed in place
    seen.add(check())
    lm.temperature = 1
    seen.add(check())
    lm.temperature = 1.0  # equal, but encoded otherwise
    seen.add(check())
    assert len(seen) == 7  # each change made another key
    lm.extra["client_secret"] = threading.Lock()  # cannot be copied: the settings are encoded per call
    lm.extra["extra_body"]["b"] = 3
    lm._public_extra = lambda: {"top_p": lm.extra["top_p"], "extra_body": lm.extra["extra_body"]}
    assert check() not in seen
