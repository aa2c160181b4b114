"""Key generation for POST /gen_key: material made in scratch homes by our own gpg-agents, raced
when cores are idle, the losers pooled or shredded, user ids bound without a keyring listing, and
crash leftovers shredded by reconcile. Real gpg and gpg-agent in temporary homes."""

import fcntl
import json
import logging
import os
import queue
import stat
import threading
import time

import pytest

from pkgsign_testlib import run_admin
from pkgsign import _gnupg
from pkgsign.agent import KeyMaterialGeneration
from pkgsign.keymaterial import add_subkey_from_keygrip, generate_key_from_keygrip
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


def _assert_key_shape(store, record, days):
    """A certify-only primary and one sign-only subkey that expires with it; the record names the subkey."""
    listed = _gnupg.find_secret_key_by(store.gnupg, record["fingerprint"])
    assert listed.usage == ["cert"] and listed.capabilities.startswith("c") and "s" not in listed.capabilities
    assert [sub.usage for sub in listed.subkeys] == [["sign"]]
    subkey = listed.subkeys[0]
    assert subkey.secret_present and listed.secret_present
    assert (record["signing_fingerprint"], record["signing_key_id"], record["signing_keygrip"]) == (
        subkey.fingerprint, subkey.key_id, subkey.keygrip)
    assert record["signing_fingerprint"] != record["fingerprint"]
    assert subkey.algorithm == listed.algorithm == record["signing_algorithm"] == record["algorithm"]
    assert subkey.created == listed.created and subkey.expires == listed.expires
    assert (listed.expires is None) == (days == 0)
    return listed


def test_metadata_of_a_bound_key_equals_what_gpg_lists(tmp_path, stores):
    store = _store(tmp_path, generation_race=1, pool_size=1, pool_algorithms="ed25519")
    stores.append(store)
    assert store.pool.refill() == 2  # one ed25519 key: two pieces of key material
    # rsa2048 from scratch generations, ed25519 from the pool, then from the service's agent
    cases = [("Real Name", "user#proj@copr.test", "a comment", "rsa2048", 10),
             ("ed", "ed#proj@copr.test", None, "ed25519", 0),
             ("ed here", "edhere#proj@copr.test", None, "ed25519", 7)]
    for name, email, comment, algorithm, days in cases:
        created, record = store.generate(name, email, comment, algorithm, days, created_by="tok")
        assert created
        listed = _assert_key_shape(store, record, days)
        assert record == key_record(listed, email, origin="generated", created_by="tok")
        assert record["algorithm"] == algorithm and record["signing_problem"] is None
        assert (record["expires"] is None) == (days == 0)
        assert store.get_metadata(email) == record
    assert store.pool.counts() == {"ed25519": 0}
    assert _scratch_homes(store) == []
    assert os.listdir(store.pending_dir) == []


def test_a_bound_key_exports_as_certify_primary_and_signing_subkey(tmp_path, stores):
    """What clients import: gpg in a fresh home lists the exported public key as pub 'c', sub 's'."""
    store = _store(tmp_path, generation_race=1, pool_size=1, pool_algorithms="rsa2048")
    stores.append(store)
    store.pool.refill()
    created, record = store.generate("exp", "exp#p@copr.test", algorithm="rsa2048")
    assert created and store.pool.counts() == {"rsa2048": 0}  # both pieces came from the pool
    with _gnupg.TemporaryGnuPG() as fresh:
        fresh.import_keys(store.gnupg.export_public(record["fingerprint"]))
        listing = fresh.run(["--with-colons", "--fixed-list-mode", "--list-keys", record["fingerprint"]]).stdout.decode()
    rows = [line.split(":") for line in listing.splitlines() if line.split(":")[0] in ("pub", "sub")]
    assert [(row[0], row[11]) for row in rows] == [("pub", "cSC"), ("sub", "s")]
    assert rows[1][4] == record["signing_key_id"]


def _material_of(store, record):
    listed = _gnupg.find_secret_key_by(store.gnupg, record["fingerprint"])
    return sorted(part.keygrip for part in [listed] + listed.subkeys)


def test_race_uses_the_first_generations_and_stops_the_other_without_a_pool(tmp_path, stores, caplog):
    store = _store(tmp_path, generation_race=3)
    stores.append(store)
    caplog.set_level(logging.INFO, logger="pkgsign.keypool")
    assert store.maker.width_for("rsa2048") == 3 and store.maker.width_for("ed25519") == 1
    created, record = store.generate("race", "race#p@copr.test", algorithm="rsa2048")
    assert created
    assert "raced 3 rsa2048 generations" in caplog.text  # for the two pieces of one key
    assert "rsa2048 generation that lost the race" in caplog.text  # nothing wasted silently
    # only the bound key's material is left anywhere: the loser's home is shredded
    assert _key_files(store) == _material_of(store, record) and len(_key_files(store)) == 2
    assert record["signing_keygrip"] in _key_files(store)
    assert _scratch_homes(store) == []
    assert store.maker.width_for("rsa2048") == 3  # every generation has ended


