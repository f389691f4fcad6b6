package redisstore

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
)

// The Lua scripts. Each one is a single atomic step on one hash slot: every key it touches is
// passed in KEYS and carries the same hash tag, so it runs unchanged on Redis Cluster.
//
// Redis does not roll a script back when it fails half way (SECURITY-CASES case 82), so each
// script reads and type-checks every key it will write before its first write; after the first
// write nothing can fail any more.
//
// Times are integer milliseconds since the Unix epoch taken from the caller's clock (ARGV), never
// from Redis TIME: the store contract passes now in. Every record holds its own deadlines and
// validity is decided by them; the key TTLs only collect garbage (see retention.MinKeyTTL).
//
// Replies are arrays whose first element is a status word: OK, NOTFOUND, REUSED, REVOKED,
// MISMATCH or REPLAY. Broken state or arguments are error replies starting with LKCORRUPT,
// LKCONFLICT or LKBADARG.

// luaPrelude is prepended to every script.
const luaPrelude = `
local function want(key, typ)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= typ then
    error({err = 'LKCORRUPT key ' .. key .. ' holds a ' .. t .. ', not a ' .. typ})
  end
end
local function ms(n) return string.format('%.0f', n) end
local function pttl(deadline, now)
  local d = deadline - now
  if d < MIN_TTL_MS then d = MIN_TTL_MS end
  return ms(d)
end
local function famreply(key)
  local f = redis.call('HMGET', key, 'c', 's', 'sc', 'at', 'n', 'ru', 'ca', 'ex', 'g', 'rv', 'au')
  table.insert(f, 1, 'OK')
  return f
end
local function putat(key, exp, client, now)
  local e = tonumber(exp)
  if e > now then
    redis.call('SET', key, exp .. ' 0 ' .. client, 'PX', pttl(e, now))
  end
end
`

// Code hash fields: c client, s subject, sc scope, at auth time, n nonce, ru redirect URI,
// au audience, ch PKCE challenge, ex expiry, rd redeemed (0/1), rj JTI of the redeeming call, tb end of the
// tombstone.
//
// Family hash fields: c, s, sc, at, n, ru, au as in the code; ca created, ex absolute expiry,
// gc end of the record (ex + retention.AccessTokenGrace), g generation, rv revoked (0/1),
// cur live refresh-token hash, ci its idle deadline, prv the hash rotated just before it,
// pa when prv was rotated, pi prv's idle deadline. The used hash maps every used or replaced
// refresh-token hash to the generation at which it stopped being live.
//
// Access-token records are strings "<exp> <revoked 0/1> <client id>".

// scriptCreateCode: KEYS code, fam; ARGV now, c, s, sc, at, n, ru, ch, ex, au. The same live code
// again (same client and challenge) is a retry of this call and changes nothing.
var scriptCreateCode = newScript(`
want(KEYS[1], 'hash')
want(KEYS[2], 'hash')
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'ex', 'rd', 'tb', 'c', 'ch')
if f[1] then
  if f[2] ~= '1' and tonumber(f[1]) > now and f[4] == ARGV[2] and f[5] == ARGV[8] then
    return {'OK'}
  end
  if (f[2] == '1' and tonumber(f[3]) > now) or (f[2] ~= '1' and tonumber(f[1]) > now) then
    return redis.error_reply('LKCONFLICT authorization code already exists')
  end
end
local gc = redis.call('HGET', KEYS[2], 'gc')
if gc and tonumber(gc) > now then
  return redis.error_reply('LKCONFLICT family already exists')
end
redis.call('DEL', KEYS[1])
local ex = tonumber(ARGV[9])
if ex <= now then return {'OK'} end
redis.call('HSET', KEYS[1], 'c', ARGV[2], 's', ARGV[3], 'sc', ARGV[4], 'at', ARGV[5], 'n', ARGV[6],
  'ru', ARGV[7], 'ch', ARGV[8], 'ex', ARGV[9], 'rd', '0', 'rj', '', 'tb', '0', 'au', ARGV[10])
redis.call('PEXPIRE', KEYS[1], pttl(ex, now))
return {'OK'}
`)

