/* keys.c — see keys.h. */
#include "keys.h"

#include <string.h>

void key_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void key_put_u64(uint8_t *p, uint64_t v)
{
    key_put_u32(p, (uint32_t)(v >> 32));
    key_put_u32(p + 4, (uint32_t)v);
}

uint32_t key_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t key_get_u64(const uint8_t *p)
{
    return (uint64_t)key_get_u32(p) << 32 | key_get_u32(p + 4);
}

static int add_bytes(Key *k, const void *p, size_t n)
{
    if (k->len + n > KEY_MAX)
        return -1;
    memcpy(k->b + k->len, p, n);
    k->len += n;
    return 0;
}

static int add_str0(Key *k, const char *s)
{
    return add_bytes(k, s, strlen(s) + 1); /* with its 00 */
}

static int add_u32(Key *k, uint32_t v)
{
    uint8_t b[4];
    key_put_u32(b, v);
    return add_bytes(k, b, 4);
}

static int add_u64(Key *k, uint64_t v)
{
    uint8_t b[8];
    key_put_u64(b, v);
    return add_bytes(k, b, 8);
}

int key_session(Key *k, const char *id)
{
    k->len = 0;
    return add_bytes(k, id, strlen(id));
}

int key_session_prefix(Key *k, const char *id)
{
    k->len = 0;
    return add_str0(k, id);
}

int key_step(Key *k, const char *id, uint32_t step)
{
    return key_session_prefix(k, id) || add_u32(k, step);
}

int key_tool_use(Key *k, const char *id, const char *tool_use_id)
{
    return key_session_prefix(k, id) || add_bytes(k, tool_use_id, strlen(tool_use_id));
}

int key_issue(Key *k, const char *id, uint32_t seq)
{
    return key_session_prefix(k, id) || add_u32(k, seq);
}

int key_by_time(Key *k, uint64_t micros, const char *id)
{
    k->len = 0;
    return add_u64(k, UINT64_MAX - micros) || add_bytes(k, id, strlen(id));
}

int key_by_name(Key *k, const char *name, uint64_t micros, const char *id)
{
    k->len = 0;
    return add_str0(k, name) || add_u64(k, UINT64_MAX - micros) || add_bytes(k, id, strlen(id));
}

int key_name_prefix(Key *k, const char *name)
{
    k->len = 0;
    return add_str0(k, name);
}

int key_audit(Key *k, uint64_t micros, uint64_t seq)
{
    k->len = 0;
    return add_u64(k, micros) || add_u64(k, seq);
}

int key_revision(Key *k, uint64_t rev)
{
    k->len = 0;
    return add_u64(k, rev);
}

int key_run(Key *k, const char *run_id)
{
    k->len = 0;
    uint8_t kind = KEY_RUN_RECORD;
    return add_bytes(k, &kind, 1) || add_bytes(k, run_id, strlen(run_id));
}

int key_run_by_time(Key *k, uint64_t queued_micros, const char *run_id)
{
    k->len = 0;
    uint8_t kind = KEY_RUN_BY_TIME;
    return add_bytes(k, &kind, 1) || add_u64(k, UINT64_MAX - queued_micros) ||
           add_bytes(k, run_id, strlen(run_id));
}

int key_prefix_end(const Key *prefix, Key *end)
{
    *end = *prefix;
    while (end->len > 0) {
        if (end->b[end->len - 1] != 0xff) {
            end->b[end->len - 1]++;
            return 0;
        }
        end->len--;
    }
    return -1;
}

int key_index_session_id(const uint8_t *key, size_t len, size_t name_prefix_len, char *id,
                         size_t cap)
{
    if (len < name_prefix_len + 8)
        return -1;
    size_t n = len - name_prefix_len - 8;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(id, key + name_prefix_len + 8, n);
    id[n] = '\0';
    return (int)n;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t token_encode(const uint8_t *data, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | data[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            if (o + 1 < cap)
                out[o++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0 && o + 1 < cap)
        out[o++] = b64[(acc << (6 - bits)) & 63];
    if (cap)
        out[o] = '\0';
    return o;
}

int token_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (; *s; s++) {
        const char *p = memchr(b64, *s, 64);
        if (!p)
            return -1;
        acc = acc << 6 | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *len = o;
    return 0;
}
