import { redisScript } from '../../redis/redis-script.js';

/** Every key and channel of the fleet's circuits starts with this; bump the version when the layout changes. */
export const CIRCUIT_KEY_PREFIX = 'assistant:circuit:v1:';

/** The hash holding one breaker's fleet circuit; the braces keep it and its channel in one Redis Cluster slot. */
export const circuitKey = (breaker: string): string => `${CIRCUIT_KEY_PREFIX}{${breaker}}`;
/** The channel each change of that circuit is published on. */
export const circuitChannel = (breaker: string): string => `${CIRCUIT_KEY_PREFIX}{${breaker}}:changes`;

/**
 * Shared by every script: KEYS[1] the circuit's hash, KEYS[2] its channel; ARGV[1] the clock (empty: Redis' own,
 * `TIME`; a number only from tests that drive time), ARGV[2] the calling replica's id. A script loads the hash,
 * decides, and when it changed anything saves it (version + 1), publishes it and returns it: one encoding,
 * `|`-separated, for the reply and the message alike (see FleetState in fleet-state.ts). The hash's `epoch` is set
 * when it is created: a hash that expired, was evicted or flushed starts a new epoch, whose versions and generations
 * replicas take as they come instead of ignoring them as older than theirs.
 */
const PRELUDE = `
local key, channel = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local by = ARGV[2]
local FIELDS = {'epoch', 'ver', 'gen', 'phase', 'fail', 'trials', 'openedAt', 'openUntil', 'lease', 'leaseUntil', 'by',
  'causeKind', 'causeStatus', 'causeAt'}
local TEXT = {epoch = true, phase = true, lease = true, by = true, causeKind = true}

local s = {epoch = '', ver = 0, gen = 0, phase = 'closed', fail = 0, trials = 0, openedAt = 0, openUntil = 0, lease = '',
  leaseUntil = 0, by = '', causeKind = '', causeStatus = 0, causeAt = 0}
-- The failure-rate window's fields (wgen, wms, wb0..9, wc0..9, wf0..9) are not part of the state replicas mirror.
local win = {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  -- A field that does not parse (written by hand) reads as its default rather than breaking every script.
  if TEXT[raw[i]] then s[raw[i]] = raw[i + 1]
  elseif s[raw[i]] ~= nil then s[raw[i]] = tonumber(raw[i + 1]) or 0
  elseif string.sub(raw[i], 1, 1) == 'w' then win[raw[i]] = tonumber(raw[i + 1]) end
end

local function encode(changed, granted)
  local leased = 0
  if s.lease ~= '' then leased = 1 end
  return table.concat({s.ver, s.gen, s.phase, s.fail, s.trials, s.openedAt, s.openUntil, leased, s.leaseUntil, s.by,
    s.causeKind, s.causeStatus, s.causeAt, now, changed, granted, s.epoch}, '|')
end

local function save()
  if s.epoch == '' then s.epoch = now .. '-' .. by end
  s.ver = s.ver + 1
  s.by = by
  local args = {}
  for _, field in ipairs(FIELDS) do
    args[#args + 1] = field
    args[#args + 1] = tostring(s[field])
  end
  redis.call('HSET', key, unpack(args))
  -- Forgotten a day after its last change: long past any open period, and a closed circuit is the default.
  redis.call('PEXPIRE', key, 86400000)
  redis.call('PUBLISH', channel, encode(0, 0))
end

-- Counts a call of the current generation that ended now in the failure-rate window: ten buckets of a tenth of
-- windowMs each, on Redis' clock (failure-rate-window.ts keeps the same ones in process). A window of an earlier
-- generation is empty: every state change starts counting anew. Within a generation the window keeps the size it
-- started with, so replicas mid-way through a rolling change of it count in one window; the new size takes over at
-- the next state change. Only the bucket counted in is written, unless the window starts anew. True when a failure
-- makes the window's rate open.
local function windowTrips(rate, windowMs, minCalls, failed)
  if rate <= 0 then return false end
  local current = win.wgen == s.gen and win.wms ~= nil
  if current then windowMs = win.wms end
  local bucket = math.floor(now / math.max(1, windowMs / 10))
  local w = {}
  for i = 0, 9 do
    if current then w[i] = {win['wb' .. i] or -1, win['wc' .. i] or 0, win['wf' .. i] or 0} else w[i] = {-1, 0, 0} end
  end
  local slot = bucket % 10
  if w[slot][1] ~= bucket then w[slot] = {bucket, 0, 0} end
  w[slot][2] = w[slot][2] + 1
  if failed then w[slot][3] = w[slot][3] + 1 end
  local args, calls, failures = {'wgen', s.gen, 'wms', windowMs}, 0, 0
  for i = 0, 9 do
    if i == slot or not current then
      args[#args + 1] = 'wb' .. i
      args[#args + 1] = w[i][1]
      args[#args + 1] = 'wc' .. i
      args[#args + 1] = w[i][2]
      args[#args + 1] = 'wf' .. i
      args[#args + 1] = w[i][3]
    end
    local age = bucket - w[i][1]
    if w[i][1] >= 0 and age >= 0 and age < 10 then
      calls = calls + w[i][2]
      failures = failures + w[i][3]
    end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, 86400000)
  return failed and calls >= minCalls and failures / calls >= rate
end

local function cause(kind, status)
  s.causeKind = kind
  s.causeStatus = tonumber(status) or 0
  s.causeAt = now
end

local function open(periodMs, holdMs, maxOpenMs)
  s.phase = 'open'
  s.gen = s.gen + 1
  s.openedAt = now
  s.openUntil = now + math.floor(math.min(maxOpenMs, math.max(periodMs, holdMs or 0)))
  s.lease = ''
  s.leaseUntil = 0
end
`;

