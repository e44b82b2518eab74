# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_report
short_description: The fleet as a hosts x images matrix, from what the hypervisors report
version_added: 0.1.0
description:
  - Takes, per host, what C(playbooks/report.yml) gathered (the local fact C(ansible_local.vmcloud), which is
    C(imgdist status --json); the result of M(vmcloud.fleet.image_store_info); C(imgdist --list_unknown_files
    --json); C(systemctl show) of the sync unit) and returns the matrix the fleet report draws, one cell per
    host and image, with the host's index, last sync, failures and unknown files.
  - A cell is one of the following states.
  - V(verified) - held, unchanged since it was verified, and desired by the host's verified index.
  - V(seeding) - verified, and seeded by the host's engine.
  - V(present) - held and unchanged, but not desired by the host's verified index, or no index to say.
  - V(downloading) - desired, the engine is fetching it; C(progress) is the percentage done.
  - V(missing) - desired, or in the store's manifest, but not in the store.
  - V(corrupt) - the stored file changed since it was verified.
  - V(unknown) - the host did not report (unreachable, failed), or has no fact to say whether it wants the image.
  - V(disabled) - the host is disabled with C(imgdist --disable); the cell's C(detail) says what it holds.
  - V(none) - the host does not want the image (label C(not wanted)).
  - The filter only arranges what the hosts reported; it reads nothing and does not verify anything again.
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description:
      - One mapping per host with C(host) (name) and, each optional, C(facts) (the registered result of the
        C(ansible.builtin.setup) task, used for C(unreachable), C(failed) and C(msg)), C(status) (the mapping
        C(ansible_local.vmcloud)), C(store) (the registered result of M(vmcloud.fleet.image_store_info)),
        C(unknown) (the registered result of C(imgdist --list_unknown_files --json)) and C(sync) (the
        registered result of C(systemctl show) with the properties C(LoadState), C(Result), C(ExecMainStatus),
        C(ExecMainStartTimestamp) and C(ExecMainExitTimestamp)).
      - A registered result that was skipped, failed or unreachable counts as not reported.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: The matrix for the HTML page
  ansible.builtin.set_fact:
    vmcloud_report: >-
      {{ ansible_play_hosts_all | map('extract', hostvars) | map(attribute='vmcloud_report_host')
         | list | vmcloud.fleet.fleet_report }}
  run_once: true
"""

RETURN = r"""
_value:
  description:
    - C(columns) (one per image, sorted by name and version; C(uuid), C(name), C(version)), C(rows) (one per
      host in input order; C(host), C(reachable), C(enabled), C(index) (C(url), C(version), C(expires)) or none,
      C(run_guard), C(last_sync) (C(time), C(started), C(result), C(exit_status), C(meaning)) or none,
      C(failures) (lines, each starting with its source), C(unknown_files) (names) or none when not reported,
      and C(cells), one per column in column order), C(index) (the newest index version any host holds, with its
      C(expires) and C(hosts) holding it), C(states) (each cell state with its C(label) and C(meaning), for the
      legend) and C(counts) (cells per state).
    - A cell has C(state), C(label) (the text shown; colour is never the only sign), C(css) (a class name),
      C(progress) (percent, or none) and C(detail) (one line with the store state, engine state or error).
  type: dict
"""

import json

from ansible.errors import AnsibleFilterError

# The collection's library is imported where a filter runs, not when the plugin loads: Ansible loads every
# filter file of a collection in each task's worker process, for each host, whenever a task names any
# vmcloud.fleet filter, and the library (imgdist's configuration, cryptography) costs about 0.1 s to import.

# The legend, in the order shown: state -> (label, meaning).
STATES = {
    "verified": ("verified", "held, unchanged since it was verified, desired by the host's verified index"),
    "seeding": ("seeding", "verified, and the engine seeds it to the other hosts"),
    "present": ("present", "held and unchanged, but not desired by the host's verified index (or no index)"),
    "downloading": ("downloading", "desired, the engine is fetching it (percent done)"),
    "missing": ("missing", "desired or in the store's manifest, but not in the store"),
    "corrupt": ("corrupt", "the stored file changed since it was verified"),
    "unknown": ("unknown", "the host did not report (unreachable, failed, or nothing to say)"),
    "disabled": ("disabled", "the host is disabled (imgdist --disable); the detail says what it holds"),
    "none": ("not wanted", "the host does not want this image (not approved or targeted for it)"),
}


def _sync_exit_meaning(status):
    """What an `imgdist sync` exit status means, as the report says it."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _imgdist_config as config

    meaning = {
        config.EXIT_OK: "success",
        config.EXIT_IMAGES_FAILED: "some image failed",
        config.EXIT_INDEX_REFUSED: "the index was refused",
        config.EXIT_DISABLED: "skipped: the host is disabled",
        config.EXIT_CONFIG: "configuration error",
        config.EXIT_ERROR: "error (index or engine unreachable, I/O)",
        config.EXIT_INTERRUPTED: "interrupted",
    }
    return meaning.get(status, f"exit status {status}")


