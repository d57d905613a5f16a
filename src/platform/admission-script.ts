// The admission algorithm of admission.ts as Redis Lua: every check, then every update, atomically.
// Keep the two in step; the same tests run on both. One script call carries every admission and
// settlement an instance issues in one turn of its event loop (see redis-script-batch.ts), run in
// the order they were issued, as if each had been a call of its own.
import type { AdmissionFailure, AdmissionRequest, AdmissionResult, Settlement } from './admission.js';
import { preconditionFailed, quotaBucket } from './admission.js';

/**
 * One admission. Each operation reads its slice of the call's KEYS and ARGV in place, from
 * key_base + 1 and arg_base + 1 on (copying them out cost Redis more than the rest of the work).
 * Its keys: rate keys, then quota bucket keys, then the concurrency key (if any), then precondition keys.
 * Its arguments: now, rate count, quota count, has concurrency (0/1), precondition count; per rate: limit,
 * window; per quota: limit, reserve, ttl; concurrency: limit, lease id, lease ttl; prepay (0 none,
 * 1 with this request, 2 alone) and the prepaid lease id; per precondition key: '-' (must be
 * absent) or '=' followed by the exact value.
 * Returns {allowed, failed kind (0 none, 1 rate, 2 quota, 3 concurrency, 4 precondition), failed
 * index, retry after, then unless prepaid alone, per rate: remaining, reset; per quota: used; then
 * when prepay was asked: 1 if granted, and if so the same standings after the prepaid charge}.
 * Alone, a prepaid charge not granted answers {0, 0, 0, 0}.
 */