def test_race_loser_goes_into_the_pool(tmp_path, stores):
    store = _store(tmp_path, generation_race=3, pool_size=2, pool_algorithms="rsa2048")
    stores.append(store)
    assert store.pool.counts() == {"rsa2048": 0}
    created, record = store.generate("race", "pooled#p@copr.test", algorithm="rsa2048")
    assert created
    assert _wait(lambda: store.pool.counts()["rsa2048"] == 1 and not _scratch_homes(store))
    ready = os.listdir(store.pool.ready_dir)
    assert stat.S_IMODE(os.stat(os.path.join(store.pool.ready_dir, ready[0])).st_mode) == 0o600
    assert _key_files(store) == _material_of(store, record)
    # the spare binds like any pool key (with one piece generated for the request)
    created, second = store.generate("next", "next#p@copr.test", algorithm="rsa2048")
    assert created and ready[0][len("rsa2048-"):-len(".key")] in _material_of(store, second)
    _assert_key_shape(store, second, 0)


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
    # each key takes two pieces of material, generated at once
    assert max(peak) > 2, "generations for two emails did not overlap"


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
    generation = KeyMaterialGeneration(str(home), "rsa4096")
    time.sleep(0.2)
    started = time.monotonic()
    generation.cancel()
    with pytest.raises(_gnupg.GpgError, match="cancelled"):
        generation.wait()
    assert time.monotonic() - started < 2
    assert list(home.glob("private-keys-v1.d/*.key")) == []


def test_key_material_generation_makes_one_unprotected_key(tmp_path):
    home = tmp_path / "scratch"
    keygrip = KeyMaterialGeneration(str(home), "ed25519").wait()
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


def test_pool_material_ready_during_generation_is_taken_and_the_generations_pooled(tmp_path, stores):
    store = _store(tmp_path, generation_race=1, pool_size=1, pool_algorithms="rsa2048")
    stores.append(store)
    made = [tmp_path / "made0", tmp_path / "made1"]
    keygrips = [KeyMaterialGeneration(str(home), "rsa2048").wait() for home in made]
    # the service's generations start late (a slow machine), so the pool material is there first
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
    for home, keygrip in zip(made, keygrips):
        os.rename(str(home / "private-keys-v1.d" / (keygrip + ".key")),
                  os.path.join(store.pool.ready_dir, "rsa2048-%s.key" % keygrip))
    worker.join()
    assert time.monotonic() - started < 1.8
    created, record = results[0]
    assert created and record["signing_keygrip"] in keygrips
    assert _material_of(store, record) == sorted(keygrips)
    # the generations that lost go into the pool once they have finished
    assert _wait(lambda: store.pool.counts()["rsa2048"] == 2 and not _scratch_homes(store))
    assert _key_files(store) == sorted(keygrips)


def test_a_half_made_key_is_dropped_by_reconcile(tmp_path, stores):
    """Killed between binding the certify-only primary and adding its signing subkey: the half key
    (it could never sign) is deleted and both pieces of material are shredded."""
    store = _store(tmp_path)
    stores.append(store)
    keygrips = []
    for number in range(2):
        home = tmp_path / ("half%d" % number)
        keygrip = KeyMaterialGeneration(str(home), "ed25519").wait()
        os.rename(str(home / "private-keys-v1.d" / (keygrip + ".key")),
                  os.path.join(store.private_keys_dir, keygrip + ".key"))
        keygrips.append(keygrip)
    fingerprint = generate_key_from_keygrip(store.gnupg, keygrips[0], "half", "half#p@copr.test",
                                            algorithm="ed25519", usage=("cert",))
    _gnupg.write_private_file(os.path.join(store.pending_dir, "half%23p@copr.test.json"),
                              json.dumps({"name_email": "half#p@copr.test", "started": 1,
                                          "keygrips": keygrips}).encode())
    assert ("generation", "half#p@copr.test") in store.reconcile()
    assert _gnupg.find_keys_by(store.gnupg, fingerprint) == []
    assert store.get_metadata("half#p@copr.test") is None
    assert _key_files(store) == []
    # the email is free again: the next request makes a whole key
    created, record = store.generate("half", "half#p@copr.test", algorithm="ed25519")
    assert created
    _assert_key_shape(store, record, 0)


def test_subkey_from_material_gets_exactly_the_given_creation_time(tmp_path):
    """gpg's clock is frozen at ``created`` for the subkey (a moment in the past; gpg ignores a faked
    time equal to now, and the subkey could then be a second younger than its primary)."""
    with _gnupg.TemporaryGnuPG() as gpg:
        keygrips = []
        for number in range(2):
            home = tmp_path / ("m%d" % number)
            keygrip = KeyMaterialGeneration(str(home), "ed25519").wait()
            os.makedirs(os.path.join(gpg.homedir, "private-keys-v1.d"), exist_ok=True)
            os.rename(str(home / "private-keys-v1.d" / (keygrip + ".key")),
                      os.path.join(gpg.homedir, "private-keys-v1.d", keygrip + ".key"))
            keygrips.append(keygrip)
        created = int(time.time()) - 5
        fingerprint = generate_key_from_keygrip(gpg, keygrips[0], "t", "t@x.test", algorithm="ed25519",
                                                usage=("cert",), expires=3, created=created)
        with pytest.raises(_gnupg.InvalidInput, match="earlier second"):
            add_subkey_from_keygrip(gpg, fingerprint, keygrips[1], expires=3, created=int(time.time()) + 1)
        subkey = add_subkey_from_keygrip(gpg, fingerprint, keygrips[1], expires=3, created=created)
        key = _gnupg.find_secret_key_by(gpg, fingerprint)
        assert [(sub.fingerprint, sub.created, sub.expires, sub.usage) for sub in key.subkeys] == [
            (subkey, created, created + 3 * 86400, ["sign"])]
        assert key.created == created and key.expires == created + 3 * 86400