DOWNLOADING = ("downloading", "checking", "downloaded")


def _reported(result):
    """The registered result when it holds data, else None (skipped, failed, unreachable, absent)."""
    if not isinstance(result, dict) or not result:
        return None
    if result.get("skipped") or result.get("failed") or result.get("unreachable") or result.get("rc") not in (None, 0):
        return None
    return result


def _problem(what, result):
    """One failure line for a registered result that failed or could not run, or None."""
    if not isinstance(result, dict) or result.get("skipped") or not result:
        return None
    if result.get("unreachable"):
        return f"{what}: unreachable: {_one_line(result.get('msg'))}"
    if result.get("rc") not in (None, 0):
        if not result.get("stderr") and not result.get("stdout") and result.get("msg"):  # it did not start
            command = result.get("cmd")
            program = command[0] if isinstance(command, list) and command else command
            return f"{what}: could not run {_one_line(program)}: {_one_line(result['msg'])}"
        return f"{what}: exit status {result['rc']}: {_one_line(result.get('stderr') or result.get('msg'))}"
    if result.get("failed"):
        rule = f"{result['rule']}: " if result.get("rule") and not str(result.get("msg", "")).startswith(
            str(result["rule"])) else ""
        return f"{what}: {rule}{_one_line(result.get('msg'))}"
    return None


def _one_line(text):
    return " ".join(str(text if text is not None else "").split())[:500]


def _cell(state, detail="", progress=None):
    label = STATES[state][0]
    if state == "downloading" and progress is not None:
        label = f"downloading {progress:.0f}%"
    return {"state": state, "label": label, "css": f"cell-{state}", "progress": progress, "detail": detail}


def _image_cell(uuid, status, rows, held):
    """The state of one image on one reachable host, before the host's enabled flag is applied."""
    row = rows.get(uuid)
    held_state = held[uuid]["state"] if held is not None and uuid in held else None
    if held is None and row is not None:
        held_state = row.get("store")
    engine = (row or {}).get("engine") or {}
    engine_state = engine.get("state")
    engine_note = f"engine: {engine_state}" + (f" ({_one_line(engine['message'])})" if engine.get("message")
                                               else "") if engine_state else "engine: not loaded"
    if held_state == "corrupt" or (row or {}).get("state") == "corrupt":
        return _cell("corrupt", "store: changed since it was verified; imgdist sync repairs it")
    if row is not None and row.get("state") in DOWNLOADING:
        progress = round(float(engine.get("progress") or 0.0) * 100, 1)
        return _cell("downloading", f"{engine_note}, {progress:g}% done", progress)
    if held_state == "present":
        if row is not None and row.get("desired"):
            if engine_state == "seeding":
                return _cell("seeding", f"store: verified; {engine_note}, ratio {float(engine.get('ratio') or 0):.2f}")
            return _cell("verified", f"store: verified; {engine_note}")
        why = ("superseded, kept until " + ", ".join(map(str, row.get("waiting_for") or [])) + " is in the store"
               if row is not None and row.get("state") == "superseded-pending" else
               "no longer desired (retiring)" if row is not None else
               "not desired by the host's verified index" if status is not None and status.get("index")
               else "no verified index reported")
        return _cell("present", f"store: present; {why}")
    if held_state == "missing":
        return _cell("missing", "store: in the manifest, file gone")
    if row is not None and row.get("desired"):
        return _cell("missing", f"desired, not in the store; {engine_note}" if engine_state
                     else "desired, not in the store; waiting for imgdist sync")
    if status is None:
        return _cell("unknown", "no imgdist status (ansible_local.vmcloud) to say whether it is wanted")
    return _cell("none", "not desired by this host")


def _last_sync(result):
    result = _reported(result)
    if result is None:
        return None
    props = {}
    for line in str(result.get("stdout", "")).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    if props.get("LoadState") not in (None, "loaded"):
        return {"time": None, "started": None, "result": props.get("LoadState"), "exit_status": None,
                "meaning": f"the sync unit is {props.get('LoadState')}"}
    ended = props.get("ExecMainExitTimestamp") or None
    try:
        status = int(props["ExecMainStatus"]) if ended else None
    except (KeyError, ValueError):
        status = None
    meaning = "never ran" if not ended and not props.get("ExecMainStartTimestamp") else (
        _sync_exit_meaning(status) if status is not None else "running")
    if ended and props.get("Result") not in (None, "", "success", "exit-code"):  # timeout, signal, core-dump...
        meaning += f" (systemd: {props['Result']})"
    return {"time": ended, "started": props.get("ExecMainStartTimestamp") or None, "result": props.get("Result"),
            "exit_status": status, "meaning": meaning}


