// The admission algorithm of admission.ts as Redis Lua: every check, then every update, atomically.
// Keep the two in step; the same tests run on both. One script call carries every admission and
// settlement an instance issues in one turn of its event loop (see redis-script-batch.ts), run in
// the order they were issued, as if each had been a call of its own.
import type { AdmissionFailure, AdmissionRequest, AdmissionResult, Settlement } from './admission.js';
import { preconditionFailed, quotaBucket } from './admission.js';

/**
 * KEYS: rate keys, then quota bucket keys, then the concurrency key (if any), then precondition keys.
 * ARGV: now, rate count, quota count, has concurrency (0/1), precondition count; per rate: limit,
 * window; per quota: limit, reserve, ttl; concurrency: limit, lease id, lease ttl; per precondition
 * key: '-' (must be absent) or '=' followed by the exact value.
 * Returns {allowed, failed kind (0 none, 1 rate, 2 quota, 3 concurrency, 4 precondition), failed
 * index, retry after, then per rate: remaining, reset; per quota: used}.
 */
const admitOne = `
local function admit_one(KEYS, ARGV)
  local now = tonumber(ARGV[1])
  local rate_count = tonumber(ARGV[2])
  local quota_count = tonumber(ARGV[3])
  local has_concurrency = tonumber(ARGV[4])
  local precondition_count = tonumber(ARGV[5])
  if precondition_count > 0 then
    local first_key = rate_count + quota_count + has_concurrency
    local first_value = #ARGV - precondition_count
    for i = 1, precondition_count do
      local current = redis.call('GET', KEYS[first_key + i])
      local expected = ARGV[first_value + i]
      if expected == '-' then
        if current then return {0, 4, 0, 0} end
      elseif current ~= string.sub(expected, 2) then
        return {0, 4, 0, 0}
      end
    end
  end
  local a = 6
  local new_tats = {}
  local out = {1, 0, 0, 0}
  for i = 1, rate_count do
    local limit = tonumber(ARGV[a]); local window = tonumber(ARGV[a + 1]); a = a + 2
    local interval = window / limit
    local tat = now
    local stored = redis.call('GET', KEYS[i])
    if stored then
      local stored_tat, stored_interval = string.match(stored, '^(%S+) (%S+)$')
      stored_tat = tonumber(stored_tat); stored_interval = tonumber(stored_interval)
      if stored_tat and stored_interval then
        -- A limit changed since: rescale to the new rate (see currentTat in admission.ts).
        if stored_interval ~= interval and stored_tat > now then stored_tat = now + (stored_tat - now) * interval / stored_interval end
        if stored_tat > now then tat = stored_tat end
      end
    end
    local new_tat = tat + interval
    local allow_at = new_tat - window
    if allow_at > now then return {0, 1, i - 1, math.ceil(allow_at - now)} end
    new_tats[i] = new_tat
    table.insert(out, math.max(0, math.floor((now + window - new_tat) / interval)))
    table.insert(out, math.ceil(new_tat - now))
  end
  local quota_args = a
  for i = 1, quota_count do
    local limit = tonumber(ARGV[a]); a = a + 3
    local used = tonumber(redis.call('GET', KEYS[rate_count + i]) or '0')
    if used >= limit then return {0, 2, i - 1, tonumber(ARGV[a - 1])} end
  end
  local concurrency_key = KEYS[rate_count + quota_count + 1]
  if has_concurrency == 1 then
    local limit = tonumber(ARGV[a])
    redis.call('ZREMRANGEBYSCORE', concurrency_key, '-inf', now)
    if redis.call('ZCARD', concurrency_key) >= limit then
      local soonest = redis.call('ZRANGE', concurrency_key, 0, 0, 'WITHSCORES')
      return {0, 3, 0, math.max(1000, tonumber(soonest[2]) - now)}
    end
  end
  for i = 1, rate_count do
    local limit = tonumber(ARGV[6 + (i - 1) * 2]); local window = tonumber(ARGV[6 + (i - 1) * 2 + 1])
    -- %.17g keeps every bit of the double, so the script and its JS twin agree to the last digit.
    redis.call('SET', KEYS[i], string.format('%.17g %.17g', new_tats[i], window / limit), 'PX', math.ceil(window))
  end
  a = quota_args
  for i = 1, quota_count do
    local reserve = tonumber(ARGV[a + 1]); local ttl = tonumber(ARGV[a + 2]); a = a + 3
    local used = redis.call('INCRBY', KEYS[rate_count + i], reserve)
    redis.call('PEXPIRE', KEYS[rate_count + i], ttl)
    table.insert(out, used)
  end
  if has_concurrency == 1 then
    local lease_id = ARGV[a + 1]; local lease_ttl = tonumber(ARGV[a + 2])
    redis.call('ZADD', concurrency_key, now + lease_ttl, lease_id)
    redis.call('PEXPIRE', concurrency_key, lease_ttl)
  end
  return out
end
`;

/**
 * KEYS: quota buckets, then the concurrency key; ARGV: quota count, deltas…, lease id or '', then
 * '1' when it applies only while that lease is held (the admission it settles ran and granted).
 */
const settleOne = `
local function settle_one(KEYS, ARGV)
  local count = tonumber(ARGV[1])
  local lease = ARGV[count + 2]
  if ARGV[count + 3] == '1' and (lease == '' or not redis.call('ZSCORE', KEYS[count + 1], lease)) then return 0 end
  for i = 1, count do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      if redis.call('INCRBY', KEYS[i], ARGV[1 + i]) < 0 then redis.call('SET', KEYS[i], '0', 'KEEPTTL') end
    end
  end
  if lease ~= '' then redis.call('ZREM', KEYS[count + 1], lease) end
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
  local keys = {}
  for i = 1, key_count do keys[i] = KEYS[key_cursor + i] end
  key_cursor = key_cursor + key_count
  local arguments = {}
  for i = 1, argument_count do arguments[i] = ARGV[argument_cursor + i - 1] end
  argument_cursor = argument_cursor + argument_count
  local ok, reply
  if kind == 'admit' then ok, reply = pcall(admit_one, keys, arguments) else ok, reply = pcall(settle_one, keys, arguments) end
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
  if (keys.length === 0) return null;
  // INCRBY takes integers only: a delta that is not one would fail this settlement in Redis.
  return {
    keys,
    args: [settlement.quotas.length, ...settlement.quotas.map((quota) => Math.round(quota.delta)), settlement.release?.leaseId ?? '', settlement.onlyIfLeased === true ? '1' : ''],
  };
}

/** Reads the script's answer back into an AdmissionResult. */
export function parseAdmissionReply(request: AdmissionRequest, reply: unknown): AdmissionResult {
  const values = (Array.isArray(reply) ? reply : []).map(Number);
  if (values[0] !== 1 && values[1] === 4) return preconditionFailed;
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
  const rates = request.rates.map(() => {
    const remaining = values[position] ?? 0;
    const resetMs = values[position + 1] ?? 0;
    position += 2;
    return { remaining, resetMs };
  });
  const quotas = request.quotas.map((quota) => {
    const used = values[position] ?? 0;
    position += 1;
    const { bucketKey, resetMs } = quotaBucket(quota, request.now);
    return { used, resetMs, bucketKey };
  });
  return { allowed: true, failure: null, rates, quotas };
}
