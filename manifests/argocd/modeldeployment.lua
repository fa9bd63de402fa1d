-- Argo CD health check for mlkube.io/ModelDeployment (docs/monitoring.md#argo-cd).
-- In this order:
--   generation not yet observed by the operator         -> Progressing
--   Ready=False InvalidSpec                              -> Degraded
--   Degraded=True (thresholds exceeded)                  -> Degraded
--   Progressing=True (RollingOut, Canary)                -> Progressing
--   Ready=False ModelNotReady / RollingOut               -> Progressing
--   Ready=False, any other reason                        -> Degraded
--   status.state RolledBack: the model the TrainingRun
--   offers was rejected, a pinned one serves until a new
--   model comes or a user unpins                         -> Suspended
--   Progressing=False ReferenceNotPermitted or
--   ArtifactNotReachable while Ready=True: another
--   namespace's model whose grant was revoked keeps
--   serving, nothing new rolls out until it is granted
--   again                                                -> Suspended
--   status.state Retraining (the Retrain action's run)   -> Progressing
--   Ready=True                                           -> Healthy
-- Degraded=Unknown (InsufficientData, MetricsUnavailable, MonitoringDisabled) does
-- not change the health; its reason is added to the message.
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

local function short(sha)
  if sha == nil then
    return "?"
  end
  return string.sub(sha, 1, 12)
end

local generation = obj.metadata.generation
local status = obj.status
local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to reconcile the ModelDeployment"
  return hs
end
if generation ~= nil and (status.observedGeneration ~= generation or ready.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to observe generation " .. tostring(generation)
  return hs
end
if ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end
if ready.status ~= "True" then
  if ready.reason == "ModelNotReady" or ready.reason == "RollingOut" then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(ready)
  return hs
end
local monitoring = ""
if degraded ~= nil and degraded.status == "Unknown" then
  monitoring = "; monitoring: " .. describe(degraded)
end
if status.state == "RolledBack" then
  local pinned = status.pinnedModel or status.currentModel or {}
  hs.status = "Suspended"
  hs.message = "Rolled back to " .. tostring(pinned.trainingRun) .. " (sha256 " .. short(pinned.sha256) ..
    "): the model on offer (sha256 " .. short(status.rolledBackFrom) ..
    ") was rejected; a new model or `mlkube rollout unpin` resumes rollouts" .. monitoring
  return hs
end
if progressing ~= nil and progressing.status == "False" and
    (progressing.reason == "ReferenceNotPermitted" or progressing.reason == "ArtifactNotReachable") then
  -- Paused by the owning namespace (Argo CD's Suspended: waiting for an external event),
  -- not failed: the model already served keeps serving.
  hs.status = "Suspended"
  hs.message = describe(progressing) .. "; granting it again resumes rollouts" .. monitoring
  return hs
end
if status.state == "Retraining" then
  hs.status = "Progressing"
  hs.message = "Retraining (TrainingRun " .. tostring(status.retrainRun) .. "); " .. describe(ready) .. monitoring
  return hs
end
hs.status = "Healthy"
hs.message = describe(ready) .. monitoring
if progressing ~= nil and progressing.reason == "ModelNotReady" then
  -- Still serving, but the TrainingRun offers no model (deleted, or not trained yet).
  hs.message = hs.message .. "; " .. describe(progressing)
end
return hs
