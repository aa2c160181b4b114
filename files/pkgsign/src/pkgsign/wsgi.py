"""WSGI entry point for httpd + mod_wsgi: ``pkgsign.wsgi:application``.

The configuration file is named by the environment variable PKGSIGN_CONFIG; under mod_wsgi a
``SetEnv PKGSIGN_CONFIG ...`` reaches the WSGI environ of the first request, which is used when
the process environment lacks it.
"""

import os
import threading

from .app import create_app


class _LazyApplication:
    """Build the application on the first request, so importing this module never fails."""

    def __init__(self):
        self._app = None
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    if environ.get("PKGSIGN_CONFIG") and not os.environ.get("PKGSIGN_CONFIG"):
                        os.environ["PKGSIGN_CONFIG"] = environ["PKGSIGN_CONFIG"]
                    self._app = create_app()
        return self._app(environ, start_response)


application = _LazyApplication()