def _host_row(entry, columns_seen):
    from ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config import EXIT_DISABLED, EXIT_OK
    if not isinstance(entry, dict) or not entry.get("host"):
        raise AnsibleFilterError("fleet_report: each element of the input must be a mapping with 'host'")
    host = str(entry["host"])
    facts = entry.get("facts")
    unreachable = isinstance(facts, dict) and bool(facts.get("unreachable"))
    status = entry.get("status") if isinstance(entry.get("status"), dict) and not unreachable else None
    store = _reported(entry.get("store"))
    failures = [line for line in (_problem("facts", facts), _problem("image_store_info", entry.get("store")),
                                  _problem("unknown files", entry.get("unknown"))) if line]
    if isinstance(entry.get("status"), str) and not unreachable:  # setup keeps a failed fact script's error text
        failures.append(f"fact ansible_local.vmcloud: {_one_line(entry['status'])}")
    rows = {}
    if status is not None:
        for row in status.get("images") or []:
            if isinstance(row, dict) and row.get("uuid"):
                rows[str(row["uuid"])] = row
                columns_seen.setdefault(str(row["uuid"]), (row.get("name"), row.get("version")))
        failures.extend(f"imgdist status: {_one_line(problem)}" for problem in status.get("problems") or [])
    held = None
    if store is not None:
        held = {str(image["uuid"]): image for image in store.get("images") or [] if isinstance(image, dict)
                and image.get("uuid")}
        for uuid, image in held.items():
            columns_seen.setdefault(uuid, (image.get("name"), image.get("version")))
    last_sync = _last_sync(entry.get("sync"))
    if last_sync and last_sync["exit_status"] not in (None, EXIT_OK, EXIT_DISABLED):
        failures.append(f"last sync: {last_sync['meaning']} (exit status {last_sync['exit_status']}); "
                        f"journalctl -u vmcloud-imgdist-sync says why")
    unknown = _reported(entry.get("unknown"))
    unknown_files = None
    if unknown is not None:
        try:
            names = json.loads(unknown.get("stdout") or "[]")
        except ValueError:
            names = None
        if isinstance(names, list):
            unknown_files = [str(name) for name in names]
        else:
            failures.append("unknown files: the output of imgdist --list_unknown_files --json is not a JSON list")
    reachable = not unreachable and (status is not None or store is not None)
    return {
        "host": host,
        "reachable": reachable,
        "enabled": None if status is None else bool(status.get("enabled", True)),
        "index": status.get("index") if status is not None and isinstance(status.get("index"), dict) else None,
        "run_guard": status.get("run_guard") if status is not None else None,
        "last_sync": last_sync,
        "failures": failures,
        "unknown_files": unknown_files,
        "_status": status,
        "_rows": rows,
        "_held": held,
    }


def _sort_key(column):
    version = column["version"]
    return (str(column["name"] or column["uuid"]), version if isinstance(version, int) else -1, column["uuid"])


def fleet_report(hosts):
    if not isinstance(hosts, list):
        raise AnsibleFilterError("fleet_report: the input must be a list of per-host mappings")
    seen = {}
    rows = [_host_row(entry, seen) for entry in hosts]
    columns = sorted(({"uuid": uuid, "name": name, "version": version} for uuid, (name, version) in seen.items()),
                     key=_sort_key)
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        cells = []
        for column in columns:
            if not row["reachable"]:
                cell = _cell("unknown", "the host did not report; its failures say why")
            else:
                cell = _image_cell(column["uuid"], row["_status"], row["_rows"], row["_held"])
                if row["enabled"] is False:
                    cell = _cell("disabled", f"disabled; {cell['label']}: {cell['detail']}")
            counts[cell["state"]] += 1
            cells.append(cell)
        row["cells"] = cells
        for private in ("_status", "_rows", "_held"):
            del row[private]
    versions = [row["index"] for row in rows if row["index"] and isinstance(row["index"].get("version"), int)]
    newest = max(versions, key=lambda index: index["version"]) if versions else None
    index = None
    if newest is not None:
        index = {"url": newest.get("url"), "version": newest["version"], "expires": newest.get("expires"),
                 "hosts": [row["host"] for row in rows if row["index"] and row["index"].get("version")
                           == newest["version"]]}
    return {
        "columns": columns,
        "rows": rows,
        "index": index,
        "states": [{"state": state, "label": label, "meaning": meaning, "css": f"cell-{state}"}
                   for state, (label, meaning) in STATES.items()],
        "counts": counts,
    }


class FilterModule:
    def filters(self):
        return {"fleet_report": fleet_report}
