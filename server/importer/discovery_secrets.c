/* discovery_secrets.c — the credential rules of discovery's
 * POTENTIAL_CREDENTIALS finding.
 *
 * Two rules, both on string literals only (so `os.environ[...]` and
 * `os.getenv(...)` never count):
 *  1. known token formats anywhere in a literal: AWS access key ids
 *     (AKIA/ASIA + 16 upper-case letters or digits), private-key blocks
 *     (the BEGIN line and 32+ base64 characters after it),
 *     GitHub (ghp_/gho_/ghu_/ghs_/ghr_ + 36, github_pat_ + 22), Slack
 *     (xoxb-/xoxa-/xoxp-/xoxr-/xoxs-), Anthropic (sk-ant-) and OpenAI (sk-)
 *     keys, and a literal that is exactly 40 characters of [A-Za-z0-9/+]
 *     with upper case, lower case and digits (an AWS secret access key);
 *  2. a literal assigned to (or passed as, or defaulting) a name whose last
 *     word is key/token/secret/password/passwd/pwd/passphrase/credential(s),
 *     or that contains "password", "passwd", "apikey" or "api_key" — unless
 *     the value is a placeholder: empty, with white space, "<...>", "{...}",
 *     "$VAR", or containing your/xxx/changeme/replace/placeholder/dummy/
 *     example/sample/fake/todo/"..."/"***", or a name rather than a secret
 *     (letters joined by '_', '.' or '-', no digit: "AWS_ACCESS_KEY_ID" is
 *     the variable to read, not the key). Key and token names further need
 *     a value of 16+ characters, or 8+ with both letters and digits, so that
 *     `sort_key = "name"` or `max_tokens = "1000"` stay quiet; password-like
 *     names need 4+ characters.
 */
#include <ctype.h>
#include <string.h>

#include "discovery_internal.h"

static int is_upper_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
    return isalnum((unsigned char)c) != 0;
}

/* Count of characters from s[i] on that satisfy `ok`, up to n. */
static size_t run_of(const char *s, size_t i, size_t n, const char *extra)
{
    size_t k = i;
    while (k < n && (is_alnum(s[k]) || (extra && s[k] && strchr(extra, s[k]))))
        k++;
    return k - i;
}

static int has_prefix(const char *s, size_t i, size_t n, const char *prefix)
{
    size_t len = strlen(prefix);
    return n - i >= len && memcmp(s + i, prefix, len) == 0;
}

static int aws_secret_like(const char *s, size_t n)
{
    int upper = 0, lower = 0, digit = 0;
    if (n != 40)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            upper = 1;
        else if (c >= 'a' && c <= 'z')
            lower = 1;
        else if (c >= '0' && c <= '9')
            digit = 1;
        else if (c != '/' && c != '+')
            return 0;
    }
    return upper && lower && digit;
}

