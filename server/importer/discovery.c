/* discovery.c — discovery_run(): walks the checked-out agent (bounded, no
 * symlinked directories), picks the entry file (§8.1 step 6, §8.3, §8.4),
 * analyses it with discovery_python.c, scans the other Python files for
 * credential and dangerous-default findings, and assembles the report:
 * dependencies, agent type, entry-point and tool findings, the agent name. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "discovery_internal.h"
#include "error.h"
#include "util.h"

#define DEFAULT_MAX_FILES 2000
#define DEFAULT_MAX_FILE_BYTES (1u << 20)
#define DEFAULT_MAX_TOTAL_BYTES (16u << 20)
#define DEFAULT_MAX_DEPTH 12
/* pyproject.toml and requirements.txt are read up to this size. */
#define MAX_MANIFEST_BYTES (256u << 10)
/* Names read from one site-packages directory. */
#define MAX_SITE_ENTRIES 20000
/* §8.4: the heuristic looks at files at most this many path components deep. */
#define HEURISTIC_MAX_COMPONENTS 4

const char *const discovery_default_site_dirs[] = {"/usr/lib/python3/dist-packages",
                                                   "/usr/local/lib/python3.11/dist-packages", NULL};

/* Python 3.11's sys.stdlib_module_names without private modules, plus
 * __future__: imports of these are never dependencies. Sorted (bsearch). */
static const char *const stdlib_modules[] = {
    "__future__",   "abc",          "aifc",         "antigravity", "argparse",    "array",
    "ast",          "asynchat",     "asyncio",      "asyncore",    "atexit",      "audioop",
    "base64",       "bdb",          "binascii",     "bisect",      "builtins",    "bz2",
    "cProfile",     "calendar",     "cgi",          "cgitb",       "chunk",       "cmath",
    "cmd",          "code",         "codecs",       "codeop",      "collections", "colorsys",
    "compileall",   "concurrent",   "configparser", "contextlib",  "contextvars", "copy",
    "copyreg",      "crypt",        "csv",          "ctypes",      "curses",      "dataclasses",
    "datetime",     "dbm",          "decimal",      "difflib",     "dis",         "distutils",
    "doctest",      "email",        "encodings",    "ensurepip",   "enum",        "errno",
    "faulthandler", "fcntl",        "filecmp",      "fileinput",   "fnmatch",     "fractions",
    "ftplib",       "functools",    "gc",           "genericpath", "getopt",      "getpass",
    "gettext",      "glob",         "graphlib",     "grp",         "gzip",        "hashlib",
    "heapq",        "hmac",         "html",         "http",        "idlelib",     "imaplib",
    "imghdr",       "imp",          "importlib",    "inspect",     "io",          "ipaddress",
    "itertools",    "json",         "keyword",      "lib2to3",     "linecache",   "locale",
    "logging",      "lzma",         "mailbox",      "mailcap",     "marshal",     "math",
    "mimetypes",    "mmap",         "modulefinder", "msilib",      "msvcrt",      "multiprocessing",
    "netrc",        "nis",          "nntplib",      "nt",          "ntpath",      "nturl2path",
    "numbers",      "opcode",       "operator",     "optparse",    "os",          "ossaudiodev",
    "pathlib",      "pdb",          "pickle",       "pickletools", "pipes",       "pkgutil",
    "platform",     "plistlib",     "poplib",       "posix",       "posixpath",   "pprint",
    "profile",      "pstats",       "pty",          "pwd",         "py_compile",  "pyclbr",
    "pydoc",        "pydoc_data",   "pyexpat",      "queue",       "quopri",      "random",
    "re",           "readline",     "reprlib",      "resource",    "rlcompleter", "runpy",
    "sched",        "secrets",      "select",       "selectors",   "shelve",      "shlex",
    "shutil",       "signal",       "site",         "smtpd",       "smtplib",     "sndhdr",
    "socket",       "socketserver", "spwd",         "sqlite3",     "sre_compile", "sre_constants",
    "sre_parse",    "ssl",          "stat",         "statistics",  "string",      "stringprep",
    "struct",       "subprocess",   "sunau",        "symtable",    "sys",         "sysconfig",
    "syslog",       "tabnanny",     "tarfile",      "telnetlib",   "tempfile",    "termios",
    "textwrap",     "this",         "threading",    "time",        "timeit",      "tkinter",
    "token",        "tokenize",     "tomllib",      "trace",       "traceback",   "tracemalloc",
    "tty",          "turtle",       "turtledemo",   "types",       "typing",      "unicodedata",
    "unittest",     "urllib",       "uu",           "uuid",        "venv",        "warnings",
    "wave",         "weakref",      "webbrowser",   "winreg",      "winsound",    "wsgiref",
    "xdrlib",       "xml",          "xmlrpc",       "zipapp",      "zipfile",     "zipimport",
    "zlib",         "zoneinfo"};

