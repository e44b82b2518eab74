# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that talks to the BitTorrent engine. Private to the collection."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The BitTorrent engine running on the host, driven through the collection's engine interface.
    type: str
    choices: [rtorrent]
    default: rtorrent
  socket:
    description:
      - Path of the engine's local control socket (for rtorrent, its SCGI unix socket,
        C(network.scgi.open_local) in its configuration).
    type: path
    default: /run/rtorrent/rpc.socket
  rpc_timeout:
    description:
      - Seconds allowed for each call to the engine.
    type: float
    default: 30
"""
