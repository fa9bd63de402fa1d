-- Argo CD health check for mlkube.io/TrainingRun (docs/monitoring.md#argo-cd).
-- Summary condition Succeeded: True (Trained) -> Healthy, Unknown (DatasetNotReady,
-- Training) -> Progressing, False (InvalidSpec, QualityGateFailed, TrainingFailed,
-- DatasetHashMismatch) -> Degraded. A generation the operator has not judged yet is
-- Progressing (status.model still holds the previous generation's model meanwhile).
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
local succeeded = condition(status, "Succeeded")
if succeeded == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to reconcile the TrainingRun"
  return hs
end
if generation ~= nil and (status.observedGeneration ~= generation or succeeded.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to observe generation " .. tostring(generation)
  return hs
end
if succeeded.status == "True" then
  hs.status = "Healthy"
elseif succeeded.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(succeeded)
return hs
