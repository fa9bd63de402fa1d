"""Run mlkube's Argo CD health scripts the way Argo CD does, with a real Lua interpreter.

Argo CD (gopher-lua, Lua 5.1) sets the live object as the global `obj`, runs the
script with only the safe standard libraries, and reads `status` and `message` from
the table the script returns. Here Debian's `lua5.4` runs the same file in an
environment holding only what gopher-lua's safe set offers (base functions, string,
table, math; no os, io, require or load), so a script that leans on anything else
fails here as it would in Argo CD. The object goes in as a Lua table literal built
from its JSON form (arrays 1-based, as Argo CD converts them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
SCRIPTS = {
    "Dataset": ARGOCD / "dataset.lua",
    "TrainingRun": ARGOCD / "trainingrun.lua",
    "ModelDeployment": ARGOCD / "modeldeployment.lua",
    "ModelGrant": ARGOCD / "modelgrant.lua",
}
# Argo CD's health statuses (gitops-engine health.HealthStatusCode).
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

_RUNNER = r"""
local script_path, obj_path = arg[1], arg[2]
local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end
local obj = assert(load("return " .. read(obj_path), "=obj", "t", {}))()
local env = {
  obj = obj,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = table.unpack,
  string = string, table = table, math = math,
}
local chunk = assert(load(read(script_path), "@" .. script_path, "t", env))
local hs = chunk()
if type(hs) ~= "table" then
  error("health script returned " .. type(hs) .. ", not a table")
end
local function q(s)
  if s == nil then return "null" end
  if type(s) ~= "string" then error("field is a " .. type(s) .. ", not a string") end
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end
io.write('{"status": ', q(hs.status), ', "message": ', q(hs.message), '}\n')
"""


def lua_binary() -> str:
    found = shutil.which("lua5.4")
    if found is None:
        raise RuntimeError("lua5.4 not found: install Debian's lua5.4 package (.ci/run does)")
    return found


def lua_literal(value: Any) -> str:
    """A Lua table constructor for a JSON value (null fields are simply absent, as in Argo CD)."""
    if isinstance(value, dict):
        items = [f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                f"\\{b:03d}" if not (32 <= b < 127) or b in (34, 92) else chr(b) for b in value.encode()
            )
            + '"'
        )
    raise TypeError(f"not a JSON value: {value!r}")


def health(obj: dict[str, Any], tmp: Path, script: Path | None = None) -> dict[str, str | None]:
    """What Argo CD's health assessment gives `obj` (dict with `status` and `message`)."""
    script = script or SCRIPTS[obj["kind"]]
    runner, obj_file = tmp / "argocd-runner.lua", tmp / "argocd-obj.lua"
    runner.write_text(_RUNNER)
    # Through JSON first: timestamps and the like become strings, as in the live object.
    obj_file.write_text(lua_literal(json.loads(json.dumps(obj, default=str))))
    result = subprocess.run(
        [lua_binary(), str(runner), str(script), str(obj_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed on {obj['kind']}: {result.stderr}")
    out: dict[str, str | None] = json.loads(result.stdout)
    return out


# The recorded objects in tests/data/argocd/ (see tests/integration/test_argocd_health.py,
# which captures them from the dev cluster) and the health Argo CD must give each:
# (status, a fragment of the message).
FIXTURES_DIR = ROOT / "tests" / "data" / "argocd"
EXPECTED: dict[str, tuple[str, str]] = {
    "dataset-profiling": ("Progressing", "Profiling"),
    "dataset-profiled": ("Healthy", "Profiled"),
    "dataset-validation-failed": ("Degraded", "ValidationFailed"),
    "dataset-generation-pending": ("Progressing", "observe generation 2"),
    "trainingrun-dataset-not-ready": ("Progressing", "DatasetNotReady"),
    "trainingrun-training": ("Progressing", "Training"),
    "trainingrun-trained": ("Healthy", "Trained"),
    "trainingrun-quality-gate-failed": ("Degraded", "QualityGateFailed"),
    "modeldeployment-model-not-ready": ("Progressing", "ModelNotReady"),
    "modeldeployment-rolling-out": ("Progressing", "RollingOut"),
    "modeldeployment-serving": ("Healthy", "Serving"),
    "modeldeployment-insufficient-data": ("Healthy", "monitoring: InsufficientData"),
    "modeldeployment-canary": ("Progressing", "Canary"),
    "modeldeployment-degraded": ("Degraded", "ThresholdsExceeded"),
    "modeldeployment-rolled-back": ("Suspended", "Rolled back to iris-lr"),
    "modeldeployment-generation-pending": ("Progressing", "observe generation 2"),
    # Recorded by tests/integration/test_model_grant_e2e.py (another namespace's model).
    "modelgrant-accepted": ("Healthy", "GrantAccepted"),
    "modeldeployment-reference-revoked": ("Suspended", "ReferenceNotPermitted"),
}
# The states test_model_grant_e2e.py records (the health walk records the others).
GRANT_STATES = {"modelgrant-accepted", "modeldeployment-reference-revoked"}
