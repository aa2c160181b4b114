"""Write the `sign` launcher: the client started isolated and without `site`.

    python3 -m pkgsign.launcher DEST      prints "changed" or "unchanged"

pip's console script starts the interpreter with `site`, which scans every site-packages
directory and runs its .pth files (with --system-site-packages, the host's too: seen adding
50 ms to each run). Copr calls `sign` once per file, so start-up is most of a call. The
launcher runs this virtualenv's interpreter with ``-I -S`` (no site, no PYTHON* variables, no
user site) and puts only this package's directory on ``sys.path``; the client needs nothing
else (standard library only).
"""

import os
import sys

TEMPLATE = """#!{python} -IS
# Written by `python3 -m pkgsign.launcher`: the sign client, started without site (faster).
import sys
sys.path.insert(0, {path!r})
from pkgsign.client import main
sys.exit(main())
"""


def launcher_text(python=None, package_parent=None):
    python = python or sys.executable
    package_parent = package_parent or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if any(c.isspace() for c in python):
        raise ValueError("interpreter path with white space cannot go into a #! line: %r" % python)
    return TEMPLATE.format(python=python, path=package_parent)


def write_launcher(dest, text):
    """Write ``text`` to ``dest`` (mode 0755) unless it is already there; True when written."""
    try:
        if not os.path.islink(dest):
            with open(dest, encoding="utf-8") as handle:
                if handle.read() == text and os.stat(dest).st_mode & 0o777 == 0o755:
                    return False
    except (OSError, UnicodeDecodeError):
        pass
    tmp = "%s.tmp-%d" % (dest, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)  # also replaces a symlink to the console script
    return True


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m pkgsign.launcher DEST", file=sys.stderr)
        return 2
    try:
        changed = write_launcher(argv[0], launcher_text())
    except (OSError, ValueError) as err:
        print("pkgsign.launcher: %s" % err, file=sys.stderr)
        return 1
    print("changed" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
