"""``auth``: stream keys, signed URLs and passwords for publish and play.

Three ways to prove a client may publish or play, chosen per action by ``auth.publish`` and
``auth.play`` (docs/handlers.md has the user's view):

- ``key``: a static key from the config or a key file.  OBS and most encoders have a single
  "stream key" field whose text becomes the stream name, so the name itself may be the key, and
  ``auth.stream_keys = alice:KEY`` publishes under ``alice`` so that the key never becomes a name
  players, logs or stat pages see.  ``name?key=KEY`` (or ``?token=``) and a key in the connect URL
  (``rtmp://host/app?key=KEY``) work too.
- ``signed``: an HMAC-SHA256 link with an expiry, made by ``sign_url`` (or the CLI below) from a
  secret shared with whatever hands out links.  The action is part of the signed text, so a
  player's link cannot be used to publish.
- ``user``: ``?user=NAME&pass=PASSWORD`` checked by a ``twisted.cred`` checker against an
  scrypt-hashed users file.

Secrets are compared with ``hmac.compare_digest`` on fixed-length digests, never logged, and never
passed on: the ``key``/``token``/``sign``/``pass`` arguments are removed from the request that the
rest of the chain sees.

CLI::

    python -m rtmpserver.handlers.auth sign --secret-file S --app live --name cam --ttl 3600
    python -m rtmpserver.handlers.auth passwd alice < password.txt
"""

from __future__ import annotations

from rtmpserver.handlers.auth._common import (
    MAX_FILE_BYTES,
    MIN_SECRET_LENGTH,
    MODES,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
)
from rtmpserver.handlers.auth.cli import (
    main,
)
from rtmpserver.handlers.auth.files import (
    FileProblem,
    WatchedFile,
)
from rtmpserver.handlers.auth.handler import (
    AuthHandler,
    Policy,
)
from rtmpserver.handlers.auth.keys import (
    KeyStore,
    parse_keys_file,
)
from rtmpserver.handlers.auth.passwords import (
    ScryptUsersChecker,
    _parse_scrypt,
    hash_password,
    parse_users_file,
)
from rtmpserver.handlers.auth.settings import (
    AuthFactory,
    factory,
)
from rtmpserver.handlers.auth.signing import (
    sign_url,
    signed_string,
)

__all__ = [
    "AuthFactory",
    "AuthHandler",
    "FileProblem",
    "KeyStore",
    "MAX_FILE_BYTES",
    "MIN_SECRET_LENGTH",
    "MODES",
    "Policy",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "ScryptUsersChecker",
    "WatchedFile",
    "_parse_scrypt",
    "factory",
    "hash_password",
    "main",
    "parse_keys_file",
    "parse_users_file",
    "sign_url",
    "signed_string",
]
