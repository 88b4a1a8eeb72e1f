import { redisScript } from '../../redis/redis-script.js';
import {
  type AcquireArguments,
  circuitScript,
  type FailureArguments,
  type JoinArguments,
  type RenewArguments,
  type SuccessArguments,
  type TrialArguments,
} from './circuit-codec.js';

/** Every key and channel of the fleet's circuits starts with this; bump the version when the hash's layout changes. */
export const CIRCUIT_KEY_PREFIX = 'assistant:circuit:v1:';

/** The hash holding one breaker's fleet circuit; the braces keep it and its channel in one Redis Cluster slot. */
export const circuitKey = (breaker: string): string => `${CIRCUIT_KEY_PREFIX}{${breaker}}`;
/**
 * The version of the channel's messages (JSON, FleetState in circuit-codec.ts; the unversioned channel had them
 * `|`-separated). Bumped when their encoding changes: replicas of two versions sharing a Redis during a rolling
 * upgrade then do not hear each other's changes, instead of logging each as malformed; they still share the hash, and
 * each learns the other's changes from its own scripts' replies.
 */
const CHANNEL_VERSION = 2;

/** The channel each change of that circuit is published on. */
export const circuitChannel = (breaker: string): string => `${CIRCUIT_KEY_PREFIX}{${breaker}}:changes:v${CHANNEL_VERSION}`;

/**
 * Every script's arguments: one JSON object (ScriptCaller and the script's own, circuit-codec.ts). Numbers are read
 * with tonumber(), which also takes the strings a non-finite one is sent as.
 */
const ARGUMENTS = `local args = cjson.decode(ARGV[1])
`;

/**
 * Shared by every script: KEYS[1] the circuit's hash, KEYS[2] its channel; `now` the caller's clock (absent: Redis'
 * own, `TIME`). A script loads the hash, decides, and when it changed anything saves it (version + 1), publishes it
 * and returns it: one encoding, JSON, for the reply and the message alike (FleetState in circuit-codec.ts). The
 * hash's `epoch` is set when it is created: a hash that expired, was evicted or flushed starts a new epoch, whose
 * versions and generations replicas take as they come instead of ignoring them as older than theirs.
 */
const PRELUDE = `
local key, channel = KEYS[1], KEYS[2]
local now = tonumber(args.now)
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local by = args.by
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
  local cause = nil
  if s.causeKind ~= '' then
    cause = {kind = s.causeKind, at = s.causeAt}
    if s.causeStatus > 0 then cause.status = s.causeStatus end
  end
  return cjson.encode({epoch = s.epoch, version = s.ver, generation = s.gen, phase = s.phase, failures = s.fail,
    failedTrials = s.trials, openedAt = s.openedAt, openUntil = s.openUntil, leased = s.lease ~= '',
    leaseUntil = s.leaseUntil, by = s.by, cause = cause, now = now, changed = changed, granted = granted})
end

-- Saves the state (version + 1) and publishes it; returns the caller's reply: the message itself, unless the caller
-- is told more (it changed the state or was granted the lease), so the common case encodes once.
local function save(changed, granted)
  if s.epoch == '' then s.epoch = now .. '-' .. by end
  s.ver = s.ver + 1
  s.by = by
  local values = {}
  for _, field in ipairs(FIELDS) do
    values[#values + 1] = field
    values[#values + 1] = tostring(s[field])
  end
  redis.call('HSET', key, unpack(values))
  -- Forgotten a day after its last change: long past any open period, and a closed circuit is the default.
  redis.call('PEXPIRE', key, 86400000)
  local message = encode(false, false)
  redis.call('PUBLISH', channel, message)
  if changed or granted then return encode(changed, granted) end
  return message
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
  local values, calls, failures = {'wgen', s.gen, 'wms', windowMs}, 0, 0
  for i = 0, 9 do
    if i == slot or not current then
      values[#values + 1] = 'wb' .. i
      values[#values + 1] = w[i][1]
      values[#values + 1] = 'wc' .. i
      values[#values + 1] = w[i][2]
      values[#values + 1] = 'wf' .. i
      values[#values + 1] = w[i][3]
    end
    local age = bucket - w[i][1]
    if w[i][1] >= 0 and age >= 0 and age < 10 then
      calls = calls + w[i][2]
      failures = failures + w[i][3]
    end
  end
  redis.call('HSET', key, unpack(values))
  redis.call('PEXPIRE', key, 86400000)
  return failed and calls >= minCalls and failures / calls >= rate
end

local function cause(c)
  s.causeKind = c.kind
  s.causeStatus = tonumber(c.status) or 0
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
 * A call admitted while closed failed (FailureArguments). An outcome from an earlier generation changes nothing;
 * with no hash at all, it counts toward the new circuit. (A disabled breaker tells the fleet nothing.)
 */
const FAILURE = `${ARGUMENTS}${PRELUDE}
-- No hash (it expired, was evicted or flushed): the call's generation was another epoch's, and the new circuit is closed.
if (s.epoch ~= '' and s.gen ~= tonumber(args.generation)) or s.phase ~= 'closed' then return encode(false, false) end
s.fail = s.fail + 1
cause(args.cause)
local hold = tonumber(args.holdOpenMs)
local changed = false
local rateTrips = windowTrips(tonumber(args.failureRate), tonumber(args.windowMs), tonumber(args.minCalls), true)
if args.opensAtOnce or hold or s.fail >= tonumber(args.failureThreshold) or rateTrips then
  open(tonumber(args.resetTimeoutMs), hold, tonumber(args.maxOpenMs))
  changed = true
