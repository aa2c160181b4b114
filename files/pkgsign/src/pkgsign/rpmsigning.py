"""RPM signing for the `sign` client (-r, --delsign/--unsign).

Packages rpm 4.x laid out with reserved space get their header signature written in place
(rpmheader.py); the rest go through rpmsign. rpmsign does the header work then: it execs
argv[0] of %__gpg_sign_cmd with the rest as the argument vector, writes the header to sign on
the command's standard input and expects the binary signature in %{__signature_filename}. Our
command is `sh` + `cat` over two FIFOs to this process, which hashes, asks the server and
answers: no interpreter starts per package.
"""

import os

from .clientfiles import check_in_place, open_input
from .clienterrors import SignError, UnknownKey

HELPER_SCRIPT = 'cat > "$0"; cat "$1" > "$2"'


def _rpmsign_command(conf, user, digest_algo, fifo_in, fifo_out, files):
    helper = "/bin/sh sh -c %s %s %s %%{shescape:%%{?__signature_filename}}" % (
        _shell_word(HELPER_SCRIPT), _shell_word(fifo_in), _shell_word(fifo_out))
    return [conf.get("rpmsign", "rpmsign"), "--addsign",
            "--define", "__gpg /usr/bin/gpg",
            "--define", "_gpg_name %s" % user,
            "--define", "_gpg_digest_algo %s" % digest_algo,
            "--define", "__gpg_sign_cmd %s" % helper,
            "--"] + list(files)


