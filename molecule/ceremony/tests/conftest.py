"""Fixtures of the key-ceremony scenario.

The tests run the operators' commands (docs/runbook.md) as real `ansible-playbook`
processes against molecule's inventory, with the master key passphrase in an
ansible-vault encrypted file, and look at the results on the containers (testinfra over
`podman exec`) and on the controller (real gpg in temporary homes). Every command's output
is kept, so that the last test can check that no passphrase ever appeared in it.

Cycle names carry a random run id, so the verifier can run again on the same containers.
"""

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import testinfra

SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(os.path.dirname(SCENARIO_DIR))
PLAYBOOKS = os.path.join(REPO_DIR, "playbooks")
BASTION = "ceremony-bastion"
SIGNER = "ceremony-signer"
BASTION_HOME = "/root/signing.gnupg"
SIGNER_HOME = "/var/lib/pkgsign/gnupg"
KEY_NAME = "pkgsign Molecule"
KEY_EMAIL = "release@example.org"
ADMINS = ("alice", "bob", "carol")


def run_ok(host, command, *args):
    """Run a command on a container, failing the test with its output when it fails."""
    result = host.run(command, *args)
    assert result.rc == 0, "%s\nrc=%d\nstdout: %s\nstderr: %s" % (
        result.command, result.rc, result.stdout, result.stderr)
    return result


def recap_changes(output):
    """{host: changed count} from a PLAY RECAP."""
    return {host: int(changed) for host, changed in
            re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)}


# Tasks a re-run may legitimately change while the checkout itself changes under it (the
# signer role reinstalls the service when files/pkgsign differs from what is deployed).
SOURCE_DRIFT_TASKS = ("Copy the pkgsign source archive", "Install pkgsign into the virtualenv", "Restart")


def changed_tasks(output):
    """{host: [names of tasks and handlers that reported changed]} from ansible-playbook output."""
    found, task = {}, None
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \*+$", line)
        if header:
            task = header.group(1)
            continue
        result = re.match(r"^changed: \[([^\]]+?)(?: -> [^\]]+)?\]", line)
        if result and task is not None:
            found.setdefault(result.group(1), []).append(task)
    return found


def assert_nothing_changed(output):
    """changed=0 everywhere, except a service reinstall caused by a changed checkout."""
    changes = changed_tasks(output)
    for host, tasks in changes.items():
        drift = any(SOURCE_DRIFT_TASKS[0] in task for task in tasks)
        unexpected = [task for task in tasks
                      if not (drift and any(allowed in task for allowed in SOURCE_DRIFT_TASKS))]
        assert not unexpected, "%s changed on re-run: %s" % (host, unexpected)
    if not any(SOURCE_DRIFT_TASKS[0] in task for tasks in changes.values() for task in tasks):
        assert set(recap_changes(output).values()) == {0}, recap_changes(output)


