"""Two consecutive key cycles through the operators' commands (docs/runbook.md).

The tests form one sequence (pytest runs them in file order; the scenario passes -x):
cycle 1 is made, its switch-over is refused without the attestation quorum, two admins
attest, the switch-over succeeds and an artifact is signed; cycle 2 is made with an
interruption after step 3, certified by cycle 1, attested and switched over; re-running
changes nothing; cycle 2 is revoked with the master key available (cycle 1 back in service)
and a third key with the stored certificate (as when the master key is lost); finally no
passphrase appears in any output.
"""

import base64
import os
import re
import signal
import subprocess

from conftest import (BASTION_HOME, KEY_EMAIL, KEY_NAME, SCRATCH, SIGNER, SIGNER_HOME, LocalGpg, scratch_left,
                      assert_nothing_changed, bastion_keys, local_secret_files, recap_changes, run_ok,
                      controller_local_tmp, secret_files_outside_homes, sign_on_signer, signer_key_id,
                      start_container)


def _uid(cycle):
    return "%s (%s) <%s>" % (KEY_NAME, cycle, KEY_EMAIL)


def _signing_subkey(gpg, fingerprint):
    """(fingerprint, long key id) of the signing subkey of a key in a local home."""
    out = gpg.run("--with-colons", "--with-subkey-fingerprint", "--list-keys", fingerprint).stdout.decode()
    lines = out.splitlines()
    for index, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "sub" and "s" in fields[11]:
            return lines[index + 1].split(":")[9], fields[4]
    raise AssertionError("no signing subkey in %s" % out)


# -- cycle 1 --------------------------------------------------------------------------------

def test_cycle1_generate_certify_publish(ceremony, bastion, facts):
    cycle = ceremony.cycle(1)
    ceremony.playbook("rotate-key.yml", "-e", "bastion_cycle=" + cycle)
    keys = bastion_keys(bastion, "(%s)" % cycle)
    assert len(keys) == 1
    facts["c1"] = fingerprint = keys[0]
    # The runbook's bastion: GnuPG home 0700 with its display options.
    home = bastion.file(BASTION_HOME)
    assert home.mode == 0o700 and home.user == "root"
    assert bastion.file(BASTION_HOME + "/gpg.conf").contains("^keyid-format 0xlong$")
    assert bastion.file(BASTION_HOME + "/gpg.conf").contains("^list-options show-uid-validity$")
    assert not bastion.file(BASTION_HOME + "/gpg.conf").contains("^keyserver")
    # Master key: certify only, protected; signing subkey without expiry of its own.
    listing = run_ok(bastion, "gpg --batch --homedir %s --with-colons -K %s", BASTION_HOME, fingerprint).stdout
    primary = [line.split(":") for line in listing.splitlines() if line.startswith("sec:")][0]
    assert [char for char in primary[11] if char.islower()] == ["c"] and primary[6], primary
    subs = [line.split(":") for line in listing.splitlines() if line.startswith("ssb:")]
    assert [sub[11] for sub in subs] == ["s"] and subs[0][6] == "", subs
    # Revocation certificate on the bastion and, private, on the controller.
    certificate = os.path.join(ceremony.controller_dir, cycle, "revocation", "revoke-0x%s.asc" % fingerprint)
    assert os.stat(certificate).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(certificate)).st_mode & 0o777 == 0o700
    assert bastion.file("/root/signing-ceremony/%s/revoke-0x%s.asc" % (cycle, fingerprint)).mode == 0o600
    # The subkey-only export was checked in the scratch directory and shredded there: it rests
    # nowhere (the switch-over makes it again), the scratch directory is 0700 and empty.
    assert not bastion.file("/root/signing-ceremony/%s/signing-subkey-0x%s.asc" % (cycle, fingerprint)).exists
    assert bastion.file("/root/signing-ceremony/%s/signing-subkey-0x%s.asc.checked" % (cycle, fingerprint)).exists
    assert bastion.file(SCRATCH).mode == 0o700 and bastion.file(SCRATCH).user == "root"
    assert scratch_left(bastion) == []
    assert run_ok(bastion, "ls /tmp").stdout.count("pkgsign-") == 0
    # Publication: minimal clean key named after the full fingerprint, fingerprint listing.
    published = os.path.join(ceremony.publication(cycle), "0x%s.txt" % fingerprint.lower())
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-c1"))
    gpg.import_file(published)
    assert gpg.fingerprint(fingerprint) == fingerprint
    with open(os.path.join(ceremony.publication(cycle), "fingerprints.txt")) as handle:
        listing = handle.read()
    assert " ".join(fingerprint[i:i + 4] for i in range(0, 40, 4)) in listing
    # First cycle: the announcement is signed by the new key alone.
    announcement = os.path.join(ceremony.publication(cycle), "announcement.txt.asc")
    assert len(gpg.verified_by(announcement)) == 1
    gpg.stop()
    facts["c1-listing"] = listing


