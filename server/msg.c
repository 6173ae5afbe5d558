/* msg.c — see msg.h. */
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *msg_alloc(size_t size)
{
    void *p = calloc(1, size);
    if (!p) {
        fputs("nornd: out of memory\n", stderr);
        abort();
    }
    return p;
}

char *msg_strdup(const char *s)
{
    size_t n = strlen(s ? s : "");
    char *d = msg_alloc(n + 1);
    if (n)
        memcpy(d, s, n);
    return d;
}

void msg_set_str(char **field, const char *value)
{
    if (*field && *field != protobuf_c_empty_string)
        free(*field);
    *field = msg_strdup(value);
}

Google__Protobuf__Timestamp *msg_timestamp(uint64_t micros)
{
    Google__Protobuf__Timestamp *t = msg_alloc(sizeof *t);
    google__protobuf__timestamp__init(t);
    t->seconds = (int64_t)(micros / 1000000u);
    t->nanos = (int32_t)(micros % 1000000u) * 1000;
    return t;
}

uint64_t msg_micros(const Google__Protobuf__Timestamp *ts)
{
    if (!ts || ts->seconds < 0)
        return 0;
    return (uint64_t)ts->seconds * 1000000u + (uint64_t)(ts->nanos / 1000);
}

char *msg_utf8_cut(char *dst, size_t cap, const char *src, size_t max_chars)
{
    size_t o = 0, chars = 0;
    if (!cap)
        return dst;
    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p && chars < max_chars;
         chars++) {
        size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
        size_t k = 0;
        while (k < n && p[k])
            k++;
        if (k < n || o + n >= cap)
            break; /* a truncated sequence, or no room for the whole one */
        memcpy(dst + o, p, n);
        o += n;
        p += n;
    }
    dst[o] = '\0';
    return dst;
}

ProtobufCMessage *msg_clone(const ProtobufCMessage *m)
{
    if (!m)
        return NULL;
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = msg_alloc(len ? len : 1);
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    if (!c)
        abort();
    return c;
}

void msg_append(void ***arr, size_t *n, void *item)
{
    void **a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a)
        abort();
    a[(*n)++] = item;
    *arr = a;
}

void msg_append_str(char ***arr, size_t *n, const char *s)
{
    msg_append((void ***)arr, n, msg_strdup(s));
}