const admitOne = `
local function admit_one(key_base, arg_base, arg_count)
  local now = tonumber(ARGV[arg_base + 1])
  local rate_count = tonumber(ARGV[arg_base + 2])
  local quota_count = tonumber(ARGV[arg_base + 3])
  local has_concurrency = tonumber(ARGV[arg_base + 4])
  local precondition_count = tonumber(ARGV[arg_base + 5])
  local prepay_at = 6 + rate_count * 2 + quota_count * 3 + has_concurrency * 3
  local prepay = tonumber(ARGV[arg_base + prepay_at])
  local prepaid_lease = ARGV[arg_base + prepay_at + 1]
  if precondition_count > 0 then
    local first_key = rate_count + quota_count + has_concurrency
    local first_value = arg_count - precondition_count
    for i = 1, precondition_count do
      local current = redis.call('GET', KEYS[key_base + first_key + i])
      local expected = ARGV[arg_base + first_value + i]
      if expected == '-' then
        if current then return {0, 4, 0, 0} end
      elseif current ~= string.sub(expected, 2) then
        return {0, 4, 0, 0}
      end
    end
  end
  -- A request of its own is charged unless only a prepaid one was asked for.
  local charged = prepay ~= 2
  local out = {1, 0, 0, 0}
  -- Each number is read from its argument once, and an argument Redis takes as it came is passed
  -- on as text: tonumber and formatting a number are most of what this script costs Redis.
  local rate_limits = {}
  local windows = {}
  local tats = {}
  local intervals = {}
  for i = 1, rate_count do
    local limit = tonumber(ARGV[arg_base + 4 + i * 2]); local window = tonumber(ARGV[arg_base + 5 + i * 2])
    rate_limits[i] = limit; windows[i] = window
    local interval = window / limit
    local tat = now
    local stored = redis.call('GET', KEYS[key_base + i])
    if stored then
      local stored_tat, stored_interval = string.match(stored, '^(%S+) (%S+)$')
      stored_tat = tonumber(stored_tat); stored_interval = tonumber(stored_interval)
      if stored_tat and stored_interval then
        -- A limit changed since: rescale to the new rate (see currentTat in admission.ts).
        if stored_interval ~= interval and stored_tat > now then stored_tat = now + (stored_tat - now) * interval / stored_interval end
        if stored_tat > now then tat = stored_tat end
      end
    end
    if charged then
      tat = tat + interval
      local allow_at = tat - window
      if allow_at > now then return {0, 1, i - 1, math.ceil(allow_at - now)} end
      table.insert(out, math.max(0, math.floor((now + window - tat) / interval)))
      table.insert(out, math.ceil(tat - now))
    end
    tats[i] = tat; intervals[i] = interval
  end
  local quota_args = 6 + rate_count * 2
  local quota_limits = {}
  local reserves = {}
  local used = {}
  for i = 1, quota_count do
    local limit = tonumber(ARGV[arg_base + quota_args + (i - 1) * 3])
    local value = tonumber(redis.call('GET', KEYS[key_base + rate_count + i]) or '0')
    if charged and value >= limit then return {0, 2, i - 1, tonumber(ARGV[arg_base + quota_args + (i - 1) * 3 + 2])} end
    quota_limits[i] = limit; reserves[i] = tonumber(ARGV[arg_base + quota_args + (i - 1) * 3 + 1])
    used[i] = value
  end
  local concurrency_key = KEYS[key_base + rate_count + quota_count + 1]
  local concurrency_args = quota_args + quota_count * 3
  local leases = 0
  local concurrency_limit = 0
  if has_concurrency == 1 then
    concurrency_limit = tonumber(ARGV[arg_base + concurrency_args])
    redis.call('ZREMRANGEBYSCORE', concurrency_key, '-inf', ARGV[arg_base + 1])
    leases = redis.call('ZCARD', concurrency_key)
    if charged and leases >= concurrency_limit then
      local soonest = redis.call('ZRANGE', concurrency_key, 0, 0, 'WITHSCORES')
      return {0, 3, 0, math.max(1000, tonumber(soonest[2]) - now)}
    end
    if charged then leases = leases + 1 end
  end
  -- The prepaid charge: only while a tenth of every rate and quota is left after it, and at most
  -- half the concurrency cap is in use with it (prepaidMargin and prepaidConcurrencyRoom).
  local granted = false
  if prepay ~= 0 and has_concurrency == 1 then
    granted = leases + 1 <= math.floor(concurrency_limit / 2)
    for i = 1, rate_count do
      if math.floor((now + windows[i] - (tats[i] + intervals[i])) / intervals[i]) < math.ceil(rate_limits[i] / 10) then granted = false end
    end
    for i = 1, quota_count do
      local after = used[i] + (charged and reserves[i] or 0) + reserves[i]
      if after + math.ceil(quota_limits[i] / 10) > quota_limits[i] then granted = false end
    end
  end
  if not charged and not granted then return {0, 0, 0, 0} end
  local charges = (charged and 1 or 0) + (granted and 1 or 0)
  for i = 1, rate_count do
    local window = windows[i]
    if granted then tats[i] = tats[i] + intervals[i] end
    -- %.17g keeps every bit of the double, so the script and its JS twin agree to the last digit.
    -- A whole window (as the gateway sends it) is its own argument's text.
    redis.call('SET', KEYS[key_base + i], string.format('%.17g %.17g', tats[i], intervals[i]), 'PX', window == math.floor(window) and ARGV[arg_base + 5 + i * 2] or math.ceil(window))
  end
  for i = 1, quota_count do
    local reserve = reserves[i]
    used[i] = redis.call('INCRBY', KEYS[key_base + rate_count + i], reserve * charges)
    redis.call('PEXPIRE', KEYS[key_base + rate_count + i], ARGV[arg_base + quota_args + (i - 1) * 3 + 2])
    if charged then table.insert(out, used[i] - (granted and reserve or 0)) end
  end
  if has_concurrency == 1 then
    local lease_ttl = ARGV[arg_base + concurrency_args + 2]
    local expires_at = now + tonumber(lease_ttl)
    if charged then redis.call('ZADD', concurrency_key, expires_at, ARGV[arg_base + concurrency_args + 1]) end
    if granted then redis.call('ZADD', concurrency_key, expires_at, prepaid_lease) end
    redis.call('PEXPIRE', concurrency_key, lease_ttl)
  end
  if prepay == 0 then return out end
  if not granted then
    table.insert(out, 0)
    return out
  end
  table.insert(out, 1)
  for i = 1, rate_count do
    table.insert(out, math.max(0, math.floor((now + windows[i] - tats[i]) / intervals[i])))
    table.insert(out, math.ceil(tats[i] - now))
  end
  for i = 1, quota_count do table.insert(out, used[i]) end
  return out
end
`;