def test_stored_revocation_certificate_is_guarded(ceremony, facts):
    """A plain `gpg --import` of an admin's copy revokes nothing; the runbook's procedure
    (delete the colon, then import) revokes."""
    cycle, fingerprint = ceremony.cycle(1), facts["c1"]
    stored = os.path.join(ceremony.controller_dir, cycle, "revocation", "revoke-0x%s.asc" % fingerprint)
    with open(stored, "rb") as handle:
        text = handle.read()
    assert b"\n:-----BEGIN PGP PUBLIC KEY BLOCK-----\n" in text
    gpg = LocalGpg(os.path.join(ceremony.workdir, "revocation-guard"))
    gpg.import_file(os.path.join(ceremony.publication(cycle), "0x%s.txt" % fingerprint.lower()))
    plain = gpg.run("--import", stored, check=False)
    assert plain.returncode != 0
    assert not re.search(r"^pub:r:", gpg.run("--with-colons", "-k", fingerprint).stdout.decode(), re.MULTILINE)
    # The documented procedure (docs/runbook.md, 6.2), on a copy.
    usable = os.path.join(ceremony.workdir, "revoke-usable.asc")
    with open(usable, "wb") as handle:
        handle.write(subprocess.run(["sed", "s/^:-----BEGIN/-----BEGIN/", stored], stdout=subprocess.PIPE,
                                    check=True).stdout)
    gpg.import_file(usable)
    assert re.search(r"^pub:r:", gpg.run("--with-colons", "-k", fingerprint).stdout.decode(), re.MULTILINE)
    gpg.stop()
    os.unlink(usable)


def test_cycle1_switch_over_refused_without_quorum(ceremony, signer, facts):
    ceremony.make_admins()
    rc, output = ceremony.playbook("rotate-key.yml", "--tags", "switch-over",
                                   "-e", "bastion_cycle=" + ceremony.cycle(1), expect_ok=False)
    assert rc != 0
    refusal = output.split("Switch-over refused", 1)[1][:2000]
    assert "0 of the 2" in refusal
    for name in ("alice", "bob", "carol"):
        assert name in refusal
    # A refused switch-over changes nothing (the count runs in a scratch home).
    assert set(recap_changes(output).values()) == {0}, recap_changes(output)
    # Nothing reached the signer.
    listing = run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -k", SIGNER_HOME).stdout
    assert facts["c1"] not in listing


def _controller_handoffs():
    return {name for name in os.listdir("/tmp") if name.startswith("pkgsign-handoff-")}