/* §8.4: never agent files. */
static const char *const not_agent_files[] = {"__init__.py",  "setup.py",  "conftest.py",
                                              "constants.py", "config.py", "utils.py",
                                              "helpers.py",   "test.py",   "tests.py"};

static const char *const fixed_entry_files[] = {"main.py", "agent.py", "app.py", "run.py",
                                                "__main__.py"};
static const char *const package_entry_files[] = {"agent.py", "main.py", "app.py"};

typedef struct StrList {
    char **items;
    size_t n;
} StrList;

typedef struct Ctx {
    DiscoveryOptions opts;
    char root[PATH_MAX]; /* realpath of root */
    StrList py_files;    /* repository-relative, sorted */
    size_t entries_seen;
    size_t bytes_read;
    StrList site_names; /* names in the site-packages directories */
    int oom;
    char *err;
    size_t errlen;
} Ctx;

/* Appends a copy of s; the callers bound how many (max_files,
 * MAX_SITE_ENTRIES). */
static void list_add(Ctx *c, StrList *l, const char *s)
{
    char *copy = strdup(s);
    char **grown = copy ? realloc(l->items, (l->n + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        c->oom = 1;
        return;
    }
    grown[l->n++] = copy;
    l->items = grown;
}

static void list_free(StrList *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* qsort() with an empty list is undefined (its items may be NULL). */
static void list_sort(StrList *l, int (*cmp)(const void *, const void *))
{
    if (l->n > 1)
        qsort(l->items, l->n, sizeof *l->items, cmp);
}

static int path_of(const Ctx *c, const char *rel, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s%s", c->root, *rel ? "/" : "", rel);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static int is_kind(const Ctx *c, const char *rel, mode_t kind)
{
    char path[PATH_MAX];
    struct stat st;
    return path_of(c, rel, path, sizeof path) == 0 && stat(path, &st) == 0 &&
           (st.st_mode & S_IFMT) == kind;
}

/* A relative path that cannot leave root by itself: not absolute, no "..". */
static int safe_relative(const char *rel)
{
    if (!*rel || rel[0] == '/')
        return 0;
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += len + (slash ? 1 : 0);
    }
    return 1;
}

/* The file exists, is regular, and (through any symlinks) stays in root. */
static int file_inside_root(const Ctx *c, const char *rel)
{
    char path[PATH_MAX], real[PATH_MAX];
    struct stat st;
    if (!safe_relative(rel) || path_of(c, rel, path, sizeof path) < 0 || !realpath(path, real) ||
        stat(real, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    size_t root_len = strlen(c->root);
    return strncmp(real, c->root, root_len) == 0 && real[root_len] == '/';
}

/* ---- the walk ------------------------------------------------------------- */

static int walk(Ctx *c, const char *rel_dir, size_t depth)
{
    char path[PATH_MAX];
    if (path_of(c, rel_dir, path, sizeof path) < 0)
        return 0;
    DIR *dir = opendir(path);
    if (!dir)
        return 0; /* unreadable sub-directory: nothing to discover there */
    StrList names = {0};
    struct dirent *de;
    while ((de = readdir(dir))) {
        /* hidden entries (.git, .venv), caches and node_modules hold no agent code */
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "__pycache__") ||
            !strcmp(de->d_name, "node_modules"))
            continue;
        if (++c->entries_seen > c->opts.max_files) {
            closedir(dir);
            list_free(&names);
            snprintf(c->err, c->errlen, "more than %zu files in the agent directory",
                     c->opts.max_files);
            return NORN_ERR_EXHAUSTED;
        }
        list_add(c, &names, de->d_name);
    }
    closedir(dir);
    list_sort(&names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0 && !c->oom; i++) {
        char rel[PATH_MAX], full[PATH_MAX];
        int n = snprintf(rel, sizeof rel, "%s%s%s", rel_dir, *rel_dir ? "/" : "", names.items[i]);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof rel || path_of(c, rel, full, sizeof full) < 0 ||
            lstat(full, &st) < 0)
            continue;
        size_t len = strlen(names.items[i]);
        if (S_ISDIR(st.st_mode) && depth < c->opts.max_depth)
            rc = walk(c, rel, depth + 1);
        else if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && len > 3 &&
                 !strcmp(names.items[i] + len - 3, ".py") && file_inside_root(c, rel))
            list_add(c, &c->py_files, rel);
    }
    list_free(&names);
    return rc;
}

