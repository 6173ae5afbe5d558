/*
 * analyzer_repr.c — text helpers of the analyzer: a growable string, strict
 * UTF-8 decoding, Python's str.isspace(), and Python repr() of strings and
 * JSON values (reference §3.11), used for issue descriptions and for the
 * equality key of tool inputs (§3.3).
 */
#include "analyzer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Beyond this depth a nested value prints as "...": bounds the recursion on
 * inputs that arrive from the network. */
#define REPR_MAX_DEPTH 64

/* ---- AnalyzerText ------------------------------------------------------ */

static bool text_reserve(AnalyzerText *t, size_t extra)
{
    if (t->failed)
        return false;
    if (extra > SIZE_MAX / 2 - t->len) {
        t->failed = true;
        return false;
    }
    size_t need = t->len + extra + 1;
    if (need <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(t->data, cap);
    if (!p) {
        t->failed = true;
        return false;
    }
    t->data = p;
    t->cap = cap;
    t->data[t->len] = '\0'; /* a fresh buffer reads as "" at once */
    return true;
}

void analyzer_text_append(AnalyzerText *t, const char *s, size_t n)
{
    if (!text_reserve(t, n))
        return;
    if (n)
        memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

void analyzer_text_appendf(AnalyzerText *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        analyzer_text_append(t, small, (size_t)n);
        return;
    }
    if (!text_reserve(t, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void text_putc(AnalyzerText *t, char c)
{
    if (t->len + 1 < t->cap && !t->failed) {
        t->data[t->len++] = c;
        t->data[t->len] = '\0';
        return;
    }
    analyzer_text_append(t, &c, 1);
}

char *analyzer_text_take(AnalyzerText *t)
{
    if (t->failed) {
        analyzer_text_free(t);
        return NULL;
    }
    char *s = t->data;
    if (!s)
        s = strdup("");
    memset(t, 0, sizeof *t);
    return s;
}

void analyzer_text_free(AnalyzerText *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* ---- UTF-8 and character classes ---------------------------------------- */

uint32_t analyzer_utf8_next(const char *str, size_t len, size_t *pos)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = *pos;
    unsigned c = s[i];
    if (c < 0x80) {
        *pos = i + 1;
        return c;
    }
    size_t need;
    uint32_t cp;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no encoded surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        goto invalid;
    }
    if (len - i <= need)
        goto invalid;
    for (size_t k = 1; k <= need; k++) {
        unsigned b = s[i + k];
        unsigned blo = k == 1 ? lo : 0x80, bhi = k == 1 ? hi : 0xBF;
        if (b < blo || b > bhi)
            goto invalid;
        cp = (cp << 6) | (b & 0x3F);
    }
    *pos = i + need + 1;
    return cp;
invalid:
    *pos = i + 1;
    return 0xDC00 + c;
}

bool analyzer_is_py_space(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* Code points Python's str.isprintable() rejects: categories Cc, Cf, Cs,
 * Co, Zl, Zp and Zs other than space (Unicode 14, as in Python 3.11; exact
 * for every assigned code point), plus noncharacters. Other unassigned code
 * points are treated as printable: the difference only changes how a few
 * exotic characters are escaped. */
static const struct {
    uint32_t lo, hi;
} nonprintable[] = {
    {0x0000, 0x001F},   {0x007F, 0x00A0},   {0x00AD, 0x00AD},    {0x0600, 0x0605},
    {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},    {0x0890, 0x0891},
    {0x08E2, 0x08E2},   {0x1680, 0x1680},   {0x180E, 0x180E},    {0x2000, 0x200F},
    {0x2028, 0x202F},   {0x205F, 0x206F},   {0x3000, 0x3000},    {0xD800, 0xF8FF},
    {0xFDD0, 0xFDEF},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},    {0x110BD, 0x110BD},
    {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3},  {0x1D173, 0x1D17A},
    {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xF0000, 0x10FFFF},
};

static bool py_printable(uint32_t cp)
{
    if (cp >= 0x20 && cp < 0x7F)
        return true;
    if ((cp & 0xFFFE) == 0xFFFE)
        return false;
    size_t lo = 0, hi = sizeof nonprintable / sizeof nonprintable[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < nonprintable[mid].lo)
            hi = mid;
        else if (cp > nonprintable[mid].hi)
            lo = mid + 1;
        else
            return false;
    }
    return true;
}

/* ---- repr ----------------------------------------------------------------- */

void analyzer_repr_string(AnalyzerText *t, const char *s, size_t len)
{
    if (!s)
        s = "";
    bool has_single = memchr(s, '\'', len) != NULL;
    bool has_double = memchr(s, '"', len) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    text_reserve(t, len + 2);
    text_putc(t, quote);
    size_t i = 0;
    while (i < len) {
        /* Copy runs of plain printable ASCII in one go. */
        size_t run = i;
        while (run < len) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c >= 0x7F || c == '\\' || c == (unsigned char)quote)
                break;
            run++;
        }
        if (run > i) {
            analyzer_text_append(t, s + i, run - i);
            i = run;
            continue;
        }
        size_t start = i;
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        if (cp == '\\' || cp == (uint32_t)quote) {
            text_putc(t, '\\');
            text_putc(t, (char)cp);
        } else if (cp == '\t') {
            analyzer_text_append(t, "\\t", 2);
        } else if (cp == '\n') {
            analyzer_text_append(t, "\\n", 2);
        } else if (cp == '\r') {
            analyzer_text_append(t, "\\r", 2);
        } else if (py_printable(cp)) {
            analyzer_text_append(t, s + start, i - start);
        } else if (cp <= 0xFF) {
            analyzer_text_appendf(t, "\\x%02x", cp);
        } else if (cp <= 0xFFFF) {
            analyzer_text_appendf(t, "\\u%04x", cp);
        } else {
            analyzer_text_appendf(t, "\\U%08x", cp);
        }
    }
    text_putc(t, quote);
}