def test_cycle1_attest_and_switch_over(ceremony, signer, facts):
    cycle, fingerprint = ceremony.cycle(1), facts["c1"]
    # Hand-off directories of other runs on this controller (a demo, another scenario) are not ours.
    handoffs_before = _controller_handoffs()
    _rc, output = ceremony.attest("alice", cycle, fingerprint)
    assert "The fingerprint matches" in output
    # One attestation of the two needed: still refused, naming who is missing.
    rc, output = ceremony.playbook("rotate-key.yml", "--tags", "switch-over", "-e", "bastion_cycle=" + cycle,
                                   expect_ok=False)
    assert rc != 0 and "1 of the 2" in output
    assert set(recap_changes(output).values()) == {0}, recap_changes(output)
    refusal = output.split("Switch-over refused", 1)[1][:2000]
    assert "bob" in refusal and "carol" in refusal and "alice" not in refusal.split("Missing:", 1)[1].split(".")[0]
    # A wrong fingerprint read on the bastion stops the attestation.
    wrong = fingerprint[:-1] + ("0" if fingerprint[-1] != "0" else "1")
    rc, output = ceremony.playbook("attest-key.yml", "-e", "attest_cycle=" + cycle, "-e", "attest_fingerprint=" + wrong,
                                   "-e", "attest_admin_key=" + ceremony.admins["carol"]["fingerprint"],
                                   "-e", "attest_gnupg_home=" + ceremony.admins["carol"]["home"].path,
                                   "-e", "attest_controller_dir=" + ceremony.controller_dir,
                                   "-e", "@" + ceremony.admins["carol"]["passphrase_file"], expect_ok=False)
    assert rc != 0
    ceremony.attest("bob", cycle, fingerprint)
    _rc, output = ceremony.playbook("rotate-key.yml", "--tags", "switch-over", "-e", "bastion_cycle=" + cycle)
    assert "Attested by alice, bob" in output or "Attested by bob, alice" in output
    # The signer holds the subkey only (sec#) and the service signs with it.
    listing = run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -K %s", SIGNER_HOME,
                     fingerprint).stdout
    assert re.search(r"^sec:[^:]*:(?:[^:]*:){12}#", listing, re.MULTILINE), listing
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-c1"))
    subkey_fpr, subkey_id = _signing_subkey(gpg, fingerprint)
    assert signer_key_id(signer) == subkey_id
    signature = sign_on_signer(signer, "/tmp/artifact-c1.txt", "release artifact of cycle 1")
    facts["artifact-c1"] = signer.file("/tmp/artifact-c1.txt").content_string
    facts["artifact-c1.asc"] = signature
    # The controller copy of the hand-off export was shredded.
    assert _controller_handoffs() <= handoffs_before


# -- cycle 2 --------------------------------------------------------------------------------

def test_cycle2_interrupted_rotation_continues(ceremony, bastion, facts):
    cycle = ceremony.cycle(2)
    common = ["-e", "bastion_cycle=" + cycle, "-e", "bastion_previous_cycle=" + ceremony.cycle(1)]
    # Stop after step 3 (as an interruption would), then run the whole rotation.
    ceremony.playbook("rotate-key.yml", "--tags", "master-key,revocation,subkey", *common)
    first = bastion_keys(bastion, "(%s)" % cycle)
    assert len(first) == 1
    assert not bastion.file("/root/signing-ceremony/%s/signing-subkey-0x%s.asc.checked" % (cycle, first[0])).exists
    # Ctrl-C while step 4 checks the unprotected export in its scratch home.
    rc, _output, interrupted = ceremony.playbook_interrupted(
        "rotate-key.yml", *common, marker="Import the export alone into the temporary home", sig=signal.SIGINT)
    assert interrupted and rc != 0
    left = scratch_left(bastion)
    # The next run shreds what was left, says so, and completes.
    _rc, output = ceremony.playbook("rotate-key.yml", *common, verbosity=3)
    if left:
        # the ceremony's own scratch homes are named by the sweep; a module's scratch home under
        # pkgsign-scratch-<uid> is swept by the next module run (checked empty below)
        ours = [name for name in left if not name.startswith("pkgsign-scratch-")]
        assert ("Shredded on ceremony-bastion" in output or not ours) and all(name in output for name in ours), left
    assert scratch_left(bastion) == []
    assert bastion_keys(bastion, "(%s)" % cycle) == first
    facts["c2"] = first[0]
    # Cycle 1's listing did not change when cycle 2 was published; the top listing has both.
    with open(os.path.join(ceremony.publication(ceremony.cycle(1)), "fingerprints.txt")) as handle:
        assert handle.read() == facts["c1-listing"]
    with open(os.path.join(ceremony.controller_dir, "fingerprints.txt")) as handle:
        every = handle.read()
    for fingerprint in (facts["c1"], facts["c2"]):
        assert " ".join(fingerprint[i:i + 4] for i in range(0, 40, 4)) in every


