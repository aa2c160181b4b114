"""Key generation for POST /gen_key: material made in scratch homes by our own gpg-agents, raced
when cores are idle, the losers pooled or shredded, user ids bound without a keyring listing, and
crash leftovers shredded by reconcile. Real gpg and gpg-agent in temporary homes."""

import fcntl
import logging
import os
import queue
import stat
import threading
import time

import pytest

from conftest import run_admin
from pkgsign import _gnupg
from pkgsign.config import ConfigError, load_config
from pkgsign.keystore import KeyStore, key_record


def _store(tmp_path, algorithm="rsa2048", **keygen):
    root = tmp_path / "inst"
    run_admin("init", str(root), "--algorithm", algorithm)
    conf = root / "pkgsign.conf"
    extra = "".join("%s = %s\n" % item for item in keygen.items())
    conf.write_text(conf.read_text().replace("[keygen]\n", "[keygen]\n" + extra))
    return KeyStore(load_config(str(conf)))


@pytest.fixture
def stores():
    made = []
    yield made
    for store in made:
        if store.pool is not None:
            store.pool.stop()
        store.gnupg.kill_agent()


def _scratch_homes(store):
    return [name for name in os.listdir(store.maker.scratch_root) if not name.startswith(".")]


def _key_files(store):
    return sorted(name[:-4] for name in os.listdir(store.private_keys_dir) if name.endswith(".key"))


def _wait(condition, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_metadata_of_a_bound_key_equals_what_gpg_lists(tmp_path, stores):
    store = _store(tmp_path, generation_race=1, pool_size=1, pool_algorithms="ed25519")
    stores.append(store)
    assert store.pool.refill() == 1  # ed25519 is bound from the pool, rsa2048 from a scratch generation
    cases = [("Real Name", "user#proj@copr.test", "a comment", "rsa2048", 10),
             ("ed", "ed#proj@copr.test", None, "ed25519", 0)]
    for name, email, comment, algorithm, days in cases:
        created, record = store.generate(name, email, comment, algorithm, days, created_by="tok")
        assert created
        listed = _gnupg.find_secret_key_by(store.gnupg, record["fingerprint"])
        assert record == key_record(listed, email, origin="generated", created_by="tok")
        assert record["algorithm"] == algorithm and record["signing_keygrip"] == listed.keygrip
        assert (record["expires"] is None) == (days == 0)
        assert store.get_metadata(email) == record
    assert store.pool.counts() == {"ed25519": 0}
    assert _scratch_homes(store) == []
    assert os.listdir(store.pending_dir) == []


def test_race_uses_the_first_generation_and_stops_the_other_without_a_pool(tmp_path, stores, caplog):
    store = _store(tmp_path, generation_race=2)
    stores.append(store)
    caplog.set_level(logging.INFO, logger="pkgsign.keypool")
    assert store.maker.width_for("rsa2048") == 2 and store.maker.width_for("ed25519") == 1
    created, record = store.generate("race", "race#p@copr.test", algorithm="rsa2048")
    assert created
    assert "raced 2 rsa2048 generations" in caplog.text
    assert "rsa2048 generation that lost the race" in caplog.text  # nothing wasted silently
    # only the bound key's material is left anywhere: the loser's home is shredded
    assert _key_files(store) == [record["signing_keygrip"]]
    assert _scratch_homes(store) == []
    assert store.maker.width_for("rsa2048") == 2  # every generation has ended


def test_race_loser_goes_into_the_pool(tmp_path, stores):
    store = _store(tmp_path, generation_race=2, pool_size=2, pool_algorithms="rsa2048")
    stores.append(store)
    assert store.pool.counts() == {"rsa2048": 0}
    created, record = store.generate("race", "pooled#p@copr.test", algorithm="rsa2048")
    assert created
    assert _wait(lambda: store.pool.counts()["rsa2048"] == 1 and not _scratch_homes(store))
    ready = os.listdir(store.pool.ready_dir)
    assert stat.S_IMODE(os.stat(os.path.join(store.pool.ready_dir, ready[0])).st_mode) == 0o600
    assert _key_files(store) == [record["signing_keygrip"]]
    # the spare binds like any pool key
    created, second = store.generate("next", "next#p@copr.test", algorithm="rsa2048")
    assert created and ready[0] == "rsa2048-%s.key" % second["signing_keygrip"]
    assert _gnupg.find_secret_key_by(store.gnupg, second["fingerprint"]).keygrip == second["signing_keygrip"]


def test_keys_for_different_emails_are_generated_in_parallel(tmp_path, stores):
    store = _store(tmp_path, generation_race=1)
    stores.append(store)
    peak = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak.append(store.maker._active)  # pylint: disable=protected-access
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(store.generate("p", "par%d#p@copr.test" % n,
                                                                                 algorithm="rsa3072")))
               for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert [created for created, _record in results] == [True, True]
    assert max(peak) == 2, "generations for two emails did not overlap"


def test_same_email_from_many_threads_makes_one_key(tmp_path, stores):
    store = _store(tmp_path, generation_race=2)
    stores.append(store)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.generate("same", "same#p@copr.test",
                                                                             algorithm="rsa2048")))
               for _index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for created, _record in results) == [False] * 7 + [True]
    assert len({record["fingerprint"] for _created, record in results}) == 1
    assert len(_gnupg.find_keys_by(store.gnupg, "<same#p@copr.test>")) == 1