/* ---- reading files -------------------------------------------------------- */

/* Reads a repository file of at most `max` bytes; NULL when absent or
 * larger. Counts towards the total. */
static char *read_rel(Ctx *c, const char *rel, size_t max, size_t *len)
{
    char path[PATH_MAX];
    if (path_of(c, rel, path, sizeof path) < 0)
        return NULL;
    char *data = read_file_limited(path, max, len);
    if (data)
        c->bytes_read += *len;
    else if (errno == ENOMEM)
        c->oom = 1;
    return data;
}

static TomlDoc *read_pyproject(Ctx *c, const char *rel_dir)
{
    char rel[PATH_MAX];
    size_t len;
    snprintf(rel, sizeof rel, "%s%spyproject.toml", rel_dir, *rel_dir ? "/" : "");
    if (!file_inside_root(c, rel))
        return NULL;
    char *text = read_rel(c, rel, MAX_MANIFEST_BYTES, &len);
    if (!text)
        return NULL;
    TomlDoc *doc = toml_parse(text, len);
    free(text);
    if (!doc)
        c->oom = 1;
    return doc;
}

/* ---- entry file ----------------------------------------------------------- */

/* First of `names` inside rel_dir that is a file in root; into out. */
static int first_existing(const Ctx *c, const char *rel_dir, const char *const *names, size_t n,
                          char *out, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(out, cap, "%s%s%s", rel_dir, *rel_dir ? "/" : "", names[i]);
        if (len > 0 && (size_t)len < cap && file_inside_root(c, out))
            return 1;
    }
    return 0;
}

/* "pkg.mod:func" -> "pkg/mod" */
static int script_module_path(const char *spec, char *out, size_t cap)
{
    while (*spec == ' ')
        spec++;
    size_t len = strcspn(spec, ": ");
    if (!len || len >= cap)
        return 0;
    for (size_t i = 0; i < len; i++)
        out[i] = spec[i] == '.' ? '/' : spec[i];
    out[len] = '\0';
    return 1;
}

static int entry_from_scripts(const Ctx *c, const TomlDoc *doc, const char *table, char *out,
                              size_t cap)
{
    const char *key;
    for (size_t i = 0; (key = toml_table_key(doc, table, i)); i++) {
        const char *spec = toml_get_string(doc, table, key);
        char module[PATH_MAX];
        if (!spec || !script_module_path(spec, module, sizeof module))
            continue;
        char src_module[PATH_MAX + 8], file[PATH_MAX + 8];
        snprintf(src_module, sizeof src_module, "src/%s.py", module);
        snprintf(file, sizeof file, "%s.py", module);
        const char *const candidates[] = {src_module, file};
        if (first_existing(c, "", candidates, 2, out, cap))
            return 1;
    }
    return 0;
}

/* §8.3 */
static int entry_from_pyproject(const Ctx *c, const TomlDoc *doc, char *out, size_t cap)
{
    if (!doc)
        return 0;
    if (entry_from_scripts(c, doc, "project.scripts", out, cap) ||
        entry_from_scripts(c, doc, "tool.poetry.scripts", out, cap))
        return 1;
    const char *const *dirs;
    size_t n = toml_get_array(doc, "tool.hatch.build.targets.wheel", "packages", &dirs);
    for (size_t i = 0; i < n; i++) {
        if (safe_relative(dirs[i]) && first_existing(c, dirs[i], package_entry_files, 3, out, cap))
            return 1;
    }
    n = toml_get_array(doc, "tool.setuptools.packages.find", "where", &dirs);
    for (size_t i = 0; i < n; i++) {
        int here = !strcmp(dirs[i], ".");
        if (!here && !safe_relative(dirs[i]))
            continue;
        /* every package directory below `where`: the walked .py files tell
         * which exist, in sorted order, without another directory scan */
        size_t prefix = here ? 0 : strlen(dirs[i]) + 1;
        for (size_t f = 0; f < c->py_files.n; f++) {
            const char *rel = c->py_files.items[f];
            if (!here && (strncmp(rel, dirs[i], prefix - 1) || rel[prefix - 1] != '/'))
                continue;
            const char *slash = strchr(rel + prefix, '/');
            if (!slash || strchr(slash + 1, '/'))
                continue; /* only <where>/<package>/<file> */
            char package[PATH_MAX];
            snprintf(package, sizeof package, "%.*s", (int)(slash - rel), rel);
            if (first_existing(c, package, package_entry_files, 3, out, cap))
                return 1;
        }
    }
    return 0;
}