/**
 * One settlement, reading its slice of KEYS and ARGV in place as admit_one does.
 * Its keys: quota buckets, then the concurrency key (when a lease is named), then rate keys to rewind;
 * its arguments: quota count, deltas…, lease id or '', then '1' when it applies only while that lease is
 * held (the admission it settles ran and granted), then the count of rate keys to step back (a
 * prepaid admission given back), the time now, and per key the charge's end and its interval.
 */
const settleOne = `
local function settle_one(key_base, arg_base, arg_count)
  local count = tonumber(ARGV[arg_base + 1])
  local lease = ARGV[arg_base + count + 2]
  if ARGV[arg_base + count + 3] == '1' and (lease == '' or not redis.call('ZSCORE', KEYS[key_base + count + 1], lease)) then return 0 end
  for i = 1, count do
    if redis.call('EXISTS', KEYS[key_base + i]) == 1 then
      if redis.call('INCRBY', KEYS[key_base + i], ARGV[arg_base + 1 + i]) < 0 then redis.call('SET', KEYS[key_base + i], '0', 'KEEPTTL') end
    end
  end
  if lease ~= '' then redis.call('ZREM', KEYS[key_base + count + 1], lease) end
  local first_rewind = count + (lease ~= '' and 1 or 0)
  -- Past its own arguments are the next operation's: one without the rewind count and time (the
  -- gateway always sends them) rewinds nothing rather than read another's.
  local rewinds = arg_count >= count + 5 and tonumber(ARGV[arg_base + count + 4]) or 0
  local now = arg_count >= count + 5 and tonumber(ARGV[arg_base + count + 5]) or 0
  for i = 1, rewinds do
    local grant_tat = tonumber(ARGV[arg_base + count + 4 + i * 2]); local grant_interval = tonumber(ARGV[arg_base + count + 5 + i * 2])
    local stored = redis.call('GET', KEYS[key_base + first_rewind + i])
    if stored and grant_tat > now then
      local tat, interval = string.match(stored, '^(%S+) (%S+)$')
      tat = tonumber(tat); interval = tonumber(interval)
      -- Only the part of the prepaid charge not yet worn off, and only under the limit it was charged at.
      if tat and interval and interval == grant_interval then
        redis.call('SET', KEYS[key_base + first_rewind + i], string.format('%.17g %.17g', math.max(now, tat - math.min(interval, grant_tat - now)), interval), 'KEEPTTL')
      end
    end
  end
  return 1
end
`;

/**
 * ARGV: operation count, then per operation: 'admit' or 'settle', its key count, its argument
 * count, its arguments; KEYS: every operation's keys in turn. Returns one reply per operation; an
 * operation that raises an error (a key of the wrong type) answers {'error', message} and the
 * others run on — Redis does not undo a failed script, so failing them all would leave what ran.
 */
export const operationsScript = `${admitOne}${settleOne}
local replies = {}
local key_cursor = 0
local argument_cursor = 2
for operation = 1, tonumber(ARGV[1]) do
  local kind = ARGV[argument_cursor]
  local key_count = tonumber(ARGV[argument_cursor + 1])
  local argument_count = tonumber(ARGV[argument_cursor + 2])
  argument_cursor = argument_cursor + 3
  local key_base = key_cursor
  local arg_base = argument_cursor - 1
  key_cursor = key_cursor + key_count
  argument_cursor = argument_cursor + argument_count
  local ok, reply
  if kind == 'admit' then ok, reply = pcall(admit_one, key_base, arg_base, argument_count) else ok, reply = pcall(settle_one, key_base, arg_base, argument_count) end
  if ok then
    replies[operation] = reply
  else
    replies[operation] = {'error', type(reply) == 'table' and tostring(reply.err) or tostring(reply)}
  end
end
return replies
`;

