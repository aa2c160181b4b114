"""obs-sign's command line as `sign` understands it: every option obs-sign has, whether it takes
a value, and, for the ones `sign` refuses, why (one line each). parse_args in client.py reads
this table; README.md's table of obs-sign options says the same (a test compares them).

Standard library only, no imports: loaded by every `sign` run.
"""

# Options `sign` implements as obs-sign does (or as a documented superset).
#   name: takes a value
SUPPORTED = {
    "-u": True, "-h": True,
    "-c": False, "-d": False, "-D": False, "-r": False, "-p": False, "-k": False, "-t": False,
    "-4": False, "-v": False,
    "--delsign": False, "--full-keyid": False, "--fingerprint": False, "--config": True,
    "--help": False,
    # pkgsign's own
    "--unsign": False, "--version": False, "--jobs": True,
}

_NO_TIME = "the server writes the signature's creation time itself (a client-chosen time would let a token back-date signatures)"
_NO_X509 = "pkgsign makes OpenPGP signatures only"
_KEYS_ON_SERVER = "keys are made and kept by the server (POST /gen_key, pkgsign-admin)"

# Options `sign` refuses: name -> (takes a value, why). A refused option ends the run with one
# line naming it, before any file is opened.
REFUSED = {
    "-3": (False, "OpenPGP v3 signatures are not made (rpm-sequoia and dnf5 reject them): drop -3, signatures are v4"),
    "-T": (True, _NO_TIME),
    "-S": (True, "checksum files are not written; OBS's signer probes for -S and signs without it"),
    "-P": (True, "private keys never leave the server: there is no key file to sign with"),
    "-A": (True, "the key named by -u decides the algorithm; `sign -u KEY --fingerprint` and `sign -p` show it"),
    "-a": (False, "AppImage signing is not supported"),
    "-O": (False, "raw RSA (X.509/openssl) signatures: " + _NO_X509),
    "-g": (False, "key generation: " + _KEYS_ON_SERVER),
    "-x": (False, "key expiry is extended by the server (pkgsign-admin maintain)"),
    "-C": (False, "X.509 certificates: " + _NO_X509),
    "--appimage": (False, "AppImage signing is not supported"),
    "--appx": (False, "appx signing: " + _NO_X509),
    "--appxdetached": (False, "appx signing: " + _NO_X509),
    "--pesign": (False, "PE/COFF signing: " + _NO_X509),
    "--kosign": (False, "kernel module signing: " + _NO_X509),
    "--cmssign": (False, "PKCS#7/CMS signatures: " + _NO_X509),
    "--cert": (True, "X.509 certificates: " + _NO_X509),
    "--othercerts": (True, "X.509 certificates: " + _NO_X509),
    "--cms-nocerts": (False, "PKCS#7/CMS signatures: " + _NO_X509),
    "--cms-keyid": (False, "PKCS#7/CMS signatures: " + _NO_X509),
    "--bulk-cpio": (False, "bulk cpio signing exists for raw X.509 signatures (-O): " + _NO_X509),
    "--pkcs1pss": (False, "raw RSA-PSS signatures: " + _NO_X509),
    "--noheaderonly": (False, "only header signatures are made (rpm 4.x's); header+payload signatures are obsolete"),
    "--hashfile": (False, "not provided: use sha256sum or sha512sum"),
    "--totp": (False, "TOTP secrets are not kept by pkgsign"),
    "--project": (True, "keys are chosen by -u (or an alias in pkgsign.conf's [aliases]), not by OBS project"),
    "--test-sign": (True, "obs-sign's test hook is not provided"),
}

# Modes chosen by a file name when no mode option is given (obs-sign's rule), and the names of
# file types obs-sign would sign that `sign` does not.
RPM_SUFFIXES = (".rpm", ".spm")
UNSIGNED_SUFFIXES = {".AppImage": "AppImage signing is not supported",
                     ".appx": "appx signing is not supported (" + _NO_X509 + ")",
                     ".drpm": "delta RPMs are not signed (OBS signs them with -T buildtime, which is refused)"}


def takes_value(option):
    """True/False for a known option, None for one obs-sign does not have either."""
    if option in SUPPORTED:
        return SUPPORTED[option]
    if option in REFUSED:
        return REFUSED[option][0]
    return None
