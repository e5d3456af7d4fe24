"""TLS to MySQL: with a CA configured, a connection that is not encrypted is refused.

aiomysql would otherwise go on in plaintext when the server offers no TLS (the
test MariaDB offers none), which is how a man in the middle would strip it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from conftest import mysql_store_config

from asyncflow.errors import Unavailable
from asyncflow.server.app import open_store

pytestmark = [pytest.mark.mysql]


async def test_no_plaintext_fallback(tmp_path: Path, mysql_database: str) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    config = mysql_store_config(mysql_database, mysql_tls_ca_file=str(ca_file))
    with pytest.raises(Unavailable, match="not encrypted"):
        await open_store(config)