/**
 * A call admitted while closed failed. ARGV: 3 the generation it started in, 4 the threshold, 5 the reset period
 * (ms), 6 the longest open period, 7 '1' when the failure hits every request alike, 8 the upstream's wait hint (ms,
 * or empty), 9-10 the cause's kind and status, 11-13 the failure-rate policy (rate, 0 = off; window ms; minimum
 * calls). An outcome from an earlier generation changes nothing; with no hash at all, it counts toward the new
 * circuit. (A disabled breaker tells the fleet nothing.)
 */
const FAILURE = `${PRELUDE}
-- No hash (it expired, was evicted or flushed): the call's generation was another epoch's, and the new circuit is closed.
if (s.epoch ~= '' and s.gen ~= tonumber(ARGV[3])) or s.phase ~= 'closed' then return encode(0, 0) end
s.fail = s.fail + 1
cause(ARGV[9], ARGV[10])
local hold = tonumber(ARGV[8])
local changed = 0
local rateTrips = windowTrips(tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), true)
if ARGV[7] == '1' or hold or s.fail >= tonumber(ARGV[4]) or rateTrips then
  open(tonumber(ARGV[5]), hold, tonumber(ARGV[6]))
  changed = 1
end
save()
return encode(changed, 0)`;

/**
 * A call admitted while closed succeeded: the failures in a row start again from 0, and with the failure-rate policy
 * on it is one call of the window. ARGV: 3 its generation, 4-5 the failure-rate policy (rate, 0 = off; window ms).
 * The common case without the policy, no failure to forget, reads one field and replies '' (nothing changed); a
 * success that only counts in the window replies '' too (the window is not mirrored).
 */
const SUCCESS = `if tonumber(ARGV[4]) <= 0 and (tonumber(redis.call('HGET', KEYS[1], 'fail')) or 0) == 0 then return '' end
${PRELUDE}
-- No hash yet (no failure so far) is generation 0: the window counts from the first call. A success from an earlier
-- generation changes nothing but, when there are failures to show, replies the state so a lagging mirror catches up.
if s.gen ~= tonumber(ARGV[3]) or s.phase ~= 'closed' then
  if s.fail > 0 then return encode(0, 0) end
  return ''
end
windowTrips(tonumber(ARGV[4]), tonumber(ARGV[5]), 0, false)
if s.fail == 0 then return '' end
s.fail = 0
save()
return encode(0, 0)`;

/**
 * Asks for the half-open trial. ARGV: 3 the lease's token, 4 how long it holds (ms). An open circuit whose period
 * has passed turns half-open; a half-open one grants the lease to the first asker, and again only once the lease
 * expired (its owner died or hangs), so exactly one trial runs at a time in the whole fleet.
 */