/* Python's repr(float): the shortest digits that read back to the same
 * double; fixed notation for decimal exponents -4..15, else d.ddde+XX. */
static void repr_float(AnalyzerText *t, double x)
{
    if (isnan(x)) {
        analyzer_text_append(t, "nan", 3);
        return;
    }
    if (isinf(x)) {
        analyzer_text_append(t, x < 0 ? "-inf" : "inf", x < 0 ? 4 : 3);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    /* buf = [-]d[.ddd]e(+|-)XX */
    const char *p = buf;
    bool negative = *p == '-';
    if (negative)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    if (negative)
        text_putc(t, '-');
    if (exp10 < -4 || exp10 >= 16) {
        text_putc(t, digits[0]);
        if (nd > 1) {
            text_putc(t, '.');
            analyzer_text_append(t, digits + 1, nd - 1);
        }
        analyzer_text_appendf(t, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    int decpt = exp10 + 1; /* digits before the decimal point */
    if (decpt <= 0) {
        analyzer_text_append(t, "0.", 2);
        for (int k = 0; k < -decpt; k++)
            text_putc(t, '0');
        analyzer_text_append(t, digits, nd);
    } else if ((size_t)decpt >= nd) {
        analyzer_text_append(t, digits, nd);
        for (size_t k = nd; k < (size_t)decpt; k++)
            text_putc(t, '0');
        analyzer_text_append(t, ".0", 2);
    } else {
        analyzer_text_append(t, digits, (size_t)decpt);
        text_putc(t, '.');
        analyzer_text_append(t, digits + decpt, nd - (size_t)decpt);
    }
}

/* A Struct number is a double, so the original's int/float distinction is
 * lost. The model's JSON integers were Python ints, so an integral number
 * below 2^53 prints as an int ('5'); anything else as a Python float. */
static void repr_number(AnalyzerText *t, double x)
{
    if (x == trunc(x) && fabs(x) < 9007199254740992.0) {
        analyzer_text_appendf(t, "%lld", (long long)x);
        return;
    }
    repr_float(t, x);
}

static void repr_value_depth(AnalyzerText *t, const Google__Protobuf__Value *v, int depth);

static void repr_struct_depth(AnalyzerText *t, const Google__Protobuf__Struct *s, int depth);

static void repr_list_depth(AnalyzerText *t, const Google__Protobuf__ListValue *l, int depth)
{
    if (depth > REPR_MAX_DEPTH) {
        analyzer_text_append(t, "[...]", 5);
        return;
    }
    text_putc(t, '[');
    for (size_t i = 0; l && i < l->n_values; i++) {
        if (i)
            analyzer_text_append(t, ", ", 2);
        repr_value_depth(t, l->values[i], depth + 1);
    }
    text_putc(t, ']');
}

static void repr_value_depth(AnalyzerText *t, const Google__Protobuf__Value *v, int depth)
{
    switch (v ? v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: repr_number(t, v->number_value); break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        analyzer_repr_string(t, v->string_value, v->string_value ? strlen(v->string_value) : 0);
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        if (v->bool_value)
            analyzer_text_append(t, "True", 4);
        else
            analyzer_text_append(t, "False", 5);
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        repr_struct_depth(t, v->struct_value, depth);
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: repr_list_depth(t, v->list_value, depth); break;
    default: analyzer_text_append(t, "None", 4); break;
    }
}

void analyzer_repr_value(AnalyzerText *t, const Google__Protobuf__Value *v)
{
    repr_value_depth(t, v, 0);
}

/* ---- dict view of a Struct -------------------------------------------- */

static int item_cmp_key_then_first(const void *a, const void *b)
{
    const AnalyzerDictItem *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->first < y->first ? -1 : x->first > y->first;
}

int analyzer_dict_items(const Google__Protobuf__Struct *s, AnalyzerDictItem **items, size_t *n)
{
    *items = NULL;
    *n = 0;
    size_t count = s ? s->n_fields : 0;
    if (count == 0)
        return 0;
    AnalyzerDictItem *it = malloc(count * sizeof *it);
    if (!it)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < count; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
        if (!e)
            continue;
        it[m].key = e->key ? e->key : "";
        it[m].value = e->value;
        it[m].first = i;
        m++;
    }
    /* Sorting by (key, position) groups duplicates with the first one
     * leading; small dicts (the usual tool input) use insertion sort. */
    if (m <= 16) {
        for (size_t i = 1; i < m; i++) {
            AnalyzerDictItem x = it[i];
            size_t j = i;
            while (j > 0 && item_cmp_key_then_first(&it[j - 1], &x) > 0) {
                it[j] = it[j - 1];
                j--;
            }
            it[j] = x;
        }
    } else {
        qsort(it, m, sizeof *it, item_cmp_key_then_first);
    }
    size_t out = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i + 1;
        while (j < m && strcmp(it[j].key, it[i].key) == 0)
            j++;
        it[out] = it[i];                 /* first position ... */
        it[out].value = it[j - 1].value; /* ... last value, as a Python dict */
        out++;
        i = j;
    }
    *items = it;
    *n = out;
    return 0;
}

static int item_cmp_first(const void *a, const void *b)
{
    const AnalyzerDictItem *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

void analyzer_dict_items_entry_order(AnalyzerDictItem *items, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            AnalyzerDictItem x = items[i];
            size_t j = i;
            while (j > 0 && items[j - 1].first > x.first) {
                items[j] = items[j - 1];
                j--;
            }
            items[j] = x;
        }
        return;
    }
    qsort(items, n, sizeof *items, item_cmp_first);
}