static size_t components(const char *rel)
{
    size_t n = 1;
    for (; *rel; rel++)
        n += *rel == '/';
    return n;
}

static const char *base_name(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    return slash ? slash + 1 : rel;
}

static int cmp_heuristic(const void *x, const void *y)
{
    const char *a = *(char *const *)x, *b = *(char *const *)y;
    size_t ca = components(a), cb = components(b);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    int by_name = strcmp(base_name(a), base_name(b));
    return by_name ? by_name : strcmp(a, b);
}

/* §8.4: the shallowest file that passes _is_agent_file, ties by file name. */
static int entry_from_heuristic(Ctx *c, char *out, size_t cap)
{
    StrList candidates = {0};
    for (size_t i = 0; i < c->py_files.n; i++) {
        const char *rel = c->py_files.items[i];
        int excluded = components(rel) > HEURISTIC_MAX_COMPONENTS;
        for (size_t k = 0; k < sizeof not_agent_files / sizeof not_agent_files[0]; k++)
            excluded |= !strcmp(base_name(rel), not_agent_files[k]);
        if (!excluded)
            list_add(c, &candidates, rel);
    }
    list_sort(&candidates, cmp_heuristic);
    int found = 0;
    for (size_t i = 0; i < candidates.n && !found && !c->oom; i++) {
        if (c->bytes_read >= c->opts.max_total_bytes)
            break;
        size_t len;
        char *src = read_rel(c, candidates.items[i], c->opts.max_file_bytes, &len);
        if (!src)
            continue;
        PyAnalysis probe = {.rel = candidates.items[i], .src = src, .len = len};
        char ignored[128];
        if (py_analyze(&probe, ignored, sizeof ignored) == 0 && !probe.syntax_error &&
            probe.looks_like_agent) {
            snprintf(out, cap, "%s", candidates.items[i]);
            found = 1;
        }
        c->oom |= probe.oom;
        py_analysis_release(&probe);
        free(src);
    }
    list_free(&candidates);
    return found;
}

static void no_entry_message(Ctx *c)
{
    size_t used =
        (size_t)snprintf(c->err, c->errlen, "No agent files detected. Available Python files: ");
    size_t shown = 0;
    for (size_t i = 0; i < c->py_files.n && shown < 10 && used < c->errlen; i++) {
        const char *rel = c->py_files.items[i];
        if (!strcmp(base_name(rel), "__init__.py"))
            continue;
        used += (size_t)snprintf(c->err + used, c->errlen - used, "%s%s", shown ? ", " : "", rel);
        shown++;
    }
    if (!shown && used < c->errlen)
        snprintf(c->err + used, c->errlen - used, "none");
}

static int find_entry(Ctx *c, const TomlDoc *pyproject, char *out, size_t cap)
{
    if (entry_from_pyproject(c, pyproject, out, cap) ||
        first_existing(c, "", fixed_entry_files, 5, out, cap) || entry_from_heuristic(c, out, cap))
        return 0;
    if (c->oom)
        return NORN_ERR_NO_MEMORY;
    no_entry_message(c);
    return NORN_ERR_NOT_FOUND;
}

/* ---- dependencies --------------------------------------------------------- */

static int is_stdlib(const char *name)
{
    return bsearch(&name, stdlib_modules, sizeof stdlib_modules / sizeof stdlib_modules[0],
                   sizeof stdlib_modules[0], cmp_str) != NULL;
}

/* PEP 503 normalisation, with '_' as the separator: "Py-YAML.x" -> "py_yaml_x" */
static void normalize(const char *name, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        char ch = name[i];
        if (ch == '-' || ch == '_' || ch == '.') {
            if (!o || out[o - 1] != '_')
                out[o++] = '_';
        } else {
            out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
    }
    out[o] = '\0';
}

static void load_site_names(Ctx *c)
{
    const char *const *dirs = c->opts.site_dirs ? c->opts.site_dirs : discovery_default_site_dirs;
    for (size_t d = 0; dirs[d]; d++) {
        DIR *dir = opendir(dirs[d]);
        struct dirent *de;
        size_t seen = 0;
        while (dir && (de = readdir(dir)) && seen++ < MAX_SITE_ENTRIES)
            list_add(c, &c->site_names, de->d_name);
        if (dir)
            closedir(dir);
    }
}

/* Installed without importing: a module directory, .py or extension module
 * of that name, or a *.dist-info / *.egg-info of that distribution, in one
 * of the site-packages directories. */