const ACQUIRE = `${PRELUDE}
local changed, granted = 0, 0
if s.phase == 'open' and now >= s.openUntil then
  s.phase = 'half_open'
  s.gen = s.gen + 1
  s.lease = ''
  s.leaseUntil = 0
  changed = 1
end
if s.phase == 'half_open' and (s.lease == '' or now >= s.leaseUntil) then
  s.lease = ARGV[3]
  s.leaseUntil = now + tonumber(ARGV[4])
  granted = 1
end
if changed == 1 or granted == 1 then save() end
return encode(changed, granted)`;

/**
 * The trial's outcome. ARGV: 3 the generation, 4 the lease's token, 5 the outcome (success, rejected, abandoned or
 * failure), 6 the reset period, 7 the longest open period, 8 the backoff, 9 a random number in [0, 1) for the
 * jitter, 10 the wait hint (ms, or empty), 11-12 the cause. Success (or a rejected request: the upstream answered)
 * closes; failure re-opens for the backed-off period; abandoned frees the lease. The lease's holder decides. Also
 * heard: a trial whose lease ran out and went to another replica (a long stream) that ended with the upstream
 * answering, which closes it; and a lease whose grant never reached its asker (the reply missed its deadline),
 * released by its token alone (generation -1).
 */
const TRIAL = `${PRELUDE}
local outcome = ARGV[5]
local holder = s.lease == ARGV[4]
local current = s.gen == tonumber(ARGV[3])
local answered = outcome == 'success' or outcome == 'rejected'
if s.phase ~= 'half_open' or not ((holder and (current or outcome == 'abandoned')) or (answered and current)) then
  return encode(0, 0)
end
local changed = 1
if outcome == 'abandoned' then
  s.lease = ''
  s.leaseUntil = 0
  changed = 0
elseif outcome == 'failure' then
  s.fail = s.fail + 1
  s.trials = s.trials + 1
  cause(ARGV[11], ARGV[12])
  local reset, maxOpen, backoff, random = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  local period = reset
  if backoff > 1 then
    local grown = reset * backoff ^ s.trials
    if grown >= maxOpen then
      period = maxOpen * (1 - 0.1 * random)
    else
      period = math.min(maxOpen, grown * (0.9 + 0.2 * random))
    end
  end
  open(period, tonumber(ARGV[10]), maxOpen)
else
  s.phase = 'closed'
  s.gen = s.gen + 1
  s.fail = 0
  s.trials = 0
  s.openedAt = 0
  s.openUntil = 0
  s.lease = ''
  s.leaseUntil = 0
end
save()
return encode(changed, 0)`;

/**
 * The trial's holder keeps its lease while the call runs (a long stream): ARGV 3 the generation, 4 the lease's token,
 * 5 how long it holds from now (ms). Only the holder's lease, in its generation, while half-open and before it ran
 * out; otherwise nothing changes (the trial ended, or its lease ran out, perhaps to another replica) and the reply
 * says not granted.
 */
const RENEW = `${PRELUDE}
if s.phase ~= 'half_open' or s.lease ~= ARGV[4] or s.gen ~= tonumber(ARGV[3]) or now >= s.leaseUntil then
  return encode(0, 0)
end
s.leaseUntil = now + tonumber(ARGV[5])
save()
return encode(0, 1)`;

/**
 * A replica joins (at start, or when Redis is back). ARGV: 3 what its own circuit says: '0' nothing, '1' it opened on
 * its own (the model failed while Redis was away), '2' it is open as it last saw the fleet's; 4 how long it has still
 * to stay open (ms), 5 the longest open period, 6 the epoch it last saw. A closed fleet circuit is opened by a
 * replica that saw the model fail meanwhile (the fleet's state predates the outage), or by one that saw it open when
 * the fleet's state has been lost since (a new epoch: Redis restarted empty, the hash expired or was evicted); one
 * the fleet closed meanwhile (same epoch) stands. Either way the reply is the state to follow.
 */
const JOIN = `${PRELUDE}
local lost = ARGV[3] == '2' and s.epoch ~= ARGV[6]
if s.phase == 'closed' and (ARGV[3] == '1' or lost) then
  open(tonumber(ARGV[4]), 0, tonumber(ARGV[5]))
  save()
  return encode(1, 0)
end
return encode(0, 0)`;

export const CIRCUIT_SCRIPTS = {
  failure: redisScript('failure', FAILURE),
  success: redisScript('success', SUCCESS),
  acquire: redisScript('acquire', ACQUIRE),
  trial: redisScript('trial', TRIAL),
  renew: redisScript('renew', RENEW),
  join: redisScript('join', JOIN),
} as const;
