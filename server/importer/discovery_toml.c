/* discovery_toml.c — the small, bounded TOML subset reader discovery uses for
 * pyproject.toml (see discovery.h). No TOML library is available; this reads
 * what §8.3 needs and skips everything else line by line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"

#define TOML_MAX_VALUES 4096
#define TOML_MAX_ITEMS 1024
#define TOML_MAX_DEPTH 8

enum { TOML_STRING, TOML_ARRAY, TOML_TABLE, TOML_OTHER };

typedef struct TomlValue {
    char *table;
    char *key;
    int kind;
    char *string; /* TOML_STRING */
    char **items; /* TOML_ARRAY: its string items */
    size_t n_items;
} TomlValue;

struct TomlDoc {
    TomlValue *values;
    size_t n_values;
};

typedef struct Parser {
    const char *p, *end;
    TomlDoc *doc;
    int oom;
} Parser;

/* A growable byte buffer for keys and string values. */
typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;

static int buf_put(Parser *ps, Buf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX / 4 || b->len > SIZE_MAX / 4) { /* keeps the doubling below in range */
        ps->oom = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            ps->oom = 1;
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static char *buf_take(Parser *ps, Buf *b)
{
    if (!b->data && buf_put(ps, b, "", 0) < 0)
        return NULL;
    char *s = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

static void skip_blank(Parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
        ps->p++;
}

static void skip_line(Parser *ps)
{
    while (ps->p < ps->end && *ps->p != '\n')
        ps->p++;
}

/* Whitespace, newlines and comments (inside arrays and between lines). */
static void skip_space(Parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            ps->p++;
        else if (c == '#')
            skip_line(ps);
        else
            break;
    }
}

static int starts(const Parser *ps, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, s, n) == 0;
}

static void put_utf8(Parser *ps, Buf *b, unsigned long cp)
{
    char out[4];
    size_t n;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(ps, b, out, n);
}

/* A basic ("...", """...""") or literal ('...', '''...''') string at ps->p.
 * Returns the malloc'd value, or NULL when it is unterminated (or OOM). */
static char *parse_string(Parser *ps)
{
    char quote = *ps->p;
    int multi = starts(ps, quote == '"' ? "\"\"\"" : "'''");
    ps->p += multi ? 3 : 1;
    if (multi && ps->p < ps->end && *ps->p == '\n')
        ps->p++; /* a newline right after the opening quotes is trimmed */
    Buf b = {0};
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == quote && (!multi || starts(ps, quote == '"' ? "\"\"\"" : "'''"))) {
            ps->p += multi ? 3 : 1;
            return buf_take(ps, &b);
        }
        if (c == '\n' && !multi)
            break;
        if (c == '\\' && quote == '"' && ps->p + 1 < ps->end) {
            char e = ps->p[1];
            const char *simple = strchr("btnfr\"\\", e);
            ps->p += 2;
            if (e && simple) {
                static const char decoded[] = "\b\t\n\f\r\"\\";
                buf_put(ps, &b, &decoded[simple - "btnfr\"\\"], 1);
            } else if (e == 'u' || e == 'U') {
                int digits = e == 'u' ? 4 : 8;
                unsigned long cp = 0;
                for (int i = 0; i < digits && ps->p < ps->end; i++, ps->p++) {
                    char h = *ps->p;
                    int v = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
                    if (v < 0)
                        break;
                    cp = cp * 16 + (unsigned long)v;
                }
                put_utf8(ps, &b, cp);
            } else if (e == '\n' || e == ' ' || e == '\t' || e == '\r') {
                /* line-ending backslash: drop the following whitespace */
                while (ps->p < ps->end && strchr(" \t\r\n", *ps->p))
                    ps->p++;
            }
            continue;
        }
        buf_put(ps, &b, &c, 1);
        ps->p++;
    }
    free(b.data);
    return NULL;
}

/* One key segment: bare (A-Za-z0-9_-) or quoted. NULL when there is none. */
static char *parse_key_segment(Parser *ps)
{
    skip_blank(ps);
    if (ps->p < ps->end && (*ps->p == '"' || *ps->p == '\''))
        return parse_string(ps);
    const char *start = ps->p;
    while (ps->p < ps->end &&
           (strchr("_-", *ps->p) || (*ps->p >= 'a' && *ps->p <= 'z') ||
            (*ps->p >= 'A' && *ps->p <= 'Z') || (*ps->p >= '0' && *ps->p <= '9')))
        ps->p++;
    if (ps->p == start)
        return NULL;
    Buf b = {0};
    buf_put(ps, &b, start, (size_t)(ps->p - start));
    return buf_take(ps, &b);
}

