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
      - V(rtorrent) is rtorrent 0.9 (the vmcloud.fleet.rtorrent role); V(libtorrent) is the vmcloud
        seeder service holding a libtorrent-rasterbar session (the vmcloud.fleet.libtorrent_seeder role),
        which also uses the index entries' web seeds (BEP 19). See docs/distribution.md.
      - The default is V(libtorrent), chosen by measurement (docs/performance.md), as the roles'
        C(vmcloud_engine) is; a task that drives rtorrent sets O(engine=rtorrent).
    type: str
    choices: [rtorrent, libtorrent]
    default: libtorrent
  socket:
    description:
      - Path of the engine's local control socket (for rtorrent, its SCGI unix socket,
        C(network.scgi.open_local) in its configuration; for libtorrent, the seeder's socket).
      - Default the engine's own, C(/run/rtorrent/rpc.socket) for rtorrent and
        C(/run/vmcloud/seeder.socket) for libtorrent.
    type: path
  rpc_timeout:
    description:
      - Seconds allowed for each call to the engine.
    type: float
    default: 30
"""