static int installed(const Ctx *c, const char *name)
{
    char want[256], have[256];
    size_t len = strlen(name);
    normalize(name, len, want, sizeof want);
    for (size_t i = 0; i < c->site_names.n; i++) {
        const char *entry = c->site_names.items[i];
        size_t elen = strlen(entry);
        if (!strcmp(entry, name) ||
            (!strncmp(entry, name, len) && entry[len] == '.' &&
             (!strcmp(entry + len, ".py") || (elen > 3 && !strcmp(entry + elen - 3, ".so")))))
            return 1;
        int meta = (elen > 10 && !strcmp(entry + elen - 10, ".dist-info")) ||
                   (elen > 9 && !strcmp(entry + elen - 9, ".egg-info"));
        if (meta) {
            normalize(entry, strcspn(entry, "-"), have, sizeof have);
            if (!strcmp(have, want))
                return 1;
        }
    }
    return 0;
}

/* A directory or module of the agent's own repository: next to the entry
 * file, at the root, or under src/. Its relative path into `out`. */
static int local_module(const Ctx *c, const char *entry_dir, const char *name, char *out,
                        size_t cap)
{
    char dashed[256];
    snprintf(dashed, sizeof dashed, "%s", name);
    for (char *p = dashed; *p; p++)
        *p = *p == '_' ? '-' : *p;
    const char *const bases[] = {entry_dir, "", "src"};
    for (size_t b = 0; b < 3; b++) {
        if (b > 0 && !strcmp(bases[b], entry_dir))
            continue;
        const char *sep = *bases[b] ? "/" : "";
        snprintf(out, cap, "%s%s%s", bases[b], sep, name);
        if (is_kind(c, out, S_IFDIR))
            return 1;
        snprintf(out, cap, "%s%s%s", bases[b], sep, dashed);
        if (is_kind(c, out, S_IFDIR))
            return 1;
        snprintf(out, cap, "%s%s%s.py", bases[b], sep, name);
        if (file_inside_root(c, out))
            return 1;
    }
    return 0;
}

static void free_dependency(void *d)
{
    norn__v1__dependency__free_unpacked(d, NULL);
}

static void add_dependency(Ctx *c, Norn__V1__DiscoveryReport *r, const char *name, size_t n,
                           const char *entry_dir)
{
    char want[256], have[256], shown[256];
    if (!n || n >= sizeof shown)
        return;
    normalize(name, n, want, sizeof want);
    for (size_t i = 0; i < r->n_dependencies; i++) {
        const char *existing = r->dependencies[i]->name;
        normalize(existing, strlen(existing), have, sizeof have);
        if (!strcmp(have, want))
            return;
    }
    snprintf(shown, sizeof shown, "%.*s", (int)n, name);
    Norn__V1__Dependency *d = malloc(sizeof *d);
    if (!d) {
        c->oom = 1;
        return;
    }
    norn__v1__dependency__init(d);
    char local[PATH_MAX];
    d->name = report_text(shown, n, &c->oom);
    if (entry_dir && local_module(c, entry_dir, shown, local, sizeof local)) {
        d->status = NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_LOCAL;
        d->path = report_path(local, &c->oom);
    } else {
        d->status = installed(c, shown) ? NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_INSTALLED
                                        : NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_MISSING;
    }
    if (!d->name || !d->path) {
        free_dependency(d);
        c->oom = 1;
        return;
    }
    report_append_take((void ***)&r->dependencies, &r->n_dependencies, d, free_dependency, &c->oom);
}

/* The distribution name at the start of a PEP 508 requirement. */
static size_t requirement_name(const char *spec, size_t n)
{
    size_t len = 0;
    while (len < n &&
           (strchr("-_.", spec[len]) || (spec[len] >= 'a' && spec[len] <= 'z') ||
            (spec[len] >= 'A' && spec[len] <= 'Z') || (spec[len] >= '0' && spec[len] <= '9')))
        len++;
    return len;
}

static void requirements_file(Ctx *c, Norn__V1__DiscoveryReport *r, const char *rel)
{
    size_t len;
    if (!file_inside_root(c, rel))
        return;
    char *text = read_rel(c, rel, MAX_MANIFEST_BYTES, &len);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        while (n && (*line == ' ' || *line == '\t')) {
            line++;
            n--;
        }
        /* options (-r, -e, --index-url), comments, paths and URLs are not names */
        size_t token = 0;
        while (token < n && line[token] != ' ' && line[token] != '\t' && line[token] != '\r')
            token++;
        int url = 0;
        for (size_t k = 0; k + 3 <= token && !url; k++)
            url = !memcmp(line + k, "://", 3);
        if (n && !url && !strchr("-#./", *line))
            add_dependency(c, r, line, requirement_name(line, n), NULL);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
}