/* A dotted key: all segments but the last are appended to *path (joined
 * with '.'); the last is returned. NULL on a malformed key. */
static char *parse_key(Parser *ps, Buf *path)
{
    char *seg = parse_key_segment(ps);
    for (;;) {
        if (!seg)
            return NULL;
        skip_blank(ps);
        if (ps->p >= ps->end || *ps->p != '.')
            return seg;
        ps->p++;
        if (path->len)
            buf_put(ps, path, ".", 1);
        buf_put(ps, path, seg, strlen(seg));
        free(seg);
        seg = parse_key_segment(ps);
    }
}

static TomlValue *add_value(Parser *ps, const char *table, const char *key, int kind)
{
    TomlDoc *doc = ps->doc;
    if (doc->n_values >= TOML_MAX_VALUES)
        return NULL;
    if ((doc->n_values & (doc->n_values - 1)) == 0) { /* grow at powers of two */
        size_t cap = doc->n_values ? doc->n_values * 2 : 16;
        TomlValue *grown = realloc(doc->values, cap * sizeof *grown);
        if (!grown) {
            ps->oom = 1;
            return NULL;
        }
        doc->values = grown;
    }
    TomlValue *v = &doc->values[doc->n_values];
    memset(v, 0, sizeof *v);
    v->table = strdup(table);
    v->key = strdup(key);
    v->kind = kind;
    if (!v->table || !v->key) {
        free(v->table);
        free(v->key);
        ps->oom = 1;
        return NULL;
    }
    doc->n_values++;
    return v;
}

static int parse_value(Parser *ps, const char *table, const char *key, int depth);

/* `[a, "b", ...]`: string items are kept on `into` (when not NULL). */
static int parse_array(Parser *ps, TomlValue *into, int depth)
{
    ps->p++;
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end)
            return -1;
        if (*ps->p == ']') {
            ps->p++;
            return 0;
        }
        if (*ps->p == '"' || *ps->p == '\'') {
            char *s = parse_string(ps);
            if (!s)
                return -1;
            if (into && into->n_items < TOML_MAX_ITEMS) {
                char **grown = realloc(into->items, (into->n_items + 1) * sizeof *grown);
                if (!grown) {
                    free(s);
                    ps->oom = 1;
                    return -1;
                }
                into->items = grown;
                into->items[into->n_items++] = s;
            } else {
                free(s);
            }
        } else if (parse_value(ps, NULL, NULL, depth + 1) < 0) {
            return -1;
        }
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',')
            ps->p++;
        else if (ps->p < ps->end && *ps->p != ']')
            return -1;
    }
}

static char *join_path(Parser *ps, const char *a, const char *b)
{
    Buf path = {0};
    buf_put(ps, &path, a, strlen(a));
    if (*a && *b)
        buf_put(ps, &path, ".", 1);
    buf_put(ps, &path, b, strlen(b));
    return buf_take(ps, &path);
}

/* `key = value` pairs of an inline table go to table `table`. */
static int parse_inline_table(Parser *ps, const char *table, int depth)
{
    ps->p++;
    for (;;) {
        skip_blank(ps);
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return 0;
        }
        Buf sub = {0};
        char *key = parse_key(ps, &sub);
        skip_blank(ps);
        if (!key || ps->p >= ps->end || *ps->p != '=') {
            free(key);
            free(sub.data);
            return -1;
        }
        ps->p++;
        char *sub_table = table ? join_path(ps, table, sub.data ? sub.data : "") : NULL;
        free(sub.data);
        int rc = parse_value(ps, sub_table, key, depth + 1);
        free(sub_table);
        free(key);
        if (rc < 0)
            return -1;
        skip_blank(ps);
        if (ps->p < ps->end && *ps->p == ',')
            ps->p++;
        else if (ps->p >= ps->end || *ps->p != '}')
            return -1;
    }
}

