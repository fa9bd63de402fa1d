-- Argo CD health check for mlkube.io/ModelGrant (docs/monitoring.md#argo-cd).
-- A grant is a permission the operator only validates and records:
--   no status yet, or a generation the operator has not observed -> Progressing
--   Accepted=True (GrantAccepted)                                  -> Healthy (who may serve what)
--   Accepted=False (InvalidSpec: the grant grants nothing)         -> Degraded
--   Accepted=Unknown or absent                                     -> Progressing
-- Whether a ModelDeployment elsewhere actually uses the grant is that ModelDeployment's
-- health, not the grant's.
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
local accepted = condition(status, "Accepted")
if accepted == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to reconcile the ModelGrant"
  return hs
end
if generation ~= nil and (status.observedGeneration ~= generation or accepted.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the mlkube operator to observe generation " .. tostring(generation)
  return hs
end
if accepted.status == "True" then
  hs.status = "Healthy"
elseif accepted.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(accepted)
return hs