const char *secret_find_pattern(const char *s, size_t n, size_t *at, size_t *match_len)
{
    if (aws_secret_like(s, n)) {
        *at = 0;
        *match_len = n;
        return "AWS secret access key-like value";
    }
    for (size_t i = 0; i < n; i++) {
        int boundary = i == 0 || !is_alnum(s[i - 1]);
        *at = i;
        if (boundary && (has_prefix(s, i, n, "AKIA") || has_prefix(s, i, n, "ASIA"))) {
            size_t k = i + 4, count = 0;
            while (k < n && is_upper_alnum(s[k]) && count < 17) {
                k++;
                count++;
            }
            if (count == 16) {
                *match_len = 20;
                return "AWS access key id";
            }
        }
        if (has_prefix(s, i, n, "-----BEGIN ")) {
            const char *line_end = memchr(s + i, '\n', n - i);
            const char *stop = line_end ? line_end : s + n;
            for (const char *p = s + i; p + 16 <= stop; p++) {
                if (memcmp(p, "PRIVATE KEY-----", 16) != 0)
                    continue;
                /* a key, not just the marker a parser looks for: base64 follows */
                size_t body = (size_t)(p + 16 - s), base64 = 0;
                while (body < n && base64 < 32) {
                    char ch = s[body++];
                    if (is_alnum(ch) || ch == '+' || ch == '/')
                        base64++;
                    else if (ch != '\n' && ch != '\r' && ch != ' ' && ch != '\\')
                        break;
                }
                if (base64 >= 32) {
                    *match_len = (size_t)(p + 16 - (s + i));
                    return "private key block";
                }
            }
        }
        if (!boundary)
            continue;
        static const char *const github[] = {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"};
        for (size_t g = 0; g < sizeof github / sizeof github[0]; g++) {
            if (has_prefix(s, i, n, github[g]) && run_of(s, i + 4, n, NULL) >= 36) {
                *match_len = 4 + run_of(s, i + 4, n, NULL);
                return "GitHub token";
            }
        }
        if (has_prefix(s, i, n, "github_pat_") && run_of(s, i + 11, n, "_") >= 22) {
            *match_len = 11 + run_of(s, i + 11, n, "_");
            return "GitHub token";
        }
        if (has_prefix(s, i, n, "xox") && n - i > 4 && strchr("baprs", s[i + 3]) && s[i + 3] &&
            s[i + 4] == '-' && run_of(s, i + 5, n, "-") >= 10) {
            *match_len = 5 + run_of(s, i + 5, n, "-");
            return "Slack token";
        }
        if (has_prefix(s, i, n, "sk-ant-") && run_of(s, i + 7, n, "-_") >= 20) {
            *match_len = 7 + run_of(s, i + 7, n, "-_");
            return "Anthropic API key";
        }
        if (has_prefix(s, i, n, "sk-") && run_of(s, i + 3, n, "-_") >= 20) {
            *match_len = 3 + run_of(s, i + 3, n, "-_");
            return "OpenAI API key";
        }
    }
    return NULL;
}

/* The name's words, lower-cased, split at '_', '-', '.' and camelCase humps;
 * returns the last word in `last` and the whole lower-cased name in `lower`. */
static void name_words(const char *name, size_t n, char *lower, size_t lower_cap, char *last,
                       size_t last_cap)
{
    size_t lo = 0, la = 0;
    for (size_t i = 0; i < n && lo + 1 < lower_cap; i++) {
        char c = name[i];
        int hump = i > 0 && isupper((unsigned char)c) && islower((unsigned char)name[i - 1]);
        if (c == '_' || c == '-' || c == '.' || hump)
            la = 0;
        char l = (char)tolower((unsigned char)c);
        lower[lo++] = l;
        if (c != '_' && c != '-' && c != '.' && la + 1 < last_cap)
            last[la++] = l;
    }
    lower[lo] = '\0';
    last[la] = '\0';
}

static int contains_ci(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && tolower((unsigned char)hay[i + k]) == needle[k])
            k++;
        if (k == m)
            return 1;
    }
    return 0;
}

static int not_a_secret(const char *v, size_t n)
{
    static const char *const words[] = {
        "your",  "xxx",     "changeme", "change_me", "change-me", "replace", "placeholder",
        "dummy", "example", "sample",   "fake",      "todo",      "...",     "***"};
    if (n == 0 || v[0] == '$' || v[0] == '<' || v[0] == '{')
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)v[i]) || v[i] == '{' || v[i] == '}')
            return 1;
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        if (contains_ci(v, n, words[w]))
            return 1;
    }
    int separators = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '_' || v[i] == '.' || v[i] == '-')
            separators++;
        else if (!isalpha((unsigned char)v[i]))
            return 0;
    }
    return separators > 0; /* an identifier or dotted name */
}

int secret_named_credential(const char *name, size_t name_len, const char *value, size_t value_len)
{
    char lower[128], last[64];
    name_words(name, name_len, lower, sizeof lower, last, sizeof last);
    size_t lower_len = strlen(lower);
    int password_like = !strcmp(last, "password") || !strcmp(last, "passwd") ||
                        !strcmp(last, "pwd") || !strcmp(last, "passphrase") ||
                        contains_ci(lower, lower_len, "password") ||
                        contains_ci(lower, lower_len, "passwd");
    int key_like = !strcmp(last, "key") || !strcmp(last, "apikey") || !strcmp(last, "token") ||
                   !strcmp(last, "secret") || !strcmp(last, "credential") ||
                   !strcmp(last, "credentials") || contains_ci(lower, lower_len, "apikey") ||
                   contains_ci(lower, lower_len, "api_key");
    if ((!password_like && !key_like) || not_a_secret(value, value_len))
        return 0;
    if (password_like)
        return value_len >= 4;
    int letters = 0, digits = 0;
    for (size_t i = 0; i < value_len; i++) {
        letters |= isalpha((unsigned char)value[i]) != 0;
        digits |= isdigit((unsigned char)value[i]) != 0;
    }
    return value_len >= 16 || (value_len >= 8 && letters && digits);
}

void secret_mask(char *out, size_t cap, const char *value, size_t n)
{
    /* reveal at most 4 characters, and never more than a quarter of it */
    size_t keep = n / 4 < 4 ? n / 4 : 4;
    for (size_t i = 0; i < keep; i++) {
        if ((unsigned char)value[i] >= 0x80) { /* stay ASCII: never split UTF-8 */
            keep = i;
            break;
        }
    }
    if (cap < keep + 4) {
        if (cap)
            out[0] = '\0';
        return;
    }
    memcpy(out, value, keep);
    memcpy(out + keep, "\xe2\x80\xa6", 4); /* "…" and the NUL */
}