end
return save(changed, false)`;

/**
 * A call admitted while closed succeeded (SuccessArguments): the failures in a row start again from 0, and with the
 * failure-rate policy on it is one call of the window. The common case without the policy, no failure to forget,
 * reads one field and replies '' (nothing changed); a success that only counts in the window replies '' too (the
 * window is not mirrored).
 */
const SUCCESS = `${ARGUMENTS}
if tonumber(args.failureRate) <= 0 and (tonumber(redis.call('HGET', KEYS[1], 'fail')) or 0) == 0 then return '' end
${PRELUDE}
-- No hash yet (no failure so far) is generation 0: the window counts from the first call. A success from an earlier
-- generation changes nothing but, when there are failures to show, replies the state so a lagging mirror catches up.
if s.gen ~= tonumber(args.generation) or s.phase ~= 'closed' then
  if s.fail > 0 then return encode(false, false) end
  return ''
end
windowTrips(tonumber(args.failureRate), tonumber(args.windowMs), 0, false)
if s.fail == 0 then return '' end
s.fail = 0
return save(false, false)`;

/**
 * Asks for the half-open trial (AcquireArguments). An open circuit whose period has passed turns half-open; a
 * half-open one grants the lease to the first asker, and again only once the lease expired (its owner died or
 * hangs), so exactly one trial runs at a time in the whole fleet.
 */
const ACQUIRE = `${ARGUMENTS}${PRELUDE}
local changed, granted = false, false
if s.phase == 'open' and now >= s.openUntil then
  s.phase = 'half_open'
  s.gen = s.gen + 1
  s.lease = ''
  s.leaseUntil = 0
  changed = true
end
if s.phase == 'half_open' and (s.lease == '' or now >= s.leaseUntil) then
  s.lease = args.token
  s.leaseUntil = now + tonumber(args.leaseMs)
  granted = true
end
if changed or granted then return save(changed, granted) end
return encode(false, false)`;

/**
 * The trial's outcome (TrialArguments). Success (or a rejected request: the upstream answered) closes; failure
 * re-opens for the backed-off period; abandoned frees the lease. The lease's holder decides. Also heard: a trial
 * whose lease ran out and went to another replica (a long stream) that ended with the upstream answering, which
 * closes it; and a lease whose grant never reached its asker (the reply missed its deadline), released by its token
 * alone (generation -1).
 */
const TRIAL = `${ARGUMENTS}${PRELUDE}
local outcome = args.outcome
local holder = s.lease == args.token
local current = s.gen == tonumber(args.generation)
local answered = outcome == 'success' or outcome == 'rejected'
if s.phase ~= 'half_open' or not ((holder and (current or outcome == 'abandoned')) or (answered and current)) then
  return encode(false, false)
end
local changed = true
if outcome == 'abandoned' then
  s.lease = ''
  s.leaseUntil = 0
  changed = false
elseif outcome == 'failure' then
  s.fail = s.fail + 1
  s.trials = s.trials + 1
  cause(args.cause)
  local reset, maxOpen = tonumber(args.resetTimeoutMs), tonumber(args.maxOpenMs)
  local backoff, random = tonumber(args.resetBackoff), tonumber(args.random)
  local period = reset
  if backoff > 1 then
    local grown = reset * backoff ^ s.trials
    if grown >= maxOpen then
      period = maxOpen * (1 - 0.1 * random)
    else
      period = math.min(maxOpen, grown * (0.9 + 0.2 * random))
    end
  end
  open(period, tonumber(args.holdOpenMs), maxOpen)
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
return save(changed, false)`;

/**
 * The trial's holder keeps its lease while the call runs (RenewArguments). Only the holder's lease, in its
 * generation, while half-open and before it ran out; otherwise nothing changes (the trial ended, or its lease ran
 * out, perhaps to another replica) and the reply says not granted.
 */
const RENEW = `${ARGUMENTS}${PRELUDE}
if s.phase ~= 'half_open' or s.lease ~= args.token or s.gen ~= tonumber(args.generation) or now >= s.leaseUntil then
  return encode(false, false)
end
s.leaseUntil = now + tonumber(args.leaseMs)
return save(false, true)`;

/**
 * A replica joins (JoinArguments). A closed fleet circuit is opened by a replica that saw the model fail meanwhile
 * (the fleet's state predates the outage), or by one that saw it open when the fleet's state has been lost since (a
 * new epoch: Redis restarted empty, the hash expired or was evicted); one the fleet closed meanwhile (same epoch)
 * stands. Either way the reply is the state to follow.
 */
const JOIN = `${ARGUMENTS}${PRELUDE}
local lost = args.own == 'seeded' and s.epoch ~= args.epoch
if s.phase == 'closed' and (args.own == 'opened' or lost) then
  open(tonumber(args.openForMs), 0, tonumber(args.maxOpenMs))
  return save(true, false)
end
return encode(false, false)`;

export const CIRCUIT_SCRIPTS = {
  failure: circuitScript<FailureArguments>(redisScript('failure', FAILURE)),
  success: circuitScript<SuccessArguments>(redisScript('success', SUCCESS)),
  acquire: circuitScript<AcquireArguments>(redisScript('acquire', ACQUIRE)),
  trial: circuitScript<TrialArguments>(redisScript('trial', TRIAL)),
  renew: circuitScript<RenewArguments>(redisScript('renew', RENEW)),
  join: circuitScript<JoinArguments>(redisScript('join', JOIN)),
} as const;
