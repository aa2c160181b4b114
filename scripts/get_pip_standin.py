# Offline stand-in for the get-pip bootstrap script that ansible-test downloads
# (copied by scripts/bootstrap.sh to ~/.ansible/test/cache/get_pip_24_2.py).
#
# ansible-test runs it inside each new, pip-less virtual environment with pip's options and the
# packages to install (e.g. "pip==24.2"). We install the pip bundled with Python's ensurepip
# and then let that pip install what was asked for from the machine's configured indexes.
# ensurepip runs in a subprocess: in-process it sets PIP_CONFIG_FILE=/dev/null, which would
# make the following pip ignore the machine's pip configuration.
#
# Quiet: the output of both steps is shown only when one fails (ansible-test makes several
# venvs, and pip's progress and this machine's index warnings would fill the test log).
import subprocess
import sys


def run(args):
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
        sys.exit(proc.returncode)


def main():
    dropped = {"--no-setuptools", "--no-wheel"}  # options of get-pip only, unknown to pip
    pip_args = [arg for arg in sys.argv[1:] if arg not in dropped]
    run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"] + pip_args)


if __name__ == "__main__":
    main()