static void dependencies(Ctx *c, Norn__V1__DiscoveryReport *r, const PyAnalysis *a,
                         const TomlDoc *pyproject, const char *entry_dir)
{
    load_site_names(c);
    for (size_t i = 0; i < a->n_dep_roots; i++) {
        if (!is_stdlib(a->dep_roots[i]))
            add_dependency(c, r, a->dep_roots[i], strlen(a->dep_roots[i]), entry_dir);
    }
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s%srequirements.txt", entry_dir, *entry_dir ? "/" : "");
    requirements_file(c, r, rel);
    if (*entry_dir)
        requirements_file(c, r, "requirements.txt");
    const char *const *specs;
    size_t n = toml_get_array(pyproject, "project", "dependencies", &specs);
    for (size_t i = 0; i < n; i++)
        add_dependency(c, r, specs[i], requirement_name(specs[i], strlen(specs[i])), NULL);
    const char *key;
    for (size_t i = 0; (key = toml_table_key(pyproject, "tool.poetry.dependencies", i)); i++) {
        if (strcmp(key, "python") != 0)
            add_dependency(c, r, key, strlen(key), NULL);
    }
}

/* ---- the verdicts --------------------------------------------------------- */

static int contains_ci(const char *s, const char *word)
{
    for (; *s; s++) {
        size_t k = 0;
        while (word[k] && (s[k] | 0x20) == word[k])
            k++;
        if (!word[k])
            return 1;
    }
    return 0;
}

/* §8.5's order, decided from the syntax tree rather than raw text, so a
 * comment mentioning langchain does not make a LangChain agent. */
static const char *agent_type(const Norn__V1__DiscoveryReport *r, const PyAnalysis *a)
{
    if (a->strands_agent)
        return "Strands Agent";
    for (size_t i = 0; i < r->n_imports; i++) {
        if (!strncmp(r->imports[i], "langchain", 9))
            return "LangChain Agent";
    }
    for (size_t i = 0; i < r->n_imports; i++) {
        if (!strncmp(r->imports[i], "autogpt", 7))
            return "AutoGPT";
    }
    for (size_t i = 0; i < r->n_classes; i++) {
        if (contains_ci(r->classes[i]->name, "agent"))
            return "Custom Agent";
    }
    return "Unknown";
}

/* Tools in §8.5's order (decorated, external, package, import), each name
 * once: `Agent(tools=[foo])` of a @tool foo is the same tool. */
static void merge_tools(Norn__V1__DiscoveryReport *r, PyAnalysis *a)
{
    ToolList *lists[] = {&a->decorated, &a->external, &a->package, &a->imported};
    for (size_t l = 0; l < 4; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            Norn__V1__ToolInfo *t = lists[l]->items[i];
            int seen = 0;
            for (size_t k = 0; k < r->n_tools && !seen; k++)
                seen = !strcmp(r->tools[k]->name, t->name);
            if (seen)
                report_free_tool(t);
            else
                report_append_take((void ***)&r->tools, &r->n_tools, t, report_free_tool, &a->oom);
        }
        free(lists[l]->items);
        lists[l]->items = NULL;
        lists[l]->n = 0;
    }
}

static void missing_findings(Ctx *c, Norn__V1__DiscoveryReport *r)
{
    static const char *const tool_words[] = {"tool", "amadeus", "langchain", "crewai"};
    char missing[2][DISCOVERY_MAX_TEXT + 1];
    size_t used[2] = {0, 0};
    for (size_t i = 0; i < r->n_dependencies; i++) {
        const Norn__V1__Dependency *d = r->dependencies[i];
        if (d->status != NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_MISSING)
            continue;
        int tool = 0;
        for (size_t w = 0; w < 4; w++)
            tool |= contains_ci(d->name, tool_words[w]);
        int n = snprintf(missing[tool] + used[tool], sizeof missing[tool] - used[tool], "%s%s",
                         used[tool] ? ", " : "", d->name);
        used[tool] += n > 0 ? (size_t)n : 0;
        if (used[tool] >= sizeof missing[tool])
            used[tool] = sizeof missing[tool] - 1;
    }
    char detail[2 * DISCOVERY_MAX_TEXT];
    if (used[0]) {
        snprintf(detail, sizeof detail, "Missing dependencies: %s", missing[0]);
        report_add_finding(r, "MISSING_DEPENDENCIES",
                           NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH, NULL, 0, detail,
                           &c->oom);
    }
    if (used[1]) {
        snprintf(detail, sizeof detail, "External tool packages not installed: %s", missing[1]);
        report_add_finding(r, "MISSING_TOOL_PACKAGES",
                           NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_LOW, NULL, 0, detail,
                           &c->oom);
    }
}