/** Lays out keys and arguments for an admission. */
export function admissionScriptArguments(request: AdmissionRequest, prefix: string): { keys: string[]; args: Array<string | number> } {
  const keys: string[] = [];
  const preconditionKeys = request.precondition?.keys ?? [];
  const args: Array<string | number> = [request.now, request.rates.length, request.quotas.length, request.concurrency === null ? 0 : 1, preconditionKeys.length];
  for (const rate of request.rates) {
    keys.push(prefix + rate.key);
    args.push(rate.limit, rate.windowMs);
  }
  for (const quota of request.quotas) {
    const { bucketKey, resetMs } = quotaBucket(quota, request.now);
    keys.push(prefix + bucketKey);
    // The third value doubles as the retry-after of a spent quota and the counter's time to live.
    args.push(quota.limit, quota.reserve, resetMs + 60_000);
  }
  if (request.concurrency !== null) {
    keys.push(prefix + request.concurrency.key);
    args.push(request.concurrency.limit, request.concurrency.leaseId, request.concurrency.leaseTtlMs);
  }
  const prepay = request.prepay ?? null;
  args.push(prepay === null ? 0 : prepay.alone ? 2 : 1, prepay?.leaseId ?? '');
  for (const [index, key] of preconditionKeys.entries()) {
    const expected = request.precondition?.values[index] ?? null;
    keys.push(prefix + key);
    args.push(expected === null ? '-' : `=${expected}`);
  }
  return { keys, args };
}

/** Lays out keys and arguments for a settlement; null when it has nothing to do. */
export function settlementScriptArguments(settlement: Settlement, prefix: string): { keys: string[]; args: Array<string | number> } | null {
  const keys = settlement.quotas.map((quota) => prefix + quota.bucketKey);
  if (settlement.release !== null) keys.push(prefix + settlement.release.key);
  const rewind = settlement.rewind?.rates ?? [];
  for (const rate of rewind) keys.push(prefix + rate.key);
  if (keys.length === 0) return null;
  // INCRBY takes integers only: a delta that is not one would fail this settlement in Redis.
  return {
    keys,
    args: [
      settlement.quotas.length,
      ...settlement.quotas.map((quota) => Math.round(quota.delta)),
      settlement.release?.leaseId ?? '',
      settlement.onlyIfLeased === true ? '1' : '',
      rewind.length,
      settlement.rewind?.now ?? 0,
      ...rewind.flatMap((rate) => [rate.grantTat, rate.interval]),
    ],
  };
}

/** Reads the script's answer back into an AdmissionResult. */
export function parseAdmissionReply(request: AdmissionRequest, reply: unknown): AdmissionResult {
  const values = (Array.isArray(reply) ? reply : []).map(Number);
  const prepay = request.prepay ?? null;
  if (values[0] !== 1 && values[1] === 4) return preconditionFailed;
  if (values[0] !== 1 && prepay?.alone === true) return { allowed: false, failure: null, rates: [], quotas: [], prepaid: null };
  if (values[0] !== 1) {
    const index = values[2] ?? 0;
    const retryAfterMs = values[3] ?? 1000;
    let failure: AdmissionFailure;
    if (values[1] === 1) failure = { kind: 'rate', index, retryAfterMs };
    else if (values[1] === 2) {
      const quota = request.quotas[index];
      failure = { kind: 'quota', index, retryAfterMs: quota === undefined ? retryAfterMs : quotaBucket(quota, request.now).resetMs };
    } else failure = { kind: 'concurrency', index: 0, retryAfterMs };
    return { allowed: false, failure, rates: [], quotas: [] };
  }
  let position = 4;
  const readStanding = () => ({
    rates: request.rates.map(() => {
      const remaining = values[position] ?? 0;
      const resetMs = values[position + 1] ?? 0;
      position += 2;
      return { remaining, resetMs };
    }),
    quotas: request.quotas.map((quota) => {
      const used = values[position] ?? 0;
      position += 1;
      return { used, ...quotaBucket(quota, request.now) };
    }),
  });
  const own = prepay?.alone === true ? { rates: [], quotas: [] } : readStanding();
  if (prepay === null) return { allowed: true, failure: null, ...own };
  const granted = values[position] === 1;
  position += 1;
  return { allowed: true, failure: null, ...own, prepaid: granted ? readStanding() : null };
}
