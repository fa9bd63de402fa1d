-- Argo CD health check for mlkube.io/Dataset (docs/monitoring.md#argo-cd).
-- Summary condition Ready: True -> Healthy, Unknown (Profiling) -> Progressing,
-- False (InvalidSpec, ValidationFailed, SourceUnavailable, ProfilingFailed) -> Degraded.
-- A generation the operator has not judged yet is Progressing, whatever the
-- conditions of the previous generation say.
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = obj.metadata.generation
local status = obj.status
local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to reconcile the Dataset"
  return hs
end
if generation ~= nil and (status.observedGeneration ~= generation or ready.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to observe generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
