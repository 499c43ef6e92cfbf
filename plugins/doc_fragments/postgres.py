# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by the cloudphoenix.stack PostgreSQL modules."""

    # How to reach the node's server over SQL.
    DOCUMENTATION = r"""
options:
  listen_address:
    description:
      - Address the node's server listens on (passed to C(pg_ctl -o) when the module starts it).
      - Used for SQL when neither O(login_host) nor O(socket_dir) is set.
    type: str
    default: 127.0.0.1
  port:
    description:
      - Port of the node's server (passed to C(pg_ctl -o) when the module starts it).
    type: int
    default: 5432
  socket_dir:
    description:
      - Unix socket directory of the node's server. When set, SQL goes over this socket
        (trust authentication for the superuser in the lab) unless O(login_host) is set.
    type: path
  login_host:
    description:
      - Host or socket directory for the SQL connection. Defaults to O(socket_dir), then O(listen_address).
    type: str
  login_port:
    description:
      - Port for the SQL connection. Defaults to O(port).
    type: int
  login_user:
    description:
      - Role used for SQL on the node (a superuser, to read pg_authid and change settings).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged or returned.
    type: str
  login_db:
    description:
      - Database for the SQL connection.
    type: str
    default: postgres
  connect_timeout:
    description:
      - Seconds to wait for a connection (libpq C(connect_timeout)); the minimum libpq honours is 2.
    type: int
    default: 5
requirements:
  - psycopg2 (or psycopg2-binary) on the managed node
"""

    # The node's files and processes on this host.
    NODE = r"""
options:
  data_dir:
    description:
      - The node's data directory on this host.
    type: path
    required: true
  bin_dir:
    description:
      - Directory with the PostgreSQL server binaries (pg_ctl, pg_basebackup, pg_rewind, pg_controldata).
    type: path
    default: /usr/lib/postgresql/15/bin
  os_user:
    description:
      - OS user owning the cluster. Commands and files in the data directory run as this user
        (through C(runuser) when the module runs as root).
    type: str
    default: postgres
  log_file:
    description:
      - Server log used when the module starts the server. Defaults to C(server.log) beside O(data_dir).
    type: path
"""