/* Python's str.title() over ASCII, after '-' and '_' become spaces, without
 * surrounding spaces ("__main__" -> "Main"). */
static char *title_case(const char *s, size_t n)
{
    while (n && (*s == '-' || *s == '_' || *s == ' ')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == '-' || s[n - 1] == '_' || s[n - 1] == ' '))
        n--;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    int prev_letter = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i] == '-' || s[i] == '_' ? ' ' : s[i];
        int letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (letter)
            ch = (char)(prev_letter ? (ch | 0x20) : (ch & ~0x20));
        out[i] = ch;
        prev_letter = letter;
    }
    out[n] = '\0';
    return out;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* §8.4 _derive_agent_name: pyproject name near the entry file (its
 * directory, parent, grandparent, never above root), the module docstring's
 * first line (1-80 characters), or the file stem. */
static char *agent_name_raw(Ctx *c, const char *entry, const char *module_doc)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", entry);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    for (int level = 0; level < 3; level++) {
        TomlDoc *doc = read_pyproject(c, dir);
        const char *name = toml_get_string(doc, "project", "name");
        if (!name)
            name = toml_get_string(doc, "tool.poetry", "name");
        char *title = name && *name ? title_case(name, strlen(name)) : NULL;
        toml_free(doc);
        if (title)
            return title;
        if (!dir[0])
            break;
        slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            dir[0] = '\0';
    }
    if (module_doc && *module_doc && utf8_chars(module_doc) <= 80)
        return strdup(module_doc);
    const char *stem = base_name(entry);
    size_t len = strlen(stem);
    if (len > 3 && !strcmp(stem + len - 3, ".py"))
        len -= 3;
    char *title = title_case(stem, len);
    if (title && !*title) { /* "__.py": nothing left to show */
        free(title);
        title = strdup("Agent");
    }
    return title;
}

/* The name as the registry may store it: valid UTF-8, at most
 * DISCOVERY_MAX_TEXT bytes. */
static char *agent_name(Ctx *c, const char *entry, const char *module_doc)
{
    char *raw = agent_name_raw(c, entry, module_doc);
    char *name = raw ? report_text(raw, strlen(raw), &c->oom) : NULL;
    free(raw);
    return name;
}

/* ---- the run -------------------------------------------------------------- */

/* Credential and dangerous-default findings of every other Python file,
 * within the byte limits. */
static void scan_other_files(Ctx *c, Norn__V1__DiscoveryReport *r, const char *entry)
{
    for (size_t i = 0; i < c->py_files.n && !c->oom; i++) {
        const char *rel = c->py_files.items[i];
        if (!strcmp(rel, entry))
            continue;
        size_t len;
        if (c->bytes_read >= c->opts.max_total_bytes)
            break;
        char *src = read_rel(c, rel, c->opts.max_file_bytes, &len);
        if (!src)
            continue;
        PyAnalysis scan = {.rel = rel, .src = src, .len = len, .report = r};
        char ignored[128];
        py_analyze(&scan, ignored, sizeof ignored);
        c->oom |= scan.oom;
        py_analysis_release(&scan);
        free(src);
    }
}

