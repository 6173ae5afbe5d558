/* discovery_report.c — building the malloc'd DiscoveryReport: every string,
 * message and array is its own allocation, so
 * norn__v1__discovery_report__free_unpacked(r, NULL) frees it all. */
#include <stdlib.h>
#include <string.h>

#include "discovery_internal.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    unsigned cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static char *utf8_copy(const char *s, size_t n, size_t max, int *oom)
{
    char *out = malloc((n < max ? n : max) + 1);
    if (!out) {
        *oom = 1;
        return NULL;
    }
    size_t in = 0, len = 0;
    while (in < n) {
        size_t seq = utf8_seq((const unsigned char *)s + in, n - in);
        size_t width = seq ? seq : 1;
        if (len + width > max)
            break;
        if (seq)
            memcpy(out + len, s + in, seq);
        else
            out[len] = '?';
        len += width;
        in += width;
    }
    out[len] = '\0';
    return out;
}

char *report_text(const char *s, size_t n, int *oom)
{
    return utf8_copy(s, n, DISCOVERY_MAX_TEXT, oom);
}

char *report_path(const char *path, int *oom)
{
    return utf8_copy(path, strlen(path), DISCOVERY_MAX_PATH, oom);
}

void report_append_take(void ***items, size_t *n_items, void *item, void (*free_item)(void *),
                        int *oom)
{
    if (!item)
        return;
    if (*n_items >= DISCOVERY_MAX_ITEMS) {
        free_item(item);
        return;
    }
    void **grown = realloc(*items, (*n_items + 1) * sizeof *grown);
    if (!grown) {
        *oom = 1;
        free_item(item);
        return;
    }
    grown[(*n_items)++] = item;
    *items = grown;
}

void report_add_unique(char ***items, size_t *n_items, const char *s, size_t n, int *oom)
{
    for (size_t i = 0; i < *n_items; i++) {
        if (strlen((*items)[i]) == n && memcmp((*items)[i], s, n) == 0)
            return;
    }
    report_append_take((void ***)items, n_items, report_text(s, n, oom), free, oom);
}

static void free_finding(void *finding)
{
    norn__v1__finding__free_unpacked(finding, NULL);
}

void report_add_finding(Norn__V1__DiscoveryReport *r, const char *kind,
                        Norn__V1__FindingSeverity severity, const char *file, unsigned line,
                        const char *detail, int *oom)
{
    Norn__V1__Finding *f = malloc(sizeof *f);
    if (!f) {
        *oom = 1;
        return;
    }
    norn__v1__finding__init(f);
    f->severity = severity;
    f->line = line;
    f->kind = report_text(kind, strlen(kind), oom);
    f->detail = report_text(detail, strlen(detail), oom);
    if (file)
        f->file = report_path(file, oom);
    if (!f->kind || !f->detail || !f->file) {
        norn__v1__finding__free_unpacked(f, NULL);
        return;
    }
    report_append_take((void ***)&r->findings, &r->n_findings, f, free_finding, oom);
}

void report_free_tool(void *tool)
{
    norn__v1__tool_info__free_unpacked(tool, NULL);
}