def test_reconcile_shreds_unbound_material_and_abandoned_scratch_homes(tmp_path, stores):
    store = _store(tmp_path)
    stores.append(store)
    # a generation whose server died after the material was in place but before the bind
    keygrip = "AB" * 20
    unbound = os.path.join(store.private_keys_dir, keygrip + ".key")
    _gnupg.write_private_file(unbound, b"(private-key stand-in)")
    _gnupg.write_private_file(os.path.join(store.pending_dir, "lost%23p@copr.test.json"),
                              b'{"name_email": "lost#p@copr.test", "started": 1, "keygrip": "%s"}' % keygrip.encode())
    # an abandoned scratch home (nobody holds its lock) and one still in use
    abandoned = os.path.join(store.maker.scratch_root, "gen-abandoned")
    os.makedirs(os.path.join(abandoned, "gnupg", "private-keys-v1.d"))
    open(os.path.join(abandoned, "lock"), "w").close()
    _gnupg.write_private_file(os.path.join(abandoned, "gnupg", "private-keys-v1.d", "CD" * 20 + ".key"), b"x")
    busy = os.path.join(store.maker.scratch_root, "gen-busy")
    os.makedirs(busy)
    busy_fd = os.open(os.path.join(busy, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(busy_fd, fcntl.LOCK_EX)
    try:
        fixed = store.reconcile()
        assert ("generation", "lost#p@copr.test") in fixed
        assert not os.path.exists(unbound)
        assert os.listdir(store.pending_dir) == []
        assert not os.path.exists(abandoned)
        assert os.path.isdir(busy)
    finally:
        os.close(busy_fd)
    assert store.maker.sweep() == 1 and _scratch_homes(store) == []


def test_a_generation_is_cancelled_at_once(tmp_path):
    home = tmp_path / "scratch"
    generation = _gnupg.KeyMaterialGeneration(str(home), "rsa4096")
    time.sleep(0.2)
    started = time.monotonic()
    generation.cancel()
    with pytest.raises(_gnupg.GpgError, match="cancelled"):
        generation.wait()
    assert time.monotonic() - started < 2
    assert list(home.glob("private-keys-v1.d/*.key")) == []


def test_key_material_generation_makes_one_unprotected_key(tmp_path):
    home = tmp_path / "scratch"
    keygrip = _gnupg.KeyMaterialGeneration(str(home), "ed25519").wait()
    path = home / "private-keys-v1.d" / (keygrip + ".key")
    assert stat.S_IMODE(os.stat(str(path)).st_mode) & 0o077 == 0
    text = path.read_bytes()
    assert b"(private-key" in text and b"protected" not in text


def test_generation_race_option(tmp_path):
    root = tmp_path / "cfg"
    run_admin("init", str(root), "--algorithm", "ed25519")
    conf = root / "pkgsign.conf"
    original = conf.read_text()
    assert 1 <= load_config(str(conf)).generation_race <= 4  # auto: the cores, at most 4
    for value, expected in (("3", 3), ("1", 1), ("auto", None)):
        conf.write_text(original.replace("[keygen]\n", "[keygen]\ngeneration_race = %s\n" % value))
        race = load_config(str(conf)).generation_race
        assert race == expected if expected else 1 <= race <= 4
    for bad in ("0", "many", "65"):
        conf.write_text(original.replace("[keygen]\n", "[keygen]\ngeneration_race = %s\n" % bad))
        with pytest.raises(ConfigError, match="generation_race"):
            load_config(str(conf))


def test_reconcile_restores_a_keybox_left_between_gpgs_two_renames(tmp_path, stores):
    store = _store(tmp_path)
    stores.append(store)
    created, record = store.generate("kbx", "kbx#p@copr.test", algorithm="ed25519")
    assert created
    keybox = os.path.join(store.gnupg.homedir, "pubring.kbx")
    os.rename(keybox, keybox + "~")  # what a gpg killed between its renames leaves
    store.reconcile()
    assert _gnupg.find_secret_key_by(store.gnupg, record["fingerprint"]) is not None


def test_closing_the_maker_stops_running_generations_and_shreds_their_homes(tmp_path, stores):
    store = _store(tmp_path, generation_race=2)
    stores.append(store)
    candidate = store.maker._start("rsa4096", queue.Queue(), counted=True)  # pylint: disable=protected-access
    assert _scratch_homes(store) and store.maker.width_for("rsa2048") == 1
    store.maker.close()
    assert candidate.done.is_set() and candidate.keygrip is None and "cancelled" in candidate.error.message
    assert _scratch_homes(store) == []
    assert store.maker.width_for("rsa2048") == 2


def test_a_pool_key_ready_during_generation_is_taken_and_the_generation_pooled(tmp_path, stores):
    store = _store(tmp_path, generation_race=1, pool_size=1, pool_algorithms="rsa2048")
    stores.append(store)
    made = tmp_path / "made"
    keygrip = _gnupg.KeyMaterialGeneration(str(made), "rsa2048").wait()
    # the service's generation starts late (a slow machine), so the pool key is there first
    slow_agent = tmp_path / "slow-gpg-agent"
    slow_agent.write_text("#!/bin/sh\nsleep 2\nexec gpg-agent \"$@\"\n")
    slow_agent.chmod(0o755)
    store.maker.agent_binary = str(slow_agent)
    results = []

    def generate():
        results.append(store.generate("late", "late#p@copr.test", algorithm="rsa2048"))

    worker = threading.Thread(target=generate)
    started = time.monotonic()
    worker.start()
    time.sleep(0.3)
    os.rename(str(made / "private-keys-v1.d" / (keygrip + ".key")),
              os.path.join(store.pool.ready_dir, "rsa2048-%s.key" % keygrip))
    worker.join()
    assert time.monotonic() - started < 1.8
    created, record = results[0]
    assert created and record["signing_keygrip"] == keygrip
    # the generation that lost goes into the pool once it has finished
    assert _wait(lambda: store.pool.counts()["rsa2048"] == 1 and not _scratch_homes(store))
    assert _key_files(store) == [keygrip]
