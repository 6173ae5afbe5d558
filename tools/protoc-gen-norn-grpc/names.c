/* names.c — see names.h. The piece transforms mirror protoc-c 1.4.1's
 * ToCamel, CamelToLower and CamelToUpper character for character; do not
 * "improve" them (e.g. by splitting acronyms), or the generated code stops
 * matching the protobuf-c headers. */
#include "names.h"

#include "strbuf.h"

#include <string.h>

/* ASCII only, unlike protoc-c's isupper(): proto identifiers are ASCII, and
 * this keeps the result independent of the locale. */
static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static char to_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static char to_lower(char c)
{
    return is_upper(c) ? (char)(c - 'A' + 'a') : c;
}

typedef void (*PieceFn)(StrBuf *out, const char *piece, size_t len);

/* ToCamel: drops underscores and upper-cases the first letter and every
 * letter that followed an underscore; everything else is kept as is. */
static void piece_camel(StrBuf *out, const char *p, size_t len)
{
    int next_upper = 1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '_') {
            next_upper = 1;
        } else if (next_upper) {
            sb_putc(out, to_upper(p[i]));
            next_upper = 0;
        } else {
            sb_putc(out, p[i]);
        }
    }
}

/* CamelToLower/CamelToUpper: an '_' goes before an upper-case letter only
 * when the previous character was not upper case, so runs of capitals stay
 * together ("HTTPRequest" -> "httprequest") and digits count as lower case
 * ("Foo2Bar" -> "foo2_bar"). Existing underscores are kept. */
static void piece_case(StrBuf *out, const char *p, size_t len, int upper)
{
    int was_upper = 1; /* no '_' before a leading capital */
    for (size_t i = 0; i < len; i++) {
        int up = is_upper(p[i]);
        if (up && !was_upper)
            sb_putc(out, '_');
        sb_putc(out, upper ? to_upper(p[i]) : to_lower(p[i]));
        was_upper = up;
    }
}

static void piece_lower(StrBuf *out, const char *p, size_t len)
{
    piece_case(out, p, len, 0);
}

static void piece_upper(StrBuf *out, const char *p, size_t len)
{
    piece_case(out, p, len, 1);
}

static char *join_pieces(const char *full_name, PieceFn fn)
{
    StrBuf out = STRBUF_INIT;
    const char *p = full_name;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len > 0) {
            if (out.len > 0)
                sb_puts(&out, "__");
            fn(&out, p, len);
        }
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    return sb_take(&out);
}

char *mangle_type_name(const char *full_name)
{
    return join_pieces(full_name, piece_camel);
}

char *mangle_lower(const char *full_name)
{
    return join_pieces(full_name, piece_lower);
}

char *mangle_upper(const char *full_name)
{
    return join_pieces(full_name, piece_upper);
}

char *mangle_c_package(const char *full_name, const char *package, const char *c_package)
{
    if (c_package == NULL)
        return xstrdup(full_name);
    /* Same string surgery as protoc-c: the package prefix is cut by length
     * and, for a file without a package, a dot is put in between. */
    size_t plen = strlen(package);
    size_t flen = strlen(full_name);
    const char *rest = full_name + (plen < flen ? plen : flen);
    return xasprintf("%s%s%s", c_package, plen == 0 ? "." : "", rest);
}

char *mangle_file_identifier(const char *filename)
{
    StrBuf out = STRBUF_INIT;
    for (const char *p = filename; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || is_upper(c) || (c >= '0' && c <= '9'))
            sb_putc(&out, c);
        else
            sb_printf(&out, "_%x", (unsigned)(unsigned char)c);
    }
    return sb_take(&out);
}

static int has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

char *mangle_strip_proto(const char *filename)
{
    size_t len = strlen(filename);
    if (has_suffix(filename, len, ".protodevel"))
        len -= strlen(".protodevel");
    else if (has_suffix(filename, len, ".proto"))
        len -= strlen(".proto");
    char *out = xmalloc(len + 1);
    memcpy(out, filename, len);
    out[len] = '\0';
    return out;
}