def _shell_word(text):
    if text and all(c.isalnum() or c in "/._-+" for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _read_fifo(path):
    with open(path, "rb") as handle:  # blocks until the helper (or the wake-up) opens it
        return handle.read()


def _open_fifo_for_writing(path, finished):
    """Open the answer FIFO once the helper reads it; None if rpmsign ended meanwhile."""
    import errno
    import time

    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
        if finished.is_set():
            return None
        time.sleep(0.0005)


# subprocess and tempfile each add ~13 ms of imports to a `sign -r` run (random, shutil, re,
# selectors): the private directory and the rpmsign process are made with os directly.

def _private_workdir():
    """A new 0700 directory under $TMPDIR or /tmp."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _attempt in range(100):
        path = os.path.join(base, "pkgsign-rpm-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise SignError("cannot make a private directory in %s" % base)


def _spawn(argv, output_path):
    """Start ``argv`` (searched in PATH) with standard input from /dev/null and standard output
    and error into ``output_path``; returns the pid."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1


def _rpmsign_group(signer, conf, group):
    """Run one rpmsign over ``group`` and serve its signing requests; returns an error or None
    (an unknown key is raised)."""
    import threading

    workdir = _private_workdir()
    fifo_in, fifo_out = os.path.join(workdir, "header"), os.path.join(workdir, "signature")
    output = os.path.join(workdir, "output")
    errors = []
    try:
        os.mkfifo(fifo_in, 0o600)
        os.mkfifo(fifo_out, 0o600)
        argv = _rpmsign_command(conf, signer.user, signer.digest_algo, fifo_in, fifo_out, group)
        try:
            pid = _spawn(argv, output)
        except OSError as err:
            return "cannot run %s: %s" % (argv[0], err.strerror)
        finished = threading.Event()

        def serve():
            while not finished.is_set():
                header = _read_fifo(fifo_in)
                if finished.is_set() and not header:
                    break
                packet = b""
                try:
                    packet = signer.sign_states([signer.state_of(header)])[0]
                except SignError as err:
                    errors.append(err)
                fd = _open_fifo_for_writing(fifo_out, finished)
                if fd is None:
                    break
                try:
                    os.set_blocking(fd, True)
                    os.write(fd, packet)
                except BrokenPipeError:
                    pass
                finally:
                    os.close(fd)

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        _pid, status = os.waitpid(pid, 0)
        finished.set()
        # The serving loop may wait in open(fifo_in): open the other end so it returns.
        while serving.is_alive():
            try:
                os.close(os.open(fifo_in, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            serving.join(0.01)
        if errors:
            if isinstance(errors[0], UnknownKey):
                raise errors[0]
            return str(errors[0])
        code = _exit_code(status)
        if code != 0:
            with open(output, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            lines = [line for line in text.splitlines() if line.strip()]
            return "rpmsign failed for %s: %s" % (", ".join(group), " / ".join(lines[-3:]) or "exit %d" % code)
        return None
    finally:
        for path in (fifo_in, fifo_out, output):
            if os.path.lexists(path):
                os.unlink(path)
        os.rmdir(workdir)


def _sign_rpms_with_rpmsign(signer, conf, files, jobs):
    """Errors of running rpmsign over ``files`` in up to ``jobs`` groups at once."""
    groups = [files[i::jobs] for i in range(min(jobs, len(files)))]
    if len(groups) == 1:
        return [_rpmsign_group(signer, conf, groups[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        return list(pool.map(lambda group: _rpmsign_group(signer, conf, group), groups))


def _check_rewritable_fd(path, fd):
    check_in_place(path, os.fstat(fd))


def _sign_rpms_in_place(signer, packages, jobs, unsupported):
    """Sign the main headers of parsed packages in shared /sign requests; returns errors.
    Packages that turn out not to take the signature in place are added to ``unsupported``."""
    from . import rpmheader

    errors = []

    def write(index, packet):
        package = packages[index]
        try:
            # The tag follows the key that signed: RSA or EdDSA, as the server's packet says.
            package.write_signature(rpmheader.sigtag_for_packet(packet), packet, check=_check_rewritable_fd)
        except rpmheader.Unsupported:
            unsupported.append(package.path)  # left untouched: rpmsign signs it
        except rpmheader.NotAnRpm as err:
            errors.append("%s: %s" % (package.path, err))
        except SignError as err:
            errors.append(str(err))
        except OSError as err:
            errors.append("%s: %s" % (package.path, err.strerror))

    signer.sign_blobs([package.header for package in packages], jobs, deliver=write)
    return errors


def sign_rpms(signer, conf, files, jobs):
    """Sign RPMs in place: packages rpm 4.x laid out with reserved space get their header
    signature written directly (what rpmsign would write, byte for byte); the rest (already
    signed, old layouts) and everything when sign.conf says ``rpm_signing: rpmsign`` go
    through rpmsign. Only regular files of the caller's own, with one link, are rewritten."""
    for path in files:
        check_in_place(path)
    method = conf.get("rpm_signing", "native").lower()
    if method not in ("native", "rpmsign"):
        raise SignError("rpm_signing must be native or rpmsign, not %r" % method)
    packages, through_rpmsign, errors = [], [], []
    if method == "rpmsign":
        for path in files:  # rpmsign is handed only files that start with an RPM lead
            error = rpm_lead_error(path)
            if error:
                errors.append(error)
            else:
                through_rpmsign.append(path)
    if method == "native":
        from . import rpmheader

        through_rpmsign = []
        for path in files:
            try:
                package = rpmheader.load(path)
                package.check_signable()
                packages.append(package)
            except rpmheader.Unsupported:
                through_rpmsign.append(path)
            except rpmheader.NotAnRpm as err:  # reported; the other packages are still signed
                errors.append("%s: %s" % (path, err))
            except OSError as err:
                errors.append("%s: %s" % (path, err.strerror))
    if packages:
        errors += _sign_rpms_in_place(signer, packages, jobs, through_rpmsign)
    if through_rpmsign:
        errors += _sign_rpms_with_rpmsign(signer, conf, through_rpmsign, jobs)
    errors = [e for e in errors if e]
    if errors:
        raise SignError("; ".join(errors))


def rpm_lead_error(path):
    """None when ``path`` starts with an RPM lead (magic, binary or source package), else why not."""
    fd = open_input(path)
    try:
        lead = os.read(fd, 96)
    except OSError as err:
        return "%s: %s" % (path, err.strerror)
    finally:
        os.close(fd)
    if len(lead) < 96 or lead[:4] != b"\xed\xab\xee\xdb":
        return "%s: not an RPM package" % path
    return None


def unsign_rpms(conf, files):
    """rpmsign --delsign rewrites the packages: the rules of every in-place output apply first
    (a regular file of the caller's own with one link; no link, FIFO or device is opened)."""
    import subprocess

    for path in files:
        check_in_place(path)
    for path in files:
        error = rpm_lead_error(path)
        if error:
            raise SignError(error)
    proc = subprocess.run([conf.get("rpmsign", "rpmsign"), "--delsign", "--"] + list(files),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise SignError("rpmsign --delsign failed: %s" % proc.stderr.decode("utf-8", "replace").strip())