def test_cycle2_certified_by_cycle1_and_announced_by_both(ceremony, facts):
    cycle, old, new = ceremony.cycle(2), facts["c1"], facts["c2"]
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-c2"))
    gpg.import_file(os.path.join(ceremony.publication(ceremony.cycle(1)), "0x%s.txt" % old.lower()))
    gpg.import_file(os.path.join(ceremony.publication(cycle), "0x%s.certified.asc" % new.lower()))
    sigs = gpg.run("--with-colons", "--check-sigs", new).stdout.decode()
    good_issuers = [line.split(":")[12] or line.split(":")[4] for line in sigs.splitlines()
                    if line.startswith("sig:!:")]
    assert any(old.endswith(issuer) for issuer in good_issuers), sigs
    # The minimal publication carries only the self-signatures.
    minimal = LocalGpg(os.path.join(ceremony.workdir, "verify-c2-minimal"))
    minimal.import_file(os.path.join(ceremony.publication(cycle), "0x%s.txt" % new.lower()))
    listed = minimal.run("--with-colons", "--list-sigs", new).stdout.decode()
    assert old[-16:] not in listed
    # One announcement, good signatures by the old and by the new key.
    announcement = os.path.join(ceremony.publication(cycle), "announcement.txt.asc")
    signers = gpg.verified_by(announcement)
    assert len(signers) == 2, signers
    primaries = gpg.run("--verify", announcement, check=False).stderr.decode()
    assert old in primaries and new in primaries
    with open(announcement) as handle:
        text = handle.read()
    assert " ".join(new[i:i + 4] for i in range(0, 20, 4)) in text
    gpg.stop()
    minimal.stop()


def _no_leftovers(bastion, signer, ceremony):
    """No temporary copy of key material anywhere, and no secret key file outside the homes."""
    assert scratch_left(bastion) == []
    assert secret_files_outside_homes(bastion, ["/root", "/tmp", "/var/tmp", "/home", "/srv"],
                                      [BASTION_HOME]) == []
    assert secret_files_outside_homes(signer, ["/root", "/tmp", "/var/tmp", "/home", "/srv", "/var/lib/pkgsign"],
                                      ["/var/lib/pkgsign"]) == []
    # The service's own key stores (per-project keys made by /gen_key) are GnuPG homes too, and
    # so is audit-gnupg, the audit log's checkpoint key (config.py: state_dir/audit-gnupg).
    stores = ["/var/lib/pkgsign/" + name for name in ("keys", "pool", "keygen", "pending", "audit-gnupg")]
    assert secret_files_outside_homes(signer, ["/var/lib/pkgsign"], [SIGNER_HOME] + stores) == []
    homes = [os.path.join(ceremony.workdir, name) for name in os.listdir(ceremony.workdir)
             if name.startswith(("admin-", "verify-", "revocation-guard"))
             and os.path.isdir(os.path.join(ceremony.workdir, name))]
    roots = [ceremony.workdir, controller_local_tmp()]
    roots += [os.path.join("/tmp", name) for name in os.listdir("/tmp") if name.startswith("pkgsign-handoff-")]
    assert local_secret_files([root for root in roots if os.path.isdir(root)], homes) == []


