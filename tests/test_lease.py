"""Leases in the results store (issue 16, item 4b): several `run-all` on one store never train one model twice.

No real training: the group runner (`bench.execution.run_group`) is replaced by one that records its call and
stores the group's entries, so these tests exercise the leases, the waiting and the summary, not a model.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from alignbench.bench import execution, planning, runall, storing
from alignbench.bench.cli import main
from alignbench.bench.pipeline import Outcome, now
from alignbench.bench.results import ResultRecord, ResultsStore, lease_owner

SUITE = """\
suite: lease_suite
paper: FaPN
table: Table I
task: semantic
recipe: fapn_realtime
metrics: [mIoU, params_m]
rows:
  - {row: fpn_r18, model: rt_fpn_r18, input_size: [64, 128]}
"""


def _run_all_process(suite: Path, tree: Path, database: Path, trained: Path, go: Path, seeds: list[int], train_s: float,
                     summary: Path) -> multiprocessing.Process:
    """A `run-all` in a forked process (started, not yet let go: it waits for the file `go`) whose group runner
    appends each training key it is given to `trained`, waits `train_s` and stores the group's entries; its
    summary goes to `summary` as JSON. Forked, so it needs no second start-up of Python and torch."""

    def fake_training(group, store, device, checkpoint_root):
        with open(trained, "a") as log:
            log.write(f"{group[0].training_key} {os.getpid()}\n")
        time.sleep(train_s)
        for entry in group:
            _store_entry(store, entry)

    def run() -> None:
        # Ctrl-C as in a terminal: a shell starts background jobs with SIGINT ignored, and Python then installs
        # no KeyboardInterrupt handler, so a test run from such a job would otherwise see SIGINT do nothing
        signal.signal(signal.SIGINT, signal.default_int_handler)
        execution.run_group = fake_training  # in the child only
        execution.LEASE_POLL_S = 0.05
        while not go.exists():
            time.sleep(0.005)
        request = planning.RunRequest(suites=(str(suite),), data=(f"cityscapes={tree}",), seeds=tuple(seeds))
        result = runall.run_all(request, database, device="cpu", progress=False, report=False)
        summary.write_text(json.dumps({key: getattr(result, key) for key in ("completed_before", "ran", "waited", "by_others", "failed")}))

    process = multiprocessing.get_context("fork").Process(target=run)
    process.start()
    return process


@pytest.fixture
def suite(tmp_path) -> Path:
    path = tmp_path / "lease_suite.yaml"
    path.write_text(SUITE)
    return path


def _entries(suite: Path, tree: Path, seeds: list[int]) -> list[planning.Entry]:
    from alignbench.bench.suites import load_suites
    from alignbench.bench.tasks import resolve_data

    entries, _ = planning.plan(load_suites([str(suite)]), resolve_data([f"cityscapes={tree}"]), "smoke", seeds)
    return entries


def _store_entry(store: ResultsStore, entry: planning.Entry) -> None:
    store.add(storing.result_record(entry, Outcome({"mIoU": 0.5}, now(), now(), 0.1, code=entry.pipeline.code), "cpu"))


def _leases(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT training_key, owner FROM leases").fetchall()


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(finished.stdout)


def test_two_run_all_on_one_store_train_each_model_once(suite, small_tree, tmp_path):
    seeds = [0, 1, 2, 3]  # four training keys
    database, trained, go = tmp_path / "results.sqlite", tmp_path / "trained.txt", tmp_path / "go"
    ResultsStore(database).close()  # created once, before both start
    expected = {entry.training_key for entry in _entries(suite, small_tree, seeds)}  # (the forked processes inherit its caches)
    processes = [_run_all_process(suite, small_tree, database, trained, go, seeds, 0.3, tmp_path / f"summary{index}.json")
                 for index in range(2)]
    go.touch()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    summaries = [json.loads((tmp_path / f"summary{index}.json").read_text()) for index in range(2)]
    keys = [line.split()[0] for line in trained.read_text().splitlines()]
    assert sorted(keys) == sorted(expected)  # each model trained exactly once, by one of the two
    assert sum(summary["ran"] for summary in summaries) == len(seeds)
    for summary in summaries:  # every entry accounted for in each process: found done, run here, or run by the other
        assert not summary["failed"]
        assert summary["completed_before"] + summary["ran"] + summary["by_others"] == len(seeds), summary
    with ResultsStore(database, create=False) as store:
        assert sorted(record.seed for record in store.records()) == seeds
    assert _leases(database) == []  # every lease released


def _holder_script() -> str:
    """A process that takes the lease on argv[2] in store argv[1], says so (argv[3]), waits for argv[4], then, as
    argv[5] says, stores the entry (argv[6], JSON) and releases, releases without storing, or stays until killed."""
    return textwrap.dedent("""
        import json, sys, time
        from pathlib import Path
        from alignbench.bench.results import ResultRecord, ResultsStore
        database, key, taken, finish, behaviour, record = sys.argv[1:7]
        store = ResultsStore(database)
        assert store.take_lease(key) is None
        Path(taken).touch()
        while not Path(finish).exists():
            time.sleep(0.02)
        if behaviour == "hang":
            time.sleep(600)
        if behaviour == "store":
            store.add(ResultRecord(**json.loads(record)))
        store.release_lease(key)
    """)


@pytest.mark.parametrize("behaviour", ["store", "fail", "killed"],
                         ids=["holder-stores-its-entry", "holder-fails-without-storing", "holder-killed"])
def test_a_live_lease_makes_run_all_wait_then_run_only_what_is_missing(behaviour, suite, small_tree, tmp_path, monkeypatch, capsys):
    """The second process runs the other group first, waits for the held one, then skips it when the holder
    stored it, or runs it when the holder failed or died."""
    database, taken, finish = tmp_path / "results.sqlite", tmp_path / "taken", tmp_path / "finish"
    first, held = _entries(suite, small_tree, [0, 1])
    record = storing.result_record(held, Outcome({"mIoU": 0.25}, now(), now(), 0.1, code=held.pipeline.code), "cpu")
    record_json = json.dumps({key: value for key, value in record.__dict__.items() if key not in ("id", "statistics")})
    ResultsStore(database).close()
    holder = subprocess.Popen([sys.executable, "-c", _holder_script(), database, held.training_key, taken, finish,
                               "hang" if behaviour == "killed" else behaviour, record_json], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not taken.exists():
        assert holder.poll() is None and time.monotonic() < deadline, holder.stderr.read() if holder.poll() is not None else "timeout"
        time.sleep(0.02)

    trained = []

    def end_the_holder_later():
        time.sleep(0.5)  # this process is polling by now
        finish.touch()
        if behaviour == "killed":
            time.sleep(0.2)
            holder.send_signal(signal.SIGKILL)
            holder.wait()  # reaped, as a shell reaps a killed run-all

    def fake_training(group, store, device, checkpoint_root):
        trained.append(group[0].training_key)
        if len(trained) == 1:  # the free group: the held one must not have run yet
            threading.Thread(target=end_the_holder_later).start()
        for entry in group:
            _store_entry(store, entry)

    monkeypatch.setattr(execution, "run_group", fake_training)
    monkeypatch.setattr(execution, "LEASE_POLL_S", 0.05)
    status = main(["run-all", "--suite", str(suite), "--data", f"cityscapes={small_tree}", "--device", "cpu",
                   "--results", str(database), "--seeds", "0,1", "--no-report"])
    holder.wait(timeout=60)
    out = capsys.readouterr().out
    assert status == 0, out
    if behaviour == "store":
        assert trained == [first.training_key]  # waited for the holder, then found its entry stored
        assert "1 run, 0 failed" in out and "1 waited for another run-all on this store, 1 run by it" in out
    else:  # the holder failed or died without storing: its group is run here, once
        assert trained == [first.training_key, held.training_key]
        assert "2 run, 0 failed" in out and "1 waited for another run-all on this store, 0 run by it" in out
    with ResultsStore(database, create=False) as store:
        assert sorted(record.seed for record in store.records()) == [0, 1]
    assert _leases(database) == []


def _zombie_pid(request) -> int:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    child.kill()
    time.sleep(0.2)
    request.addfinalizer(child.wait)
    return child.pid


def _alive_pid(request) -> int:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    request.addfinalizer(lambda: (sleeper.kill(), sleeper.wait()))
    return sleeper.pid


@pytest.mark.parametrize(
    "owner, age_s, taken_over",
    [
        ("dead-pid", 0, True),
        ("live-pid", 0, False),
        ("live-pid", 700, True),  # a hung or reused pid: the heartbeat decides
        ("other-host", 0, False),
        ("other-host", 700, True),
        ("this-process", 0, True),  # a lease this process already holds is its own
        ("zombie-pid", 0, True),  # killed, not yet reaped by its parent
    ],
)
def test_lease_of_a_dead_holder_is_taken_over(owner, age_s, taken_over, tmp_path, request):
    database = tmp_path / "results.sqlite"
    pid = {"dead-pid": _dead_pid, "live-pid": lambda: _alive_pid(request), "zombie-pid": lambda: _zombie_pid(request)}.get(owner)
    holder = {"other-host": "elsewhere.example:4242", "this-process": lease_owner()}.get(owner) or f"{socket.gethostname()}:{pid()}"
    with ResultsStore(database) as store:
        with store.transaction() as connection:
            stamp = time.time() - age_s
            connection.execute("INSERT INTO leases VALUES ('key', ?, ?, ?)", (holder, stamp, stamp))
        found = store.take_lease("key")
    assert found == (None if taken_over else holder)
    assert _leases(database) == [("key", lease_owner() if taken_over else holder)]


def test_lease_is_taken_by_one_of_several_processes_asking_at_once(tmp_path):
    """Eight processes ask for one key at the same moment: exactly one gets it (one IMMEDIATE transaction each)."""
    database, go, done = tmp_path / "results.sqlite", tmp_path / "go", tmp_path / "done"
    ResultsStore(database).close()
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from alignbench.bench.results import ResultsStore
        store = ResultsStore(sys.argv[1])
        print("ready", flush=True)
        while not Path(sys.argv[2]).exists():
            time.sleep(0.002)
        print("taken" if store.take_lease("key") is None else "held", flush=True)
        while not Path(sys.argv[3]).exists():  # stay alive: a dead holder's lease may be taken over
            time.sleep(0.02)
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script, database, go, done], stdout=subprocess.PIPE, text=True)
                 for _ in range(8)]
    assert [process.stdout.readline().strip() for process in processes] == ["ready"] * 8
    go.touch()
    answers = [process.stdout.readline().strip() for process in processes]
    done.touch()
    assert all(process.wait(timeout=60) == 0 for process in processes)
    assert sorted(answers) == ["held"] * 7 + ["taken"]


def test_holding_a_lease_beats_its_heartbeat_and_releases_it(tmp_path):
    database = tmp_path / "results.sqlite"
    with ResultsStore(database) as store:
        assert store.take_lease("key") is None
        with pytest.raises(RuntimeError, match="a failed training"), store.holding_lease("key", heartbeat_s=0.05):
            time.sleep(0.4)
            with sqlite3.connect(database) as connection:
                acquired, heartbeat = connection.execute("SELECT acquired_at, heartbeat FROM leases").fetchone()
            raise RuntimeError("a failed training")
    assert heartbeat > acquired
    assert _leases(database) == []  # released by the failure


@pytest.mark.parametrize("signal_number, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_lease_is_released_when_run_all_is_terminated(signal_number, status, suite, small_tree, tmp_path):
    """SIGTERM ends run-all through SystemExit(143), SIGINT through KeyboardInterrupt (exit status 1 in a
    multiprocessing child): either way the lease held while "training" is released."""
    database, trained, go = tmp_path / "results.sqlite", tmp_path / "trained.txt", tmp_path / "go"
    go.touch()
    _entries(suite, small_tree, [0])  # the model's code identity, computed once here (the forked process inherits it)
    process = _run_all_process(suite, small_tree, database, trained, go, [0], 600, tmp_path / "summary.json")
    deadline = time.monotonic() + 120
    while not trained.exists():
        assert process.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    assert len(_leases(database)) == 1  # held while it trains
    os.kill(process.pid, signal_number)
    process.join(timeout=60)
    assert process.exitcode == status
    assert _leases(database) == []


def test_schema_3_store_gets_the_leases_table_in_place(tmp_path):
    database = tmp_path / "old.sqlite"
    with ResultsStore(database) as store:
        for seed in range(3):
            store.add(ResultRecord("s", "r", seed, "m", "semantic", "smoke", "synthetic", f"h{seed}", {}, {"mIoU": 0.5}, "t0", "t1", 1.0,
                                   statistics={"iou": [0.5, 0.25]}))
    with sqlite3.connect(database) as connection:  # as schema 3 left it
        connection.execute("DROP TABLE leases")
        connection.execute("PRAGMA user_version = 3")
    before = database.read_bytes()
    with ResultsStore(database, create=False) as reader:  # readers read it as it is
        assert len(reader.records()) == 3
    assert database.read_bytes() == before
    with ResultsStore(database) as store:
        records = store.records()
        assert [record.seed for record in records] == [0, 1, 2]
        assert store.statistics(records[0].id)["iou"].tolist() == [0.5, 0.25]
        assert store.take_lease("key") is None
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 4


def test_a_process_only_releases_its_own_lease(tmp_path):
    database = tmp_path / "results.sqlite"
    other = f"elsewhere.example:{os.getpid()}"
    with ResultsStore(database) as store:
        with store.transaction() as connection:
            connection.execute("INSERT INTO leases VALUES ('key', ?, ?, ?)", (other, time.time(), time.time()))
        store.release_lease("key")
    assert _leases(database) == [("key", other)]
