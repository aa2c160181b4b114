# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of the shared GnuPG package: one copy for modules and service, no service-only code
in the modules' payload, the algorithm choices taken from the one table."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

import yaml

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SHARED = os.path.join(ROOT, "plugins", "module_utils", "_gnupg")
SERVICE = os.path.join(ROOT, "files", "pkgsign", "src", "pkgsign", "_gnupg")


def _python_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".py"))


def test_service_reaches_every_shared_file_through_a_symlink():
    # A new module of the package without its symlink would make `pkgsign._gnupg` fail to import
    # in the installed service; a regular file there would be a second copy.
    assert _python_files(SERVICE) == _python_files(SHARED)
    for name in _python_files(SERVICE):
        path = os.path.join(SERVICE, name)
        assert os.path.islink(path), name
        assert os.path.realpath(path) == os.path.realpath(os.path.join(SHARED, name))


def test_shared_package_holds_no_service_only_agent_code():
    # Private agents and GENKEY (Assuan) live in pkgsign/agent.py: they stay out of every module's
    # AnsiballZ payload.
    for name in _python_files(SHARED):
        with open(os.path.join(SHARED, name)) as handle:
            source = handle.read()
        assert '"--server"' not in source, name
        assert "GENKEY --" not in source, name
        assert "socketpair" not in source, name


def _documented_choices(module, option):
    with open(os.path.join(ROOT, "plugins", "modules", module + ".py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["DOCUMENTATION"]:
            return yaml.safe_load(node.value.value)["options"][option]["choices"]
    raise AssertionError("no DOCUMENTATION in %s" % module)


def test_module_algorithm_choices_are_the_one_table():
    for module in ("openpgp_key", "openpgp_subkey"):
        assert _documented_choices(module, "algorithm") == list(gnupg.ALGORITHMS), module
