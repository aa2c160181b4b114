"""Audit log: rotation that keeps the hash chain across files, checkpoints signed with the audit key
(real gpg) and shipped through syslog, and `pkgsign-admin audit verify` against them (issue 14)."""

import glob
import gzip
import hashlib
import json
import os
import shutil
import socket
import threading
import time

import pytest

from pkgsign_testlib import Instance, run_admin
from pkgsign import audit
from pkgsign.audit import AuditLog, check, rotated_files


def _lines_of(name):
    opener = gzip.open if name.endswith(".gz") else open
    with opener(name, "rb") as handle:
        return handle.read().splitlines()


def _sha(line):
    return hashlib.sha256(line).hexdigest()


def test_rotation_keeps_the_chain_across_files(tmp_path):
    path = str(tmp_path / "state" / "audit.log")
    first = AuditLog(path, rotate_size=4096, keep=0, compress=True)
    second = AuditLog(path, rotate_size=4096, keep=0, compress=True)  # another process's view

    def writer(log, count):
        for number in range(count):
            log.append(operation="sign", result="ok", token="t", digests=["%064x" % number])

    threads = [threading.Thread(target=writer, args=(log, 100)) for log in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.tidy()
    files = rotated_files(path)
    assert len(files) >= 10 and all(name.endswith(".gz") for _number, name in files)
    assert [number for number, _name in files] == list(range(1, len(files) + 1))
    assert not glob.glob(path + ".[0-9]*[0-9]")  # every rotated file compressed, no plain copy left
    # Each file starts with the hash of the previous file's last line, and says which file it is.
    previous_last = None
    for number, name in files + [(len(files) + 1, path)]:
        lines = _lines_of(name)
        head = json.loads(lines[0])
        if number == 1:
            assert head["prev"] == "0" * 64
        else:
            assert head["operation"] == "audit_rotated" and head["file"] == number
            assert head["prev"] == _sha(previous_last)
        assert os.path.getsize(name) < 4096 + 400 or name.endswith(".gz")
        previous_last = lines[-1]
    report = check(path)
    assert report.problems == [] and report.count == 400 + len(files) and report.files == len(files) + 1
    with open(path + ".head") as handle:
        assert json.load(handle)["seq"] == report.count
    # keep = 3: older files go, and the chain is checked from the oldest one kept.
    AuditLog(path, rotate_size=4096, keep=3).tidy()
    assert [number for number, _name in rotated_files(path)] == list(range(len(files) - 2, len(files) + 1))
    report = check(path)
    assert report.problems == [] and "the chain starts at file %d" % (len(files) - 2) in " ".join(report.notes)
    # A file missing in the middle is not retention: it is reported.
    os.unlink(rotated_files(path)[1][1])
    assert "files missing in between" in " ".join(check(path).problems)


# -- checkpoints and tampering ---------------------------------------------------------------


def _records(name):
    return [json.loads(line) for line in _lines_of(name)]


def _write_chain(state, files, start_seq=1, start_prev="0" * 64):
    """Write ``files`` [(file name, [records])] as a consistent chain -- seq and prev recomputed, head
    rewritten -- as someone who can write the state directory would after tampering."""
    seq, prev = start_seq, start_prev
    for name, records in files:
        out = []
        for record in records:
            record = dict(record, seq=seq, prev=prev)
            line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            out.append(line + b"\n")
            prev, seq = _sha(line), seq + 1
        target = os.path.join(state, name[:-3] if name.endswith(".gz") else name)
        for stale in (target, target + ".gz"):
            if os.path.exists(stale):
                os.unlink(stale)
        with open(target, "wb") as handle:
            handle.writelines(out)
    with open(os.path.join(state, "audit.log.head"), "w") as handle:
        handle.write(json.dumps({"seq": seq - 1, "hash": prev}).ljust(127) + "\n")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """An instance whose log spans three files, a checkpoint of its head (shipped to a file
    standing in for the remote syslog), and the audit public key exported to pin."""
    root = tmp_path_factory.mktemp("sealed")
    run_admin("init", str(root / "inst"), "--algorithm", "ed25519")
    inst = Instance(root / "inst")
    shipped = str(root / "remote-syslog.txt")
    inst.set_option("audit", "rotate_size", "4K")
    inst.set_option("audit", "compress", "yes")
    inst.set_option("audit", "checkpoint_target", "file:" + shipped)
    from pkgsign.config import load_config

    config = load_config(inst.config)
    log = AuditLog.from_config(config)
    for number in range(45):
        log.append(operation="sign", result="ok", token="ci", key="a#b@copr.test", digests=["%064x" % number])
    log.tidy()
    assert len(rotated_files(config.audit_log)) == 2
    proc = run_admin("audit", "checkpoint", "--config", inst.config)
    line = proc.stdout.strip()
    assert line.startswith("pkgsign-audit-checkpoint v=1 ") and open(shipped).read().strip() == line
    key = run_admin("audit", "key", "--config", inst.config).stdout
    assert "BEGIN PGP PUBLIC KEY BLOCK" in key
    (root / "audit-key.asc").write_text(key)
    return {"inst": inst, "config": config, "checkpoint": line, "shipped": shipped, "key": str(root / "audit-key.asc"),
            "root": root}


def _copy(sealed, tmp_path):
    """A copy of the instance's audit files (what an attacker would edit), with its own config."""
    state = tmp_path / "copy"
    state.mkdir()
    for name in glob.glob(sealed["config"].audit_log + "*"):
        if not name.endswith((".lock", ".checkpoint")):
            shutil.copy(name, str(state))
    conf = state / "pkgsign.conf"
    conf.write_text("[server]\nstate_dir = %s\naudit_log = %s\n" % (state, state / "audit.log"))
    return str(state), str(conf)


def _verify(conf, sealed, *extra):
    return run_admin("audit", "verify", "--config", conf, "--checkpoint", sealed["shipped"],
                     "--audit-key", sealed["key"], *extra, check=False)


def _all_files(state):
    return [os.path.basename(name) for _number, name in rotated_files(os.path.join(state, "audit.log"))] + ["audit.log"]


def test_clean_log_verifies_against_its_checkpoint(sealed, tmp_path):
    proc = run_admin("audit", "verify", "--config", sealed["inst"].config, "--checkpoint", sealed["checkpoint"],
                     "--audit-key", sealed["key"], check=False)
    assert proc.returncode == 0, proc.stdout
    assert "3 file(s), chain intact, matches the checkpoint" in proc.stdout
    state, conf = _copy(sealed, tmp_path)
    proc = _verify(conf, sealed)
    assert proc.returncode == 0, proc.stdout
    # Without --audit-key the instance's own key is used, and the output says so.
    proc = run_admin("audit", "verify", "--config", sealed["inst"].config, "--checkpoint", sealed["shipped"],
                     check=False)
    assert proc.returncode == 0 and "own audit key" in proc.stdout, proc.stdout


def _tamper(kind, state):
    """Apply one kind of tampering to the copy in ``state``."""
    names = _all_files(state)
    files = [(name, _records(os.path.join(state, name))) for name in names]
    current = files[-1][1]
    if kind == "edited line":  # naive: the next line's prev no longer matches
        lines = open(os.path.join(state, "audit.log"), "rb").read().splitlines(keepends=True)
        lines[3] = lines[3].replace(b'"result":"ok"', b'"result":"no"')
        open(os.path.join(state, "audit.log"), "wb").writelines(lines)
        return
    if kind == "edited line, chain recomputed":
        current[3]["key"] = "someone-else@copr.test"
    elif kind == "edited line in a rotated file, chain recomputed":
        files[0][1][5]["digests"] = ["ff" * 32]
    elif kind == "removed line, chain recomputed":
        del current[4]
    elif kind == "reordered lines, chain recomputed":
        current[4], current[5] = current[5], current[4]
    elif kind == "truncated end, head rewritten":
        del current[-3:]
    elif kind == "appended forged line, head rewritten":
        current.append(dict(current[-1], token="attacker", digests=["ee" * 32], time="2026-01-01T00:00:00Z"))
    elif kind == "current file rewritten":
        files[-1] = (files[-1][0], [current[0]] + [dict(record, token="rewritten") for record in current[1:]])
    elif kind == "head file rewritten":
        with open(os.path.join(state, "audit.log.head"), "w") as handle:
            handle.write(json.dumps({"seq": current[-2]["seq"], "hash": current[-2]["prev"]}).ljust(127) + "\n")
        with open(os.path.join(state, "audit.log"), "rb") as handle:
            lines = handle.read().splitlines(keepends=True)
        with open(os.path.join(state, "audit.log"), "wb") as handle:
            handle.writelines(lines[:-2])
        return
    else:
        raise AssertionError(kind)
    _write_chain(state, files)


@pytest.mark.parametrize("kind", [
    "edited line", "edited line, chain recomputed", "edited line in a rotated file, chain recomputed",
    "removed line, chain recomputed", "reordered lines, chain recomputed", "truncated end, head rewritten",
    "appended forged line, head rewritten", "current file rewritten", "head file rewritten"])
def test_tampering_is_detected_given_the_latest_checkpoint(sealed, tmp_path, kind):
    state, conf = _copy(sealed, tmp_path)
    _tamper(kind, state)
    proc = _verify(conf, sealed)
    assert proc.returncode != 0, (kind, proc.stdout)
    if kind.startswith("appended"):
        # Lines after the latest checkpoint: nothing vouches for them, and verify says so (exit 3).
        assert proc.returncode == 3 and "1 line(s) after that checkpoint" in proc.stdout, proc.stdout
    else:
        assert proc.returncode == 1, (kind, proc.stdout)
    if "recomputed" in kind or kind in ("current file rewritten", "truncated end, head rewritten"):
        # What the checkpoint adds: the rewritten chain is consistent in itself.
        alone = run_admin("audit", "verify", "--config", conf, check=False)
        assert alone.returncode == 0, (kind, alone.stdout)


def test_forged_or_foreign_checkpoints_are_refused(sealed, tmp_path):
    state, conf = _copy(sealed, tmp_path)
    # The attacker rewrote the chain and edits the checkpoint line to match: the signature fails.
    _tamper("truncated end, head rewritten", state)
    with open(os.path.join(state, "audit.log.head")) as handle:
        head = json.load(handle)
    original = sealed["checkpoint"]
    fields = dict(item.split("=", 1) for item in original.split(" ")[1:])
    forged = original.replace("seq=%s" % fields["seq"], "seq=%d" % head["seq"])
    forged = forged.replace("hash=%s" % fields["hash"], "hash=%s" % head["hash"])
    forged = forged.replace("line=%s" % fields["line"], "line=%d" % (int(fields["line"]) - 3))
    proc = run_admin("audit", "verify", "--config", conf, "--checkpoint", forged, "--audit-key", sealed["key"],
                     check=False)
    assert proc.returncode == 1 and "not by the audit key" in proc.stdout, proc.stdout
    # A key other than the pinned one: another instance's audit key.
    other = tmp_path / "other"
    run_admin("init", str(other), "--algorithm", "ed25519")
    other_key = tmp_path / "other.asc"
    other_key.write_text(run_admin("audit", "key", "--config", str(other / "pkgsign.conf")).stdout)
    proc = run_admin("audit", "verify", "--config", sealed["inst"].config, "--checkpoint", original,
                     "--audit-key", str(other_key), check=False)
    assert proc.returncode == 1 and "not by the audit key" in proc.stdout, proc.stdout
    proc = run_admin("audit", "verify", "--config", conf, "--checkpoint", "no checkpoint here", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_audit_key_is_a_signing_subkey_outside_the_signing_keyring(sealed):
    config = sealed["config"]
    record = audit.read_audit_key(config)
    gpg = audit.audit_gnupg(config)
    try:
        key = gpg.get_key(record["fingerprint"], secret=True)
    finally:
        gpg.kill_agent()
    assert key.usage == ["cert"] and key.algorithm == "ed25519"
    assert [sub.fingerprint for sub in key.subkeys if "sign" in sub.usage] == [record["signing_fingerprint"]]
    assert os.stat(config.audit_gnupg_home).st_mode & 0o077 == 0
    # The service's keyring does not hold it: no token can name it for POST /sign.
    from pkgsign import _gnupg

    signing = _gnupg.GnuPG(config.gnupg_home, create=False)
    assert record["fingerprint"] not in [k.fingerprint for k in signing.list_keys()]


def test_service_ships_checkpoints_through_syslog(tmp_path):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(15)
    run_admin("init", str(tmp_path / "inst"), "--algorithm", "ed25519")
    inst = Instance(tmp_path / "inst")
    inst.tokens["client"] = open(str(tmp_path / "inst" / "client.token")).read().strip()
    inst.set_option("audit", "checkpoint_interval", "1s")
    inst.set_option("audit", "checkpoint_target", "udp:127.0.0.1:%d, file:%s"
                    % (receiver.getsockname()[1], tmp_path / "also.txt"))
    inst.start()
    try:
        status, _headers, body = inst.request("POST", "/gen_key", {"name_real": "x", "name_email": "x#y@copr.test"})
        assert status == 201, body
        written = time.time()
        deadline = time.time() + 15
        received = []
        while True:
            datagram = receiver.recv(4096).decode()
            received.append(datagram.split(": ", 1)[1].rstrip("\0"))
            # RFC 3164: <PRI>TAG: MSG with PRI = authpriv (10) * 8 + notice (5)
            assert datagram.startswith("<85>pkgsign-audit: pkgsign-audit-checkpoint v=1 "), datagram
            if time.time() > written + 1.5 or time.time() > deadline:
                break
    finally:
        inst.stop()
    # What the service shipped until it stopped (a slow stop under load ships more) is queued in
    # the receiver's socket: drain it, so both targets can be compared in full.
    receiver.settimeout(0.5)
    try:
        while True:
            received.append(receiver.recv(4096).decode().split(": ", 1)[1].rstrip("\0"))
    except socket.timeout:
        pass
    finally:
        receiver.close()
    line = datagram.split(": ", 1)[1].rstrip("\0")
    proc = run_admin("audit", "verify", "--config", inst.config, "--checkpoint", line, check=False)
    assert proc.returncode == 0 and "matches the checkpoint" in proc.stdout, proc.stdout
    # Every target gets every checkpoint.
    in_file = audit.find_checkpoints(open(str(tmp_path / "also.txt")).read())
    assert in_file and set(in_file) <= set(received), sorted(set(in_file) - set(received))


def test_backup_carries_rotated_logs_and_the_audit_key(sealed, tmp_path):
    from pkgsign import _gnupg

    operator = _gnupg.GnuPG(str(tmp_path / "op"))
    fpr = operator.generate_key("Backup Operator", "backup@example.org", algorithm="ed25519", usage=["cert"])
    operator.add_subkey(fpr, "ed25519", "encrypt")
    (tmp_path / "op.asc").write_bytes(operator.export_public(fpr))
    try:
        archive = run_admin("backup", "--config", sealed["inst"].config, "--recipient-file", str(tmp_path / "op.asc"),
                            "--output-dir", str(tmp_path / "backups")).stdout.strip()
        run_admin("init", str(tmp_path / "target"), "--algorithm", "ed25519")
        target = str(tmp_path / "target" / "pkgsign.conf")
        (tmp_path / "backup-key.asc").write_text(run_admin("backup-key", "--config", sealed["inst"].config).stdout)
        run_admin("restore", "--config", target, "--archive", archive, "--gnupghome", str(tmp_path / "op"),
                  "--backup-key", str(tmp_path / "backup-key.asc"), "--force")
    finally:
        operator.kill_agent()
    restored = sorted(os.path.basename(name) for _number, name in rotated_files(str(tmp_path / "target" / "audit.log")))
    assert restored == ["audit.log.1.gz", "audit.log.2.gz"]
    # The restored chain matches the source's checkpoint, and the restored audit key is the source's.
    # The one line after it is the restore's own (operation restore, ok).
    proc = run_admin("audit", "verify", "--config", target, "--checkpoint", sealed["checkpoint"], "--allow-uncovered",
                     check=False)
    assert proc.returncode == 0 and "matches the checkpoint" in proc.stdout, proc.stdout
    assert "1 line(s) after that checkpoint" in proc.stdout, proc.stdout
    with open(str(tmp_path / "target" / "audit.log"), encoding="utf-8") as handle:
        last = json.loads(handle.read().splitlines()[-1])
    assert last["operation"] == "restore" and last["result"] == "ok", last
    assert run_admin("audit", "key", "--config", target).stdout == open(sealed["key"]).read()
