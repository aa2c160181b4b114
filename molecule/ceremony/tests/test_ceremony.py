"""Two consecutive key cycles through the operators' commands (docs/runbook.md).

The tests form one sequence (pytest runs them in file order; the scenario passes -x):
cycle 1 is made, its switch-over is refused without the attestation quorum, two admins
attest, the switch-over succeeds and an artifact is signed; cycle 2 is made with an
interruption after step 3, certified by cycle 1, attested and switched over; re-running
changes nothing; cycle 2 is revoked with the master key available (cycle 1 back in service)
and a third key with the stored certificate (as when the master key is lost); finally no
passphrase appears in any output.
"""

import os
import re

from conftest import (BASTION_HOME, KEY_EMAIL, KEY_NAME, SIGNER_HOME, LocalGpg, assert_nothing_changed,
                      bastion_keys, recap_changes, run_ok, sign_on_signer, signer_key_id)


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
    # The subkey-only hand-off export: 0600, and the temporary check home is gone.
    handoff = bastion.file("/root/signing-ceremony/%s/signing-subkey-0x%s.asc" % (cycle, fingerprint))
    assert handoff.exists and handoff.mode == 0o600
    assert run_ok(bastion, "ls /tmp").stdout.count("pkgsign-handoff-") == 0
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


def test_cycle1_switch_over_refused_without_quorum(ceremony, signer, facts):
    ceremony.make_admins()
    rc, output = ceremony.playbook("rotate-key.yml", "--tags", "switch-over",
                                   "-e", "bastion_cycle=" + ceremony.cycle(1), expect_ok=False)
    assert rc != 0
    refusal = output.split("Switch-over refused", 1)[1][:2000]
    assert "0 of the 2" in refusal
    for name in ("alice", "bob", "carol"):
        assert name in refusal
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
    assert not bastion.file("/root/signing-ceremony/%s/signing-subkey-0x%s.asc" % (cycle, first[0])).exists
    ceremony.playbook("rotate-key.yml", *common, verbosity=3)
    assert bastion_keys(bastion, "(%s)" % cycle) == first
    facts["c2"] = first[0]


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


def test_cycle2_attest_and_switch_over(ceremony, signer, facts):
    cycle, new = ceremony.cycle(2), facts["c2"]
    ceremony.attest("alice", cycle, new)
    ceremony.attest("carol", cycle, new)
    ceremony.playbook("rotate-key.yml", "--tags", "switch-over", "-e", "bastion_cycle=" + cycle,
                      "-e", "bastion_previous_cycle=" + ceremony.cycle(1))
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
    run_ok(signer, "sudo -u pkgsign gpg --batch --homedir %s --verify /tmp/artifact-c1.txt.asc /tmp/artifact-c1.txt",
           SIGNER_HOME)
    local1 = os.path.join(ceremony.workdir, "artifact-c1")
    with open(local1 + ".txt", "w") as handle:
        handle.write(facts["artifact-c1"])
    with open(local1 + ".txt.asc", "w") as handle:
        handle.write(facts["artifact-c1.asc"])
    old_subkey, _old_key_id = _signing_subkey(gpg, facts["c1"])
    assert gpg.verified_by(local1 + ".txt.asc", local1 + ".txt") == [old_subkey]
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


def test_no_passphrase_in_any_output(ceremony):
    assert ceremony.outputs
    assert any(" -vvv " in command for command, _output in ceremony.outputs)
    for command, output in ceremony.outputs:
        for passphrase in ceremony.passphrases:
            assert passphrase not in output, "a passphrase appears in the output of %s" % command