def test_cycle2_attest_and_switch_over(ceremony, bastion, signer, facts):
    cycle, new = ceremony.cycle(2), facts["c2"]
    ceremony.attest("alice", cycle, new)
    ceremony.attest("carol", cycle, new)
    switch = ["--tags", "switch-over", "-e", "bastion_cycle=" + cycle, "-e", "bastion_previous_cycle=" + ceremony.cycle(1)]
    # A killed session while the bastion checks the export, then the signer down during a
    # switch-over: nothing is left behind, and the next run completes.
    rc, _output, interrupted = ceremony.playbook_interrupted(
        "rotate-key.yml", *switch, marker="Sign the probe with the exported subkey", sig=signal.SIGKILL, delay=0.5)
    assert interrupted
    run_ok(bastion, "true")
    subprocess.run(["podman", "stop", "-t", "20", SIGNER], check=True, stdout=subprocess.DEVNULL)
    try:
        rc, output = ceremony.playbook("rotate-key.yml", *switch, expect_ok=False)
        assert rc != 0
        assert "Shredded on ceremony-bastion" in output
        assert scratch_left(bastion) == []
    finally:
        start_container(SIGNER, signer)
    ceremony.playbook("rotate-key.yml", *switch)
    _no_leftovers(bastion, signer, ceremony)
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-c2"))
    new_subkey, new_subkey_id = _signing_subkey(gpg, new)
    assert signer_key_id(signer) == new_subkey_id
    # New signatures come from the new subkey ...
    sign_on_signer(signer, "/tmp/artifact-c2.txt", "release artifact of cycle 2")
    local = os.path.join(ceremony.workdir, "artifact-c2")
    with open(local + ".txt", "w") as handle:
        handle.write(signer.file("/tmp/artifact-c2.txt").content_string)
    with open(local + ".txt.asc", "w") as handle:
        handle.write(signer.file("/tmp/artifact-c2.txt.asc").content_string)
    assert gpg.verified_by(local + ".txt.asc", local + ".txt") == [new_subkey]
    # ... and what cycle 1 signed still verifies on the signer and with the published key.
    # (the signer's /tmp is a tmpfs: the restart above emptied it, so cycle 1's artifact and its
    # signature are put back as they were signed)
    for name, key in (("/tmp/artifact-c1.txt", "artifact-c1"), ("/tmp/artifact-c1.txt.asc", "artifact-c1.asc")):
        run_ok(signer, "printf '%%s' %s | base64 -d > %s && chmod 0644 %s",
               base64.b64encode(facts[key].encode()).decode(), name, name)
    run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --verify /tmp/artifact-c1.txt.asc /tmp/artifact-c1.txt",
           SIGNER_HOME)
    local1 = os.path.join(ceremony.workdir, "artifact-c1")
    with open(local1 + ".txt", "w") as handle:
        handle.write(facts["artifact-c1"])
    with open(local1 + ".txt.asc", "w") as handle:
        handle.write(facts["artifact-c1.asc"])
    old_subkey, _old_key_id = _signing_subkey(gpg, facts["c1"])
    assert gpg.verified_by(local1 + ".txt.asc", local1 + ".txt") == [old_subkey]
    # The signer holds the previous cycle's key public only: it cannot sign with it any more,
    # neither through gpg nor through the service.
    assert facts["c1"] not in run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -K",
                                     SIGNER_HOME).stdout
    old_sign = signer.run("cd /tmp && sudo -u pkgsign gpg --batch --homedir %s --pinentry-mode error -u %s! "
                          "--detach-sign -o /tmp/old-key.sig /tmp/artifact-c2.txt", SIGNER_HOME, old_subkey)
    assert old_sign.rc != 0
    run_ok(signer, "printf 'x\\n' > /tmp/artifact-old.txt && chmod 0644 /tmp/artifact-old.txt")
    # as the client identity, which can read its token (the refusal must come from the service)
    refused = signer.run("cd /tmp && sudo -u pkgsign-client sign -u %s -d /tmp/artifact-old.txt", facts["c1"])
    assert refused.rc != 0 and "token" not in refused.stderr and "ermission denied" not in refused.stderr, \
        refused.stderr
    # The certified key is published with the attestations and the previous key's certification.
    certified = LocalGpg(os.path.join(ceremony.workdir, "verify-c2-certified"))
    for name in ("alice", "carol"):
        certified.run("--import", os.path.join(ceremony.workdir, "admin-%s.pub" % name))
    certified.import_file(os.path.join(ceremony.publication(ceremony.cycle(1)), "0x%s.txt" % facts["c1"].lower()))
    certified.import_file(os.path.join(ceremony.publication(cycle), "0x%s.certified.asc" % new.lower()))
    sigs = certified.run("--with-colons", "--check-sigs", new).stdout.decode()
    issuers = {line.split(":")[4] for line in sigs.splitlines() if line.startswith("sig:!:")}
    for fingerprint in (facts["c1"], ceremony.admins["alice"]["fingerprint"], ceremony.admins["carol"]["fingerprint"]):
        assert fingerprint[-16:] in issuers, sigs
    certified.stop()
    gpg.stop()


