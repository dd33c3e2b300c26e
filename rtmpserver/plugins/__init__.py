"""Plugin package for application handler factories.

Like ``twisted.plugins``, this package's path is extended with every ``rtmpserver/plugins``
directory (without ``__init__.py``) found on ``sys.path``, so a third-party distribution ships
``rtmpserver/plugins/their_module.py`` and its handlers are found without touching this repo.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]  # noqa: F821
__all__: list = []