static int analyse(Ctx *c, const char *entry, TomlDoc *pyproject,
                   Norn__V1__DiscoveryReport **report_out, char **name_out)
{
    size_t len;
    char *src = read_rel(c, entry, c->opts.max_file_bytes, &len);
    if (!src) {
        if (c->oom)
            return NORN_ERR_NO_MEMORY;
        snprintf(c->err, c->errlen, "entry file %s: %s", entry,
                 errno == EFBIG ? "larger than the parse limit" : strerror(errno));
        return errno == EFBIG ? NORN_ERR_EXHAUSTED : NORN_ERR_NOT_FOUND;
    }
    Norn__V1__DiscoveryReport *r = malloc(sizeof *r);
    if (!r) {
        free(src);
        return NORN_ERR_NO_MEMORY;
    }
    norn__v1__discovery_report__init(r);
    r->main_file = report_path(entry, &c->oom);

    PyAnalysis a = {.rel = entry, .src = src, .len = len, .full = 1, .report = r};
    int rc = py_analyze(&a, c->err, c->errlen);
    c->oom |= a.oom;
    if (rc == 0 && a.syntax_error) {
        char msg[DISCOVERY_MAX_TEXT];
        snprintf(msg, sizeof msg, "Syntax error in %.150s near line %u", entry,
                 a.syntax_error_line);
        r->error = report_text(msg, strlen(msg), &c->oom);
    }
    char entry_dir[PATH_MAX];
    snprintf(entry_dir, sizeof entry_dir, "%s", entry);
    char *slash = strrchr(entry_dir, '/');
    *(slash ? slash : entry_dir) = '\0';

    if (rc == 0) {
        merge_tools(r, &a);
        scan_other_files(c, r, entry);
        dependencies(c, r, &a, pyproject, entry_dir);
        missing_findings(c, r);
        const char *type = agent_type(r, &a);
        r->agent_type = report_text(type, strlen(type), &c->oom);
        if (!r->n_entry_points)
            report_add_finding(r, "NO_ENTRY_POINT",
                               NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH, entry, 0,
                               "No clear entry point found (main, run, agent variable)", &c->oom);
        if (!strcmp(type, "Strands Agent") && !r->n_tools)
            report_add_finding(r, "NO_TOOLS", NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_MEDIUM,
                               entry, 0, "Strands agent with no @tool decorated functions",
                               &c->oom);
        *name_out = agent_name(c, entry, a.module_doc);
        c->oom |= !*name_out;
    }
    py_analysis_release(&a);
    free(src);
    if (rc == 0 && c->oom)
        rc = NORN_ERR_NO_MEMORY;
    if (rc < 0) {
        norn__v1__discovery_report__free_unpacked(r, NULL);
        free(*name_out);
        *name_out = NULL;
        return rc;
    }
    *report_out = r;
    return 0;
}

int discovery_run_with(const DiscoveryOptions *opts, const char *root, const char *main_file,
                       Norn__V1__DiscoveryReport **report_out, char **name_out, char *err,
                       size_t errlen)
{
    *report_out = NULL;
    *name_out = NULL;
    Ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NORN_ERR_NO_MEMORY;
    if (opts)
        c->opts = *opts;
    c->opts.max_files = c->opts.max_files ? c->opts.max_files : DEFAULT_MAX_FILES;
    c->opts.max_file_bytes =
        c->opts.max_file_bytes ? c->opts.max_file_bytes : DEFAULT_MAX_FILE_BYTES;
    c->opts.max_total_bytes =
        c->opts.max_total_bytes ? c->opts.max_total_bytes : DEFAULT_MAX_TOTAL_BYTES;
    c->opts.max_depth = c->opts.max_depth ? c->opts.max_depth : DEFAULT_MAX_DEPTH;
    c->err = err;
    c->errlen = errlen;

    int rc;
    struct stat st;
    TomlDoc *pyproject = NULL;
    char entry[PATH_MAX];
    if (!root || !realpath(root, c->root) || stat(c->root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "agent directory not found: %s", root ? root : "(null)");
        rc = NORN_ERR_NOT_FOUND;
        goto out;
    }
    rc = walk(c, "", 0);
    if (rc < 0)
        goto out;
    list_sort(&c->py_files, cmp_str);
    pyproject = read_pyproject(c, "");
    if (main_file && *main_file) {
        if (!safe_relative(main_file) || strlen(main_file) >= sizeof entry) {
            snprintf(err, errlen, "entry file must be a relative path inside the agent: %s",
                     main_file);
            rc = NORN_ERR_INVALID;
            goto out;
        }
        char path[PATH_MAX];
        if (path_of(c, main_file, path, sizeof path) < 0 || stat(path, &st) < 0 ||
            !S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "entry file not found in the agent directory: %s", main_file);
            rc = NORN_ERR_NOT_FOUND;
            goto out;
        }
        if (!file_inside_root(c, main_file)) {
            snprintf(err, errlen, "entry file leaves the agent directory: %s", main_file);
            rc = NORN_ERR_INVALID;
            goto out;
        }
        snprintf(entry, sizeof entry, "%s", main_file);
    } else if ((rc = find_entry(c, pyproject, entry, sizeof entry)) < 0) {
        goto out;
    }
    rc = c->oom ? NORN_ERR_NO_MEMORY : analyse(c, entry, pyproject, report_out, name_out);
out:
    if (rc == NORN_ERR_NO_MEMORY)
        snprintf(err, errlen, "out of memory during discovery");
    toml_free(pyproject);
    list_free(&c->py_files);
    list_free(&c->site_names);
    free(c);
    return rc;
}

int discovery_run(const char *root, const char *main_file, Norn__V1__DiscoveryReport **report_out,
                  char **name_out, char *err, size_t errlen)
{
    return discovery_run_with(NULL, root, main_file, report_out, name_out, err, errlen);
}