/* A value after `=`. table/key NULL: parsed and thrown away (inside arrays). */
static int parse_value(Parser *ps, const char *table, const char *key, int depth)
{
    if (depth > TOML_MAX_DEPTH || ps->oom)
        return -1;
    skip_blank(ps);
    if (ps->p >= ps->end)
        return -1;
    char c = *ps->p;
    if (c == '"' || c == '\'') {
        char *s = parse_string(ps);
        if (!s)
            return -1;
        TomlValue *v = table ? add_value(ps, table, key, TOML_STRING) : NULL;
        if (v)
            v->string = s;
        else
            free(s);
        return 0;
    }
    if (c == '[')
        return parse_array(ps, table ? add_value(ps, table, key, TOML_ARRAY) : NULL, depth);
    if (c == '{') {
        char *inner = NULL;
        if (table) {
            add_value(ps, table, key, TOML_TABLE);
            inner = join_path(ps, table, key);
        }
        int rc = parse_inline_table(ps, inner, depth);
        free(inner);
        return rc;
    }
    /* number, boolean, date: up to a delimiter, kept as text */
    const char *start = ps->p;
    while (ps->p < ps->end && !strchr(",]}#\r\n", *ps->p))
        ps->p++;
    const char *stop = ps->p;
    while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
        stop--;
    if (stop == start)
        return -1;
    TomlValue *v = table ? add_value(ps, table, key, TOML_OTHER) : NULL;
    if (v) {
        Buf b = {0};
        buf_put(ps, &b, start, (size_t)(stop - start));
        v->string = buf_take(ps, &b);
    }
    return 0;
}

TomlDoc *toml_parse(const char *text, size_t len)
{
    TomlDoc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return NULL;
    Parser ps = {.p = text, .end = text + len, .doc = doc};
    Buf table = {0};
    int in_array_table = 0;
    buf_put(&ps, &table, "", 0);
    while (!ps.oom) {
        skip_space(&ps);
        if (ps.p >= ps.end)
            break;
        if (*ps.p == '[') {
            in_array_table = starts(&ps, "[[");
            ps.p += in_array_table ? 2 : 1;
            Buf header = {0};
            char *last = parse_key(&ps, &header);
            skip_blank(&ps);
            if (last && ps.p < ps.end && *ps.p == ']') {
                if (header.len)
                    buf_put(&ps, &header, ".", 1);
                buf_put(&ps, &header, last, strlen(last));
                free(table.data);
                table = header;
            } else {
                free(header.data);
                in_array_table = 1; /* unreadable header: ignore its keys */
            }
            free(last);
            skip_line(&ps);
            continue;
        }
        Buf sub = {0};
        char *key = parse_key(&ps, &sub);
        skip_blank(&ps);
        if (key && ps.p < ps.end && *ps.p == '=') {
            ps.p++;
            char *full = join_path(&ps, table.data ? table.data : "", sub.data ? sub.data : "");
            /* keys of [[array tables]] are read (to stay in sync) but not kept */
            if (full && parse_value(&ps, in_array_table ? NULL : full, key, 0) < 0)
                skip_line(&ps);
            free(full);
        }
        free(key);
        free(sub.data);
        skip_line(&ps); /* the rest of the line: a comment, or what we could not read */
    }
    free(table.data);
    if (ps.oom) {
        toml_free(doc);
        return NULL;
    }
    return doc;
}

void toml_free(TomlDoc *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->n_values; i++) {
        TomlValue *v = &doc->values[i];
        free(v->table);
        free(v->key);
        free(v->string);
        for (size_t j = 0; j < v->n_items; j++)
            free(v->items[j]);
        free(v->items);
    }
    free(doc->values);
    free(doc);
}

static const TomlValue *find(const TomlDoc *doc, const char *table, const char *key, int kind)
{
    for (size_t i = 0; doc && i < doc->n_values; i++) {
        const TomlValue *v = &doc->values[i];
        if (v->kind == kind && strcmp(v->table, table) == 0 && strcmp(v->key, key) == 0)
            return v;
    }
    return NULL;
}

const char *toml_get_string(const TomlDoc *doc, const char *table, const char *key)
{
    const TomlValue *v = find(doc, table, key, TOML_STRING);
    return v ? v->string : NULL;
}

size_t toml_get_array(const TomlDoc *doc, const char *table, const char *key,
                      const char *const **items)
{
    const TomlValue *v = find(doc, table, key, TOML_ARRAY);
    *items = v ? (const char *const *)v->items : NULL;
    return v ? v->n_items : 0;
}

const char *toml_table_key(const TomlDoc *doc, const char *table, size_t i)
{
    for (size_t k = 0; doc && k < doc->n_values; k++) {
        if (strcmp(doc->values[k].table, table) == 0 && i-- == 0)
            return doc->values[k].key;
    }
    return NULL;
}