static void repr_struct_depth(AnalyzerText *t, const Google__Protobuf__Struct *s, int depth)
{
    if (depth > REPR_MAX_DEPTH) {
        analyzer_text_append(t, "{...}", 5);
        return;
    }
    AnalyzerDictItem *items;
    size_t n;
    if (analyzer_dict_items(s, &items, &n) != 0) {
        t->failed = true;
        return;
    }
    analyzer_dict_items_entry_order(items, n);
    text_putc(t, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            analyzer_text_append(t, ", ", 2);
        analyzer_repr_string(t, items[i].key, strlen(items[i].key));
        analyzer_text_append(t, ": ", 2);
        repr_value_depth(t, items[i].value, depth + 1);
    }
    text_putc(t, '}');
    free(items);
}

void analyzer_repr_struct(AnalyzerText *t, const Google__Protobuf__Struct *s)
{
    repr_struct_depth(t, s, 0);
}

void analyzer_append_canonical_input(AnalyzerText *t, const char *tool_name,
                                     const Google__Protobuf__Struct *input)
{
    if (!tool_name)
        tool_name = "";
    /* Python: f"{tool_name}:{str(sorted(tool_input.items()))}" */
    analyzer_text_append(t, tool_name, strlen(tool_name));
    analyzer_text_append(t, ":[", 2);
    AnalyzerDictItem *items;
    size_t n;
    if (analyzer_dict_items(input, &items, &n) != 0) {
        t->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (i)
            analyzer_text_append(t, ", ", 2);
        text_putc(t, '(');
        analyzer_repr_string(t, items[i].key, strlen(items[i].key));
        analyzer_text_append(t, ", ", 2);
        repr_value_depth(t, items[i].value, 1);
        text_putc(t, ')');
    }
    text_putc(t, ']');
    free(items);
}

char *analyzer_canonical_input(const char *tool_name, const Google__Protobuf__Struct *input)
{
    AnalyzerText t = {0};
    analyzer_append_canonical_input(&t, tool_name, input);
    return analyzer_text_take(&t);
}

/* ---- lower-casing ------------------------------------------------------- */

void analyzer_py_lower(AnalyzerText *t, const char *s, size_t len)
{
    text_reserve(t, len + 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            text_putc(t, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
            i++;
            continue;
        }
        size_t start = i;
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        if (cp == 0x212A) /* KELVIN SIGN */
            text_putc(t, 'k');
        else if (cp == 0x0130) /* LATIN CAPITAL LETTER I WITH DOT ABOVE */
            analyzer_text_append(t, "i\xcc\x87", 3);
        else
            analyzer_text_append(t, s + start, i - start);
    }
}
