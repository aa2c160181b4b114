# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets never show: not in any process's command line, not in logs, audit or Ansible output;
and every file holding key material, a phrase, a token or the audit trail is owner-only.

A sampler reads /proc/*/cmdline of every process in a tight loop while three workloads run at
once: a service instance with known tokens and a passphrase-protected imported key (tokens
added on stdin, the real `sign` client, key generation, signing), the whole service test suite
(its tokens are random, but every generated token starts with ``pks_``), and the signing-key
runbook playbook at -vvv --diff with a known passphrase.
"""

import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time

from conftest import soak_enabled
from pkgsign_testlib import CHECKOUT, SERVICE_TESTS, child_env, run_admin
from pkgsign import _gnupg

SECRET_FILE_NAMES = re.compile(r"(\.token$|^tokens\.json$|^audit\.log|\.key$|^pubring|^trustdb|\.rev$|\.json$)")


class CmdlineSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.seen = set()
        self.sweeps = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue
                if raw:
                    self.seen.add(raw)
            self.sweeps += 1


def _passphrase_in_argv(argv):
    return any(arg == b"--passphrase" or arg.startswith(b"--passphrase=") for arg in argv)


def _service_workload(inst, phrase, known, scratch):
    """Tokens on stdin, an imported protected key, keygen and signing through the real client."""
    for token_id in ("builder", "releng"):
        secret = "pks_" + secrets.token_urlsafe(24)
        known.append(secret)
        run_admin("token", "add", "--config", inst.config, "--id", token_id, "--scopes", "sign,keygen",
                  "--keys", "*", "--stdin", input=secret + "\n")
        path = os.path.join(inst.root, token_id + ".token")
        _gnupg.write_private_file(path, (secret + "\n").encode())
        inst.tokens[token_id] = secret
    copr = os.path.join(scratch, "copr")
    phrases = os.path.join(copr, "phrases")
    _gnupg.ensure_private_dir(phrases)
    source = _gnupg.GnuPG(os.path.join(copr, "gnupg"))
    source.generate_key("legacy", "legacy#proj@copr.test", algorithm="ed25519", passphrase=phrase)
    _gnupg.write_private_file(os.path.join(phrases, "legacy#proj@copr.test"), (phrase + "\n").encode())
    run_admin("import-copr", "--config", inst.config, "--gnupghome", source.homedir, "--phrases", phrases)
    source.kill_agent()
    data = os.path.join(scratch, "data.txt")  # public artefacts stay out of the state directory
    with open(data, "w") as handle:
        handle.write("signed data\n")
    rounds = 10 if soak_enabled() else 3
    for number in range(rounds):
        for token_id, key in (("builder", "legacy#proj@copr.test"), ("releng", "new%d#proj@copr.test" % number)):
            if token_id == "releng":
                body = {"name_real": "n", "name_email": key}
                status, _ignored, body = inst.request("POST", "/gen_key", body, token=token_id)
                assert status == 201, body
            proc = inst.sign("-u", key, "-d", data, token=token_id)
            assert proc.returncode == 0, proc.stderr
            proc = inst.sign("-u", key, "-p", token=token_id)
            assert proc.returncode == 0 and b"BEGIN PGP PUBLIC KEY" in proc.stdout
    assert inst.request("GET", "/health/ready", token=None)[0] == 200


def _runbook(tmp_path, passphrase):
    collections = tmp_path / "collections" / "ansible_collections" / "pkgsign"
    collections.mkdir(parents=True)
    os.symlink(CHECKOUT, str(collections / "signer"))
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    secrets_file = tmp_path / "secrets.yml"
    fd = os.open(str(secrets_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("signing_passphrase: %s\n" % passphrase)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_HOME=str(tmp_path / "ansible-home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_KEEP_REMOTE_FILES="0")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([playbook, "-vvv", "--diff", "-i", "localhost,",
                           os.path.join(CHECKOUT, "tests", "e2e", "runbook.yml"),
                           "-e", "workdir=%s" % workdir, "-e", "@%s" % secrets_file],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
    for home in ("signing.gnupg", "jenkins.gnupg"):
        if (workdir / home).is_dir():
            _gnupg.GnuPG(str(workdir / home), create=False).kill_agent()
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _service_suite():
    env = child_env(HYPOTHESIS_STORAGE_DIRECTORY=os.path.join("/tmp", "pkgsign-hypothesis-secrets"))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", SERVICE_TESTS],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)


def _check_private_tree(root):
    """Directories 0700 and secret-bearing files 0600 (no group/other bits anywhere)."""
    problems, checked = [], 0
    for directory, dirs, files in os.walk(root):
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        checked += 1
        if mode & 0o077:
            problems.append("%s is %o" % (directory, mode))
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path) or stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
            checked += 1
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                problems.append("%s is %o" % (path, mode))
    return checked, problems


def test_no_secret_in_command_lines_logs_or_output(new_instance, tmp_path):
    inst = new_instance()
    inst.set_option("server", "log_level", "DEBUG")
    inst.set_option("server", "log_file", os.path.join(inst.root, "service.log"))
    inst.start()
    phrase = "copr-phrase-" + secrets.token_urlsafe(16)
    passphrase = "pp-" + secrets.token_urlsafe(24)
    known = [phrase, passphrase, inst.tokens["client"]]
    sampler = CmdlineSampler()
    sampler.start()
    started = time.monotonic()
    results = {}
    threads = [threading.Thread(target=lambda: results.__setitem__("runbook", _runbook(tmp_path, passphrase)))]
    # The whole service suite under the sampler: the soak only (it doubles the suite's time).
    if soak_enabled():
        threads.append(threading.Thread(target=lambda: results.__setitem__("suite", _service_suite())))
    for thread in threads:
        thread.start()
    try:
        _service_workload(inst, phrase, known, str(tmp_path))
    finally:
        for thread in threads:
            thread.join(900)
        sampler.stop.set()
        sampler.join()
    elapsed = time.monotonic() - started
    suite = results.get("suite")
    if suite is not None:
        assert suite.returncode == 0, suite.stdout.decode("utf-8", "replace")[-3000:]
    runbook_status, runbook_output = results["runbook"]
    assert runbook_status == 0, runbook_output[-3000:]

    gpg_lines = [raw for raw in sampler.seen if b"gpg" in raw.split(b"\0")[0]]
    print("sampled %d distinct command lines (%d of gpg) in %d sweeps over %.0f s"
          % (len(sampler.seen), len(gpg_lines), sampler.sweeps, elapsed))
    assert sampler.sweeps > 100 and len(gpg_lines) > 10  # the sampler did see the work happen
    for raw in sampler.seen:
        argv = raw.split(b"\0")
        for secret in known:
            assert secret.encode() not in raw, "a secret in a command line: %r" % argv[:3]
        assert b"pks_" not in raw, "a token in a command line: %r" % argv[:3]
        assert not _passphrase_in_argv(argv), "a passphrase argument: %r" % argv[:3]

    inst.stop()
    texts = {"service log": open(os.path.join(inst.root, "service.log"), encoding="utf-8").read(),
             "server stderr": inst.process.stderr.read(),
             "audit log": open(inst.audit_log, encoding="utf-8").read(),
             "ansible -vvv --diff output": runbook_output}
    if suite is not None:
        texts["service suite output"] = suite.stdout.decode("utf-8", "replace")
    assert "legacy#proj@copr.test" in texts["audit log"] and "generated" in texts["service log"]
    for what, text in texts.items():
        for secret in known:
            assert secret not in text, "a secret in the %s" % what
    assert "pks_" not in texts["service log"] + texts["audit log"] + texts["server stderr"]
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in runbook_output

    checked, problems = _check_private_tree(inst.root)
    assert problems == [], "\n".join(problems)
    tokens_file = open(inst.tokens_file, encoding="utf-8").read()
    for secret in known:
        assert secret not in tokens_file  # hashes only
    print("permissions: %d files and directories under the instance, all owner-only" % checked)
