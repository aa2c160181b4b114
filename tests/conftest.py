# Copyright: contributors to pkgsign.signer
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make this checkout importable as ``ansible_collections.pkgsign.signer`` for plain pytest.

The suite scripts (``scripts/pytest-suite.sh``) already put a directory holding
``ansible_collections/pkgsign/signer -> checkout`` on PYTHONPATH, and ``ansible-test units``
runs in a real ``ansible_collections/pkgsign/signer`` tree. This covers running
``.venv/bin/pytest tests/unit`` by hand, with the same link as the scripts use.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collection_importable():
    try:
        return importlib.util.find_spec("ansible_collections.pkgsign.signer") is not None
    except ImportError:
        return False


def _link_collection():
    """Create (or reuse) the link that scripts/collection-paths.sh creates, put it on sys.path."""
    digest = hashlib.sha256(COLLECTION_ROOT.encode()).hexdigest()[:10]
    collections_dir = os.path.join(tempfile.gettempdir(), "pkgsign-signer-" + digest, "collections")
    namespace_dir = os.path.join(collections_dir, "ansible_collections", "pkgsign")
    link = os.path.join(namespace_dir, "signer")
    os.makedirs(namespace_dir, exist_ok=True)
    if os.path.realpath(link) != COLLECTION_ROOT:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(COLLECTION_ROOT, link)
    sys.path.insert(0, collections_dir)
    importlib.invalidate_caches()


if not _collection_importable():
    _link_collection()