// scriptRedeemCode: KEYS code, fam, used, at; ARGV now, refresh hash, family expiry,
// idle ms, jti, at client, at expiry, tombstone ms, grace ms.
var scriptRedeemCode = newScript(`
want(KEYS[1], 'hash')
want(KEYS[2], 'hash')
want(KEYS[3], 'hash')
want(KEYS[4], 'string')
local now = tonumber(ARGV[1])
local code = redis.call('HMGET', KEYS[1], 'c', 's', 'sc', 'at', 'n', 'ru', 'ex', 'rd', 'rj', 'tb', 'au')
if not code[1] then return {'NOTFOUND'} end
local gc = redis.call('HGET', KEYS[2], 'gc')
local famalive = gc and tonumber(gc) > now
if code[8] == '1' then
  if tonumber(code[10]) <= now then return {'NOTFOUND'} end
  if famalive then
    if ARGV[5] ~= '' and code[9] == ARGV[5] and redis.call('HGET', KEYS[2], 'rv') == '0' then
      return famreply(KEYS[2])
    end
    redis.call('HSET', KEYS[2], 'rv', '1')
  end
  return {'REUSED'}
end
if tonumber(code[7]) <= now then return {'NOTFOUND'} end
if famalive then return redis.error_reply('LKCONFLICT family already exists') end
local fex = tonumber(ARGV[3])
local fgc = fex + tonumber(ARGV[9])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'c', code[1], 's', code[2], 'sc', code[3], 'at', code[4], 'n', code[5],
  'ru', code[6], 'au', code[11] or '', 'ca', ARGV[1], 'ex', ARGV[3], 'gc', ms(fgc), 'g', '1', 'rv', '0',
  'cur', ARGV[2], 'ci', ms(now + tonumber(ARGV[4])), 'prv', '', 'pa', '0', 'pi', '0')
redis.call('PEXPIRE', KEYS[2], pttl(fgc, now))
if ARGV[5] ~= '' then putat(KEYS[4], ARGV[7], ARGV[6], now) end
local tomb = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'rd', '1', 'rj', ARGV[5], 'tb', ms(now + tomb))
redis.call('PEXPIRE', KEYS[1], pttl(now + tomb, now))
return famreply(KEYS[2])
`)

// scriptRotate: KEYS fam, used, at; ARGV now, presented, new, client, idle ms, reuse ms, jti,
// at client, at expiry, max generations (0: no cap).
//
// Decision D1: the presented hash is the live one (rotate), the one rotated just before it
// within the reuse interval (replace the live one, so the family never forks), or anything else
// the family knows (reuse: revoke the family). A hash the family never held revokes nothing.
var scriptRotate = newScript(`
want(KEYS[1], 'hash')
want(KEYS[2], 'hash')
want(KEYS[3], 'string')
local now = tonumber(ARGV[1])
local p = ARGV[2]
local nh = ARGV[3]
local f = redis.call('HMGET', KEYS[1], 'c', 'cur', 'ci', 'prv', 'pa', 'pi', 'rv', 'ex', 'gc', 'g')
if not f[1] or tonumber(f[9]) <= now or p == '' then return {'NOTFOUND'} end
local kind
if p == f[2] then kind = 'cur'
elseif p == f[4] then kind = 'prev'
elseif redis.call('HEXISTS', KEYS[2], p) == 1 then kind = 'used'
else return {'NOTFOUND'} end
if f[1] ~= ARGV[4] then return {'MISMATCH'} end
if f[7] == '1' then return {'REVOKED'} end
if tonumber(f[8]) <= now then return {'NOTFOUND'} end
if kind == 'prev' and nh == f[2] then return famreply(KEYS[1]) end
local reuse = tonumber(ARGV[6])
if kind == 'cur' then
  if tonumber(f[3]) <= now then return {'NOTFOUND'} end
elseif kind == 'prev' and reuse > 0 and now < tonumber(f[5]) + reuse then
  if tonumber(f[6]) <= now then return {'NOTFOUND'} end
else
  redis.call('HSET', KEYS[1], 'rv', '1')
  return {'REUSED'}
end
local maxg = tonumber(ARGV[10])
if maxg > 0 and tonumber(f[10]) >= maxg then
  redis.call('HSET', KEYS[1], 'rv', '1')
  return {'REVOKED'}
end
if nh == '' or nh == f[2] or nh == f[4] or redis.call('HEXISTS', KEYS[2], nh) == 1 then
  return redis.error_reply('LKBADARG new refresh token hash is empty or already in the family')
end
local gen = tonumber(f[10])
local ci = ms(now + tonumber(ARGV[5]))
if kind == 'cur' then
  redis.call('HSET', KEYS[2], p, ms(gen))
  redis.call('HSET', KEYS[1], 'cur', nh, 'ci', ci, 'prv', p, 'pa', ARGV[1], 'pi', f[3], 'g', ms(gen + 1))
else
  redis.call('HSET', KEYS[2], f[2], ms(gen))
  redis.call('HSET', KEYS[1], 'cur', nh, 'ci', ci, 'g', ms(gen + 1))
end
redis.call('PEXPIRE', KEYS[2], pttl(tonumber(f[9]), now))
if ARGV[7] ~= '' then putat(KEYS[3], ARGV[9], ARGV[8], now) end
return famreply(KEYS[1])
`)

// scriptRevokeRefresh: KEYS fam, used; ARGV now, hash, client.
var scriptRevokeRefresh = newScript(`
want(KEYS[1], 'hash')
want(KEYS[2], 'hash')
local now = tonumber(ARGV[1])
local h = ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'c', 'cur', 'prv', 'gc')
if not f[1] or tonumber(f[4]) <= now or h == '' then return {'NOTFOUND'} end
if h ~= f[2] and h ~= f[3] and redis.call('HEXISTS', KEYS[2], h) == 0 then return {'NOTFOUND'} end
if f[1] ~= ARGV[3] then return {'MISMATCH'} end
redis.call('HSET', KEYS[1], 'rv', '1')
return {'OK'}
`)