class LocalGpg:
    """A gpg home on the controller (the admins' machines, and verification)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)

    def run(self, *args, stdin=None, check=True):
        env = dict(os.environ, LC_ALL="C", GNUPGHOME=self.path)
        proc = subprocess.run(["gpg", "--batch", "--no-tty", "--status-fd", "2"] + list(args),
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              check=False)
        if check:
            assert proc.returncode == 0, "gpg %s failed: %s" % (" ".join(args), proc.stderr.decode())
        return proc

    def fingerprint(self, selector):
        out = self.run("--with-colons", "--list-keys", selector).stdout.decode()
        return re.search(r"^fpr:+([0-9A-F]{40}):", out, re.MULTILINE).group(1)

    def import_file(self, path):
        self.run("--import", path)

    def verified_by(self, signature, data=None):
        """Fingerprints of the signing (sub)keys of every good signature (VALIDSIG)."""
        args = ["--verify", signature] + ([data] if data else [])
        proc = self.run(*args, check=False)
        status = proc.stderr.decode()
        return re.findall(r"^\[GNUPG:\] VALIDSIG ([0-9A-F]{40})", status, re.MULTILINE)

    def stop(self):
        subprocess.run(["gpgconf", "--homedir", self.path, "--kill", "gpg-agent"], check=False)


class Ceremony:
    """Runs the ceremony playbooks as an operator would, and keeps their output."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.run_id = secrets.token_hex(3)
        self.controller_dir = os.path.join(workdir, "controller")
        self.outputs = []
        self.passphrases = []
        self.master_passphrase = "master-" + secrets.token_urlsafe(18)
        self.passphrases.append(self.master_passphrase)
        # The operators' vault: the master key passphrase, encrypted with ansible-vault.
        self.vault_password_file = os.path.join(workdir, "vault-password")
        with open(self.vault_password_file, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        os.chmod(self.vault_password_file, 0o600)
        self.vault_file = os.path.join(workdir, "vault.yml")
        with open(self.vault_file, "w") as handle:
            handle.write('bastion_master_passphrase: "%s"\n' % self.master_passphrase)
        self._ansible("ansible-vault", "encrypt", "--vault-password-file", self.vault_password_file,
                      self.vault_file)
        self.admins = {}
        self.admins_vars = os.path.join(workdir, "admins.yml")

    def cycle(self, number):
        return "c%d-%s" % (number, self.run_id)

    def _env(self):
        env = dict(os.environ)
        ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
        if ephemeral:
            env["ANSIBLE_CONFIG"] = os.path.join(ephemeral, "ansible.cfg")
        env["ANSIBLE_FORCE_COLOR"] = "0"
        env["ANSIBLE_NOCOLOR"] = "1"
        return env

    def _ansible(self, *argv):
        proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=self._env(), check=False)
        output = proc.stdout.decode("utf-8", "replace")
        self.outputs.append((" ".join(argv), output))
        assert proc.returncode == 0, output
        return output

    def playbook(self, name, *args, expect_ok=True, verbosity=0):
        """ansible-playbook NAME against molecule's inventory; returns (rc, output)."""
        argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                "--vault-password-file", self.vault_password_file, "-e", "@" + self.vault_file,
                "-e", "bastion_controller_dir=" + self.controller_dir]
        if os.path.exists(self.admins_vars):
            argv += ["-e", "@" + self.admins_vars]
        if verbosity:
            argv.append("-" + "v" * verbosity)
        argv += list(args) + [os.path.join(PLAYBOOKS, name)]
        started = time.time()
        print("ceremony: ansible-playbook %s %s" % (name, " ".join(args)), flush=True)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env(),
                              check=False)
        output = proc.stdout.decode("utf-8", "replace")
        self.outputs.append((" ".join(argv), output))
        with open(os.path.join(self.workdir, "ceremony.log"), "a") as log:
            log.write("### %s (rc=%d, %.0f s)\n%s\n" % (" ".join(argv), proc.returncode,
                                                        time.time() - started, output))
        print("ceremony:   rc=%d after %.0f s" % (proc.returncode, time.time() - started), flush=True)
        if expect_ok:
            assert proc.returncode == 0, output[-6000:]
        return proc.returncode, output

    def playbook_interrupted(self, name, *args, marker, sig, delay=1.0):
        """Start ansible-playbook NAME and send it ``sig`` ``delay`` seconds after ``marker``
        (a task name) appears in its output, as an operator's Ctrl-C (SIGINT) or a killed
        session (SIGKILL) would. Returns (rc, output, interrupted)."""
        argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                "--vault-password-file", self.vault_password_file, "-e", "@" + self.vault_file,
                "-e", "bastion_controller_dir=" + self.controller_dir]
        if os.path.exists(self.admins_vars):
            argv += ["-e", "@" + self.admins_vars]
        argv += list(args) + [os.path.join(PLAYBOOKS, name)]
        print("ceremony: ansible-playbook %s %s (signal %d after %r)" % (name, " ".join(args), sig, marker),
              flush=True)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env())
        lines, interrupted = [], False
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if not interrupted and marker in line:
                time.sleep(delay)
                proc.send_signal(sig)
                interrupted = True
                if sig == signal.SIGKILL:
                    break
        proc.stdout.close()
        rc = proc.wait()
        output = "".join(lines)
        self.outputs.append((" ".join(argv), output))
        with open(os.path.join(self.workdir, "ceremony.log"), "a") as log:
            log.write("### %s (rc=%d, signal %d after %r)\n%s\n" % (" ".join(argv), rc, sig, marker, output))
        # Modules a killed controller started keep running on the hosts: let them end.
        time.sleep(5)
        return rc, output, interrupted

    def make_admins(self):
        """Root admins with their own passphrase-protected keys on their 'own machine'."""
        lines = ["bastion_attestation_admins:"]
        for name in ADMINS:
            home = LocalGpg(os.path.join(self.workdir, "admin-" + name))
            passphrase = "admin-%s-%s" % (name, secrets.token_urlsafe(12))
            self.passphrases.append(passphrase)
            home.run("--pinentry-mode", "loopback", "--passphrase-fd", "0", "--quick-gen-key",
                     "Admin %s <%s@example.org>" % (name.title(), name), "ed25519", "cert,sign", "1y",
                     stdin=passphrase.encode() + b"\n")
            fingerprint = home.fingerprint("%s@example.org" % name)
            public = os.path.join(self.workdir, "admin-%s.pub" % name)
            with open(public, "wb") as handle:
                handle.write(home.run("--armor", "--export", fingerprint).stdout)
            passphrase_file = os.path.join(self.workdir, "admin-%s-passphrase.yml" % name)
            with open(passphrase_file, "w") as handle:
                handle.write('attest_admin_passphrase: "%s"\n' % passphrase)
            os.chmod(passphrase_file, 0o600)
            self.admins[name] = {"home": home, "fingerprint": fingerprint, "passphrase_file": passphrase_file}
            lines.append("  - {name: %s, fingerprint: %s, public_key_file: %s}" % (name, fingerprint, public))
        lines.append("bastion_attestation_quorum: 2")
        with open(self.admins_vars, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    def attest(self, admin, cycle, fingerprint):
        info = self.admins[admin]
        spaced = " ".join(fingerprint[i:i + 4] for i in range(0, 40, 4))  # as read off the screen
        return self.playbook("attest-key.yml", "-e", "attest_cycle=" + cycle,
                             "-e", "attest_fingerprint='%s'" % spaced,
                             "-e", "attest_admin_key=" + info["fingerprint"],
                             "-e", "attest_gnupg_home=" + info["home"].path,
                             "-e", "attest_controller_dir=" + self.controller_dir,
                             "-e", "@" + info["passphrase_file"])

    def publication(self, cycle):
        return os.path.join(self.controller_dir, cycle, "publication")


@pytest.fixture(scope="session")
def ceremony():
    workdir = tempfile.mkdtemp(prefix="pkgsign-ceremony-")
    os.chmod(workdir, 0o700)
    state = Ceremony(workdir)
    yield state
    for info in state.admins.values():
        info["home"].stop()
    keep = os.environ.get("CEREMONY_KEEP")
    if keep:
        print("ceremony: work directory kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def bastion():
    return testinfra.get_host("podman://" + BASTION)


@pytest.fixture(scope="session")
def signer():
    return testinfra.get_host("podman://" + SIGNER)


@pytest.fixture(scope="session")
def facts():
    """Values learnt by earlier steps (fingerprints), shared along the sequence."""
    return {}


def bastion_keys(bastion, uid_part):
    """Fingerprints of the bastion's keys whose user id contains uid_part."""
    out = run_ok(bastion, "gpg --batch --homedir %s --with-colons --list-keys", BASTION_HOME).stdout
    found, current = [], None
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            current = {"fpr": None, "uids": []}
            found.append(current)
        elif fields[0] == "fpr" and current is not None and current["fpr"] is None:
            current["fpr"] = fields[9]
        elif fields[0] == "uid" and current is not None:
            current["uids"].append(fields[9])
    return [key["fpr"] for key in found if any(uid_part in uid for uid in key["uids"])]


def signer_key_id(signer):
    """The 16-digit key id `sign --full-keyid` reports for the alias in service (`-k` prints
    obs-sign's 8 digits)."""
    return run_ok(signer, "sudo -u pkgsign-client sign -u release --full-keyid").stdout.strip().upper()


def sign_on_signer(signer, path, text):
    """Sign a file through the service on the signer (`sign -d`); returns the signature."""
    run_ok(signer, "printf '%%s\\n' %s > %s && chmod 0644 %s", text, path, path)
    run_ok(signer, "cd /tmp && sudo -u pkgsign-client sign -u release -d %s", path)
    return signer.file(path + ".asc").content_string


SCRATCH = "/root/signing-ceremony/scratch"


def scratch_left(host):
    """Names in the ceremony's scratch directory (as its sweep reports them), with the modules' own
    scratch root (``pkgsign-scratch-<uid>``, 0700, swept by every module run) looked into rather
    than listed: what is in it counts as ``pkgsign-scratch-0/<name>``."""
    found = []
    for name in run_ok(host, "ls -A %s", SCRATCH).stdout.split():
        if re.fullmatch(r"pkgsign-scratch-\d+", name):
            found += ["%s/%s" % (name, inner) for inner in
                      run_ok(host, "ls -A %s/%s", SCRATCH, name).stdout.split()]
        else:
            found.append(name)
    return found


SECRET_MARKERS = ("PRIVATE KEY BLOCK", "SECRET KEY BLOCK", "(private-key")


def secret_files_outside_homes(host, roots, homes):
    """Files under ``roots`` on a container holding secret key material outside the GnuPG
    ``homes``: armored secret keys, and any GnuPG private-keys directory elsewhere."""
    where = " ".join(shlex.quote(root) for root in roots)
    excluded = " ".join("-path %s -prune -o" % shlex.quote(home) for home in homes)
    patterns = " ".join("-e %s" % shlex.quote(marker) for marker in SECRET_MARKERS)
    found = host.run("find %s %s -type f -size -2M -print 2>/dev/null | xargs -r grep -l -s -F %s || true"
                     % (where, excluded, patterns)).stdout.split()
    # A GnuPG home gpg made by itself somewhere has an empty private-keys-v1.d: only one
    # holding key files counts.
    found += host.run("find %s %s -type d -name private-keys-v1.d ! -empty -print 2>/dev/null || true"
                      % (where, excluded)).stdout.split()
    return found


def local_secret_files(roots, homes):
    """The same on the controller."""
    found = []
    for root in roots:
        for directory, dirs, files in os.walk(root):
            if any(directory == home or directory.startswith(home + os.sep) for home in homes):
                dirs[:] = []
                continue
            if "private-keys-v1.d" in dirs and os.listdir(os.path.join(directory, "private-keys-v1.d")):
                found.append(os.path.join(directory, "private-keys-v1.d"))
            for name in files:
                path = os.path.join(directory, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > 2 * 1024 * 1024:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                if any(marker.encode() in data for marker in SECRET_MARKERS):
                    found.append(path)
    return found