def test_rerunning_completed_rotation_changes_nothing(ceremony):
    common = ["-e", "bastion_cycle=" + ceremony.cycle(2), "-e", "bastion_previous_cycle=" + ceremony.cycle(1)]
    _rc, output = ceremony.playbook("rotate-key.yml", *common)
    assert set(recap_changes(output).values()) == {0}, recap_changes(output)
    _rc, output = ceremony.playbook("rotate-key.yml", "--tags", "switch-over", *common)
    assert_nothing_changed(output)


# -- revocation -----------------------------------------------------------------------------

def test_revoke_with_master_key_available(ceremony, signer, facts):
    revoked, fallback = facts["c2"], facts["c1"]
    # The fallback signs no more on the signer (retired at cycle 2's switch-over): revoking is
    # refused, nothing is revoked, until the fallback is switched over again (docs/runbook.md 7.1).
    rc, output = ceremony.playbook("revoke-key.yml", "-e", "bastion_revoke_cycle=" + ceremony.cycle(2),
                                   "-e", "bastion_revoke_fallback_cycle=" + ceremony.cycle(1), expect_ok=False)
    assert rc != 0 and "is not installed as a signing-subkey-only key" in output
    assert "is revoked" not in output
    ceremony.playbook("rotate-key.yml", "--tags", "switch-over", "-e", "bastion_cycle=" + ceremony.cycle(1))
    listing = run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -K", SIGNER_HOME).stdout
    assert fallback in listing and revoked not in listing
    ceremony.playbook("revoke-key.yml", "-e", "bastion_revoke_cycle=" + ceremony.cycle(2),
                      "-e", "bastion_revoke_fallback_cycle=" + ceremony.cycle(1),
                      "-e", "bastion_revoke_reason=superseded",
                      "-e", "bastion_revoke_description='Test: replaced early'")
    # gpg reports the key revoked: on the signer, and from the published key.
    listing = run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -K", SIGNER_HOME).stdout
    assert revoked not in listing  # no secret part left
    public = run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --with-colons -k %s", SIGNER_HOME, revoked).stdout
    assert public.startswith("tru:") or "pub:r:" in public
    assert re.search(r"^pub:r:", public, re.MULTILINE), public
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-revoked"))
    gpg.import_file(os.path.join(ceremony.publication(ceremony.cycle(2)), "0x%s.txt" % revoked.lower()))
    assert re.search(r"^pub:r:", gpg.run("--with-colons", "-k", revoked).stdout.decode(), re.MULTILINE)
    assert "[revoked: " in gpg.run("-k", revoked).stdout.decode()
    gpg.stop()
    # The previous key is back in service.
    verify = LocalGpg(os.path.join(ceremony.workdir, "verify-c1"))
    assert signer_key_id(signer) == _signing_subkey(verify, fallback)[1]
    verify.stop()
    # Re-running the revocation changes nothing.
    _rc, output = ceremony.playbook("revoke-key.yml", "-e", "bastion_revoke_cycle=" + ceremony.cycle(2),
                                    "-e", "bastion_revoke_fallback_cycle=" + ceremony.cycle(1),
                                    "-e", "bastion_revoke_reason=superseded",
                                    "-e", "bastion_revoke_description='Test: replaced early'")
    assert_nothing_changed(output)