// scriptRevokeFamily: KEYS fam; ARGV now.
var scriptRevokeFamily = newScript(`
want(KEYS[1], 'hash')
local gc = redis.call('HGET', KEYS[1], 'gc')
if gc and tonumber(gc) > tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'rv', '1') end
return {'OK'}
`)

// scriptRecordAT: KEYS at; ARGV now, exp, client.
var scriptRecordAT = newScript(`
want(KEYS[1], 'string')
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if v then
  local e, r, c = string.match(v, '^(%d+) (%d) (.*)$')
  if e and tonumber(e) > now then
    if e == ARGV[2] and c == ARGV[3] then return {'OK'} end
    return redis.error_reply('LKCONFLICT access token id already recorded')
  end
end
putat(KEYS[1], ARGV[2], ARGV[3], now)
return {'OK'}
`)

// scriptATActive: KEYS at[, fam]; ARGV now. Returns 1 or 0.
var scriptATActive = newScript(`
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e, r = string.match(v, '^(%d+) (%d) ')
if not e or tonumber(e) <= now or r ~= '0' then return 0 end
if #KEYS > 1 then
  local f = redis.call('HMGET', KEYS[2], 'rv', 'gc')
  if not f[2] or tonumber(f[2]) <= now or f[1] ~= '0' then return 0 end
end
return 1
`)

// scriptRevokeAT: KEYS at; ARGV now, client.
var scriptRevokeAT = newScript(`
want(KEYS[1], 'string')
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if not v then return {'NOTFOUND'} end
local e, r, c = string.match(v, '^(%d+) (%d) (.*)$')
if not e or tonumber(e) <= now then return {'NOTFOUND'} end
if c ~= ARGV[2] then return {'MISMATCH'} end
redis.call('SET', KEYS[1], e .. ' 1 ' .. c, 'KEEPTTL')
return {'OK'}
`)

// scriptUseAssertion: KEYS assertion; ARGV now, exp.
var scriptUseAssertion = newScript(`
want(KEYS[1], 'string')
local now = tonumber(ARGV[1])
local e = tonumber(ARGV[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v and v > now then return {'REPLAY'} end
if e > now then redis.call('SET', KEYS[1], ARGV[2], 'PX', pttl(e, now)) end
return {'OK'}
`)

// scriptCreateSession: KEYS session; ARGV now, subject, auth time, exp, idle ms. The key is
// replaced whatever it held, so no precondition can fail after the first write.
var scriptCreateSession = newScript(`
local now = tonumber(ARGV[1])
local ex = tonumber(ARGV[4])
local ie = now + tonumber(ARGV[5])
redis.call('DEL', KEYS[1])
local stop = math.min(ex, ie)
if stop <= now then return {'OK'} end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'at', ARGV[3], 'ex', ARGV[4], 'ie', ms(ie))
redis.call('PEXPIRE', KEYS[1], pttl(stop, now))
return {'OK'}
`)

// scriptGetSession: KEYS session; ARGV now, idle ms.
var scriptGetSession = newScript(`
want(KEYS[1], 'hash')
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 's', 'at', 'ex', 'ie')
if not f[1] then return {'NOTFOUND'} end
local ex = tonumber(f[3])
if ex <= now or tonumber(f[4]) <= now then return {'NOTFOUND'} end
local ie = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'ie', ms(ie))
redis.call('PEXPIRE', KEYS[1], pttl(math.min(ex, ie), now))
return {'OK', f[1], f[2], f[3]}
`)

// scriptSaveConsent: KEYS consent; ARGV now, exp, scope... Expired scopes are pruned on the
// way, so the hash never grows past the scopes a client can ask for.
var scriptSaveConsent = newScript(`
want(KEYS[1], 'hash')
local now = tonumber(ARGV[1])
local ex = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
if ex > now then
  for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
end
local last = 0
all = redis.call('HGETALL', KEYS[1])
for i = 2, #all, 2 do
  local e = tonumber(all[i])
  if e > last then last = e end
end
if last > now then redis.call('PEXPIRE', KEYS[1], pttl(last, now)) end
return {'OK'}
`)

// scriptHit: KEYS counter; ARGV n, ttl ms. Returns the count.
var scriptHit = newScript(`
want(KEYS[1], 'string')
local n = tonumber(ARGV[1])
if n == 0 then return tonumber(redis.call('GET', KEYS[1]) or '0') end
local c = redis.call('INCRBY', KEYS[1], n)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return c
`)

// scriptHitGroup: KEYS counters (one hash tag); ARGV n, ttl ms per key, in key order. Returns
// the counts. Each key is checked before any is written.
var scriptHitGroup = newScript(`
for i = 1, #KEYS do want(KEYS[i], 'string') end
local out = {}
for i = 1, #KEYS do
  local n = tonumber(ARGV[2 * i - 1])
  if n == 0 then
    out[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  else
    out[i] = redis.call('INCRBY', KEYS[i], n)
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i]) end
  end
end
return out
`)

func newScript(body string) *redis.Script {
	prelude := strings.ReplaceAll(luaPrelude, "MIN_TTL_MS", strconv.FormatInt(retention.MinKeyTTL.Milliseconds(), 10))
	return redis.NewScript(prelude + body)
}
