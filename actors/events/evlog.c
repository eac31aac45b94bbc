/* evlog.c: the per-user event log's Lua scripts and id check (see evlog.h).
 *
 * Trimming keeps max(AIN__EVLOG_KEEP events, everything younger than the
 * window): if the window holds at least KEEP events, everything older
 * than it goes (MINID), else the newest KEEP stay (MAXLEN); either way
 * nothing inside both bounds is lost. Finding that out costs a range of
 * KEEP entries, so it runs on one append in 64 once a stream is past
 * KEEP (the stream may briefly hold up to 63 more). MAXLEN ~ CAP on every
 * append bounds a user who publishes faster than the window drains.
 *
 * A replay starts only from an id that is still in the stream: ids are
 * never reused and the oldest entries go first, so "the id is there"
 * means "nothing after it was trimmed". Anything else (trimmed, expired,
 * never logged, made up) is a reset.
 */
#include "actors/events/evlog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* KEYS: the users' streams; ARGV: keep, window, cap, idle, then the N
 * payloads, then N event keys ("" = none). An event whose key was appended
 * to the same stream within the window is not appended again: its answer
 * is "=<the first append's id>". */
const char ain__evlog_append_lua[] =
    "local keep, win, cap, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]\n"
    "local n = #KEYS\n"
    "local out = {}\n"
    "for i, key in ipairs(KEYS) do\n"
    "  local ek = ARGV[4 + n + i]\n"
    "  local prev = false\n"
    "  if ek and ek ~= '' then\n"
    "    ek = key .. ':k:' .. ek\n"
    "    prev = redis.call('GET', ek)\n"
    "  else\n"
    "    ek = false\n"
    "  end\n"
    "  if prev then\n"
    "    out[i] = '=' .. prev\n"
    "  else\n"
    "    local id = redis.call('XADD', key, 'MAXLEN', '~', cap, '*', 'd', ARGV[4 + i])\n"
    "    local len = redis.call('XLEN', key)\n"
    "    if len > keep and len % 64 == 0 then\n"
    "      local t = redis.call('TIME')\n"
    "      local cut = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - win\n"
    "      cut = string.format('%d', cut)\n"
    "      local inwin = redis.call('XRANGE', key, cut, '+', 'COUNT', keep)\n"
    "      if #inwin >= keep then\n"
    "        redis.call('XTRIM', key, 'MINID', cut)\n"
    "      else\n"
    "        redis.call('XTRIM', key, 'MAXLEN', keep)\n"
    "      end\n"
    "    end\n"
    "    redis.call('PEXPIRE', key, idle)\n"
    "    if ek then redis.call('SET', ek, id, 'PX', win) end\n"
    "    out[i] = id\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ARGV[4] "1": `after` is a point in time ("<ms>-0", edge/catchup.c), not
 * an id the caller saw: it need not be in the stream, only nothing after it
 * may have been trimmed: the oldest entry left is not newer than it, or
 * nothing was ever trimmed (entries-added equals the length; we never XDEL).
 * A stream that is gone (expired after idling) had nothing after it. */
const char ain__evlog_replay_lua[] =
    "local after = ARGV[1]\n"
    "local function older(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as <= bs)\n"
    "end\n"
    "if #redis.call('XRANGE', KEYS[1], after, after) == 0 then\n"
    "  if ARGV[4] ~= '1' then return {0} end\n"
    "  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end\n"
    "  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "  if #first > 0 and not older(first[1][1], after) then\n"
    "    local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "    local added, len = -1, redis.call('XLEN', KEYS[1])\n"
    "    for i = 1, #info, 2 do\n"
    "      if info[i] == 'entries-added' then added = info[i + 1] end\n"
    "    end\n"
    "    if added ~= len then return {0} end\n"
    "  end\n"
    "end\n"
    "local limit, budget = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local items = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', limit + 1)\n"
    "local out, n, bytes = {1}, 0, 0\n"
    "for i, e in ipairs(items) do\n"
    "  if i > limit then break end\n"
    "  local d = e[2][2]\n"
    "  if n > 0 and bytes + #d > budget then break end\n"
    "  bytes, n = bytes + #d, n + 1\n"
    "  out[#out + 1] = e[1]\n"
    "  out[#out + 1] = d\n"
    "end\n"
    "if n < #items then out[1] = 2 end\n"
    "return out\n";

void ain__evlog_key(uint64_t user, char *buf, size_t size)
{
    snprintf(buf, size, "ain:ev:%" PRIu64, user);
}

/* One decimal part of at most 20 digits that fits in 64 bits. */
static bool s_part(const char *p, size_t len)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    return true;
}

bool ain__evlog_id_valid(const char *id, size_t len)
{
    const char *dash = len ? memchr(id, '-', len) : NULL;
    if (!dash)
        return false;
    size_t head = (size_t)(dash - id);
    return s_part(id, head) && s_part(dash + 1, len - head - 1);
}

bool ain__evlog_event_key_valid(const char *key, size_t len)
{
    if (len == 0 || len > AIN__EVLOG_EVENT_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

int ain_evlog_test(bool verbose)
{
    static const struct {
        const char *id;
        bool ok;
    } cases[] = {
        {"1700000000000-0", true},
        {"0-0", true},
        {"18446744073709551615-18446744073709551615", true},
        {"18446744073709551616-0", false},
        {"", false},
        {"-", false},
        {"1-", false},
        {"-1", false},
        {"1-2-3", false},
        {"+1-2", false},
        {"1 -2", false},
        {"abc", false},
        {"1700000000000", false},
        {"1-2\n", false},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (ain__evlog_id_valid(cases[i].id, strlen(cases[i].id)) != cases[i].ok) {
            fprintf(stderr, "evlog: id \"%s\" should be %s\n", cases[i].id,
                    cases[i].ok ? "valid" : "invalid");
            failures++;
        }
    }
    static const struct {
        const char *key;
        bool ok;
    } keys[] = {
        {"o17.0", true},
        {"a-b_c.9", true},
        {"", false},
        {"o1 2", false},
        {"o1:2", false},
        {"o1\n", false},
        {"0123456789012345678901234567890123456789012345678901234567890123", true},
        {"01234567890123456789012345678901234567890123456789012345678901234", false},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (ain__evlog_event_key_valid(keys[i].key, strlen(keys[i].key)) != keys[i].ok) {
            fprintf(stderr, "evlog: event key \"%s\" should be %s\n", keys[i].key,
                    keys[i].ok ? "valid" : "invalid");
            failures++;
        }
    }
    char key[40];
    ain__evlog_key(42, key, sizeof key);
    if (strcmp(key, "ain:ev:42") != 0)
        failures++;
    if (verbose)
        printf("evlog: %s\n", failures ? "FAILED" : "ok");
    return failures ? -1 : 0;
}