def test_revoked_cycle_is_not_rotated_again(ceremony, signer, facts):
    common = ["-e", "bastion_cycle=" + ceremony.cycle(2), "-e", "bastion_previous_cycle=" + ceremony.cycle(1)]
    for check in ([], ["--check"]):
        rc, output = ceremony.playbook("rotate-key.yml", *(check + common), expect_ok=False)
        assert rc != 0 and "is revoked (revoke-key.yml ran)" in output, output[-3000:]
        assert set(recap_changes(output).values()) == {0}, recap_changes(output)
    # An inventory alias still naming the revoked key: deploy-signer refuses it by name.
    rc, output = ceremony.playbook("deploy-signer.yml", "-e", '{"signer_aliases": {"release": "%s"}}' % facts["c2"],
                                   expect_ok=False)
    assert rc != 0 and "alias 'release' names %s" % facts["c2"] in output, output[-3000:]
    # The service kept the fallback key in service.
    verify = LocalGpg(os.path.join(ceremony.workdir, "verify-c1"))
    assert signer_key_id(signer) == _signing_subkey(verify, facts["c1"])[1]
    verify.stop()


def test_revoke_with_master_key_lost(ceremony, bastion, facts):
    """Cycle 3's master key is made, then 'lost': only the stored certificate can revoke it."""
    cycle = ceremony.cycle(3)
    ceremony.playbook("rotate-key.yml", "-e", "bastion_cycle=" + cycle, "-e", "bastion_previous_cycle=" + ceremony.cycle(1),
                      "--tags", "generate,publish")
    lost = bastion_keys(bastion, "(%s)" % cycle)[0]
    # The bastion's copy of the certificate is gone too: the controller's copy is used.
    run_ok(bastion, "rm /root/signing-ceremony/%s/revoke-0x%s.asc", cycle, lost)
    ceremony.playbook("revoke-key.yml", "-e", "bastion_revoke_cycle=" + cycle,
                      "-e", "bastion_revoke_fallback_cycle=" + ceremony.cycle(1),
                      "-e", "bastion_revoke_method=stored", "-e", "bastion_master_passphrase=")
    listing = run_ok(bastion, "gpg --batch --homedir %s --with-colons -k %s", BASTION_HOME, lost).stdout
    assert re.search(r"^pub:r:", listing, re.MULTILINE), listing
    gpg = LocalGpg(os.path.join(ceremony.workdir, "verify-lost"))
    gpg.import_file(os.path.join(ceremony.publication(cycle), "0x%s.txt" % lost.lower()))
    assert "[revoked: " in gpg.run("-k", lost).stdout.decode()
    gpg.stop()


def test_switch_over_interrupted_on_the_signer(ceremony, bastion, signer, facts):
    """Ctrl-C and kill -9 while the signer play imports the hand-off export (the secret subkey
    travels in the module's arguments): the next run shreds whatever they left on the signer,
    says so, and completes; afterwards no copy of the export is left anywhere."""
    switch = ["--tags", "switch-over", "-e", "bastion_cycle=" + ceremony.cycle(1)]
    left = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        _rc, _output, interrupted = ceremony.playbook_interrupted(
            "rotate-key.yml", *switch, marker="Import the signing keys into the service's keyring", sig=sig,
            delay=0.5)
        assert interrupted
        left += secret_files_outside_homes(signer, ["/root", "/tmp", "/var/tmp"], [])
    # (what a module still running when its controller died removed by itself does not count)
    left = [path for path in left if signer.file(path).exists]
    print("ceremony: left on the signer by the interrupted switch-overs: %s" % (left or "nothing"), flush=True)
    _rc, output = ceremony.playbook("rotate-key.yml", *switch)
    for path in left:
        assert os.path.dirname(path) in output and "Shredded on %s" % SIGNER in output, (path, output[-3000:])
    _no_leftovers(bastion, signer, ceremony)
    verify = LocalGpg(os.path.join(ceremony.workdir, "verify-c1"))
    assert signer_key_id(signer) == _signing_subkey(verify, facts["c1"])[1]
    verify.stop()
    sign_on_signer(signer, "/tmp/artifact-c1-again.txt", "signed after the interrupted switch-overs")


def test_no_key_material_left_behind(ceremony, bastion, signer):
    _no_leftovers(bastion, signer, ceremony)


def test_no_passphrase_in_any_output(ceremony):
    assert ceremony.outputs
    assert any(" -vvv " in command for command, _output in ceremony.outputs)
    for command, output in ceremony.outputs:
        for passphrase in ceremony.passphrases:
            assert passphrase not in output, "a passphrase appears in the output of %s" % command
