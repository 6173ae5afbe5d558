/* discovery_python.c — one Python file through tree-sitter: the §8.5 facts
 * of the entry file (tools, functions, classes, imports, entry points), the
 * §8.4 "is this an agent file" test, and the credential and dangerous-default
 * findings of any file. One pre-order walk over the syntax tree; predicates
 * are not applied by the 0.20 C API, so node texts are compared here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tree_sitter/api.h>

#include "discovery_internal.h"
#include "error.h"

const TSLanguage *tree_sitter_python(void);

/* Parameter defaults that switch a safety check off. verify/verify_ssl/
 * ssl_verify/validate_certs/check_hostname=False disable TLS certificate
 * checks (requests, httpx, aiohttp, ssl); shell=True hands a string to
 * /bin/sh (subprocess); trust_remote_code=True runs code downloaded with a
 * model (transformers); allow_pickle=True lets numpy.load run pickled code. */
static const struct {
    const char *name;
    const char *value;
    const char *why;
} dangerous_defaults[] = {
    {"verify", "False", "TLS certificate verification off"},
    {"verify_ssl", "False", "TLS certificate verification off"},
    {"ssl_verify", "False", "TLS certificate verification off"},
    {"validate_certs", "False", "TLS certificate verification off"},
    {"check_hostname", "False", "TLS host name check off"},
    {"shell", "True", "commands run through the shell"},
    {"trust_remote_code", "True", "downloaded model code is executed"},
    {"allow_pickle", "True", "pickled data can execute code"},
};

/* §8.4: importing one of these marks an agent file. */
static const char *const agent_frameworks[] = {"strands", "strands_tools", "langchain", "crewai",
                                               "autogpt", "anthropic",     "openai"};

static const char *const entry_function_names[] = {"main", "run", "start", "execute"};

typedef struct Walk {
    PyAnalysis *a;
    TSNode tool_definition; /* the definition under a @tool decorator */
    int has_tool_definition;
} Walk;

/* The source text of a node; empty for a null node (an absent field). */
static const char *text(const PyAnalysis *a, TSNode n, size_t *len)
{
    if (ts_node_is_null(n)) {
        *len = 0;
        return a->src;
    }
    uint32_t start = ts_node_start_byte(n), end = ts_node_end_byte(n);
    if (end > a->len)
        end = (uint32_t)a->len;
    if (start > end)
        start = end;
    *len = end - start;
    return a->src + start;
}

static int text_is(const PyAnalysis *a, TSNode n, const char *want)
{
    size_t len;
    const char *s = text(a, n, &len);
    return !ts_node_is_null(n) && len == strlen(want) && memcmp(s, want, len) == 0;
}

static int type_is(TSNode n, const char *type)
{
    return !ts_node_is_null(n) && strcmp(ts_node_type(n), type) == 0;
}

static TSNode field(TSNode n, const char *name)
{
    return ts_node_child_by_field_name(n, name, (uint32_t)strlen(name));
}

static unsigned line_of(TSNode n)
{
    return ts_node_start_point(n).row + 1;
}

/* The characters of a string literal between its quotes; 0 for an f-string
 * with interpolations (not a constant). */
static int string_value(const PyAnalysis *a, TSNode str, const char **value, size_t *len)
{
    if (!type_is(str, "string"))
        return 0;
    uint32_t count = ts_node_child_count(str);
    if (count < 2)
        return 0;
    for (uint32_t i = 0; i < count; i++) {
        if (type_is(ts_node_child(str, i), "interpolation"))
            return 0;
    }
    uint32_t start = ts_node_end_byte(ts_node_child(str, 0));
    uint32_t end = ts_node_start_byte(ts_node_child(str, count - 1));
    if (end < start || end > a->len)
        return 0;
    *value = a->src + start;
    *len = end - start;
    return 1;
}

/* First line of the docstring of a module or block: the first statement
 * that is not a comment, if it is a plain string. Leading blank lines are
 * skipped (as inspect.cleandoc does). */
static int docstring_first_line(const PyAnalysis *a, TSNode body, const char **line, size_t *len)
{
    uint32_t count = ts_node_named_child_count(body);
    for (uint32_t i = 0; i < count; i++) {
        TSNode stmt = ts_node_named_child(body, i);
        if (type_is(stmt, "comment"))
            continue;
        if (!type_is(stmt, "expression_statement"))
            return 0;
        const char *v;
        size_t n;
        if (!string_value(a, ts_node_named_child(stmt, 0), &v, &n))
            return 0;
        while (n && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')) {
            v++;
            n--;
        }
        const char *nl = memchr(v, '\n', n);
        size_t l = nl ? (size_t)(nl - v) : n;
        while (l && (v[l - 1] == ' ' || v[l - 1] == '\t' || v[l - 1] == '\r'))
            l--;
        *line = v;
        *len = l;
        return 1;
    }
    return 0;
}

static char *node_text_copy(PyAnalysis *a, TSNode n)
{
    size_t len;
    const char *s = text(a, n, &len);
    return report_text(s, len, &a->oom);
}

static void finding(PyAnalysis *a, const char *kind, Norn__V1__FindingSeverity severity,
                    unsigned line, const char *detail)
{
    if (a->report)
        report_add_finding(a->report, kind, severity, a->rel, line, detail, &a->oom);
}

/* ---- credentials ---------------------------------------------------------- */

/* Rule 2 of discovery_secrets.c: `name = "literal"` and its variants. Rule 1
 * (formats) is reported when the walk reaches the string node itself. */
static void check_named_literal(PyAnalysis *a, const char *name, size_t name_len, TSNode value)
{
    const char *v;
    size_t n, at, match_len;
    if (!string_value(a, value, &v, &n) || secret_find_pattern(v, n, &at, &match_len))
        return;
    if (!secret_named_credential(name, name_len, v, n))
        return;
    char mask[16], detail[DISCOVERY_MAX_TEXT];
    secret_mask(mask, sizeof mask, v, n);
    snprintf(detail, sizeof detail, "Hard-coded credential in `%.*s` (%s)",
             (int)(name_len > 64 ? 64 : name_len), name, mask);
    finding(a, "POTENTIAL_CREDENTIALS", NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_MEDIUM,
            line_of(value), detail);
}

static void check_string_patterns(PyAnalysis *a, TSNode str)
{
    const char *v;
    size_t n, at, match_len;
    if (!string_value(a, str, &v, &n))
        return;
    const char *what = secret_find_pattern(v, n, &at, &match_len);
    if (!what)
        return;
    char mask[16], detail[DISCOVERY_MAX_TEXT];
    secret_mask(mask, sizeof mask, v + at, match_len);
    snprintf(detail, sizeof detail, "Hard-coded %s (%s)", what, mask);
    finding(a, "POTENTIAL_CREDENTIALS", NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH,
            line_of(str), detail);
}

/* ---- functions ------------------------------------------------------------ */

static const char *parameter_name(const PyAnalysis *a, TSNode p, size_t *len)
{
    if (type_is(p, "identifier"))
        return text(a, p, len);
    if (type_is(p, "default_parameter") || type_is(p, "typed_default_parameter")) {
        TSNode name = field(p, "name");
        return type_is(name, "identifier") ? text(a, name, len) : NULL;
    }
    if (type_is(p, "typed_parameter")) {
        TSNode inner = ts_node_named_child(p, 0);
        return type_is(inner, "identifier") ? text(a, inner, len) : NULL;
    }
    return NULL;
}

/* The parameter ends the positional ones: `*`, `*args`, `**kwargs`. */
static int ends_positional(TSNode p)
{
    if (type_is(p, "typed_parameter"))
        p = ts_node_named_child(p, 0);
    return type_is(p, "keyword_separator") || type_is(p, "list_splat_pattern") ||
           type_is(p, "dictionary_splat_pattern");
}

static void check_parameter_defaults(PyAnalysis *a, TSNode params, TSNode fn_name, int is_tool)
{
    uint32_t count = ts_node_named_child_count(params);
    for (uint32_t i = 0; i < count; i++) {
        TSNode p = ts_node_named_child(params, i);
        if (!type_is(p, "default_parameter") && !type_is(p, "typed_default_parameter"))
            continue;
        size_t name_len;
        const char *name = parameter_name(a, p, &name_len);
        TSNode value = field(p, "value");
        if (!name)
            continue;
        check_named_literal(a, name, name_len, value);
        for (size_t d = 0; d < sizeof dangerous_defaults / sizeof dangerous_defaults[0]; d++) {
            if (name_len != strlen(dangerous_defaults[d].name) ||
                memcmp(name, dangerous_defaults[d].name, name_len) != 0 ||
                !text_is(a, value, dangerous_defaults[d].value))
                continue;
            size_t fn_len;
            const char *fn = text(a, fn_name, &fn_len);
            char detail[DISCOVERY_MAX_TEXT];
            snprintf(detail, sizeof detail, "Parameter `%.*s` of %s `%.*s` defaults to %s (%s)",
                     (int)name_len, name, is_tool ? "tool" : "function",
                     (int)(fn_len > 64 ? 64 : fn_len), fn, dangerous_defaults[d].value,
                     dangerous_defaults[d].why);
            finding(a, "DANGEROUS_DEFAULT",
                    is_tool ? NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH
                            : NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_MEDIUM,
                    line_of(p), detail);
        }
    }
}

static Norn__V1__ToolInfo *new_tool(PyAnalysis *a, const char *name, size_t name_len,
                                    const char *description, size_t description_len, unsigned line,
                                    const char *origin)
{
    Norn__V1__ToolInfo *t = malloc(sizeof *t);
    if (!t) {
        a->oom = 1;
        return NULL;
    }
    norn__v1__tool_info__init(t);
    t->name = report_text(name, name_len, &a->oom);
    t->description = report_text(description, description_len, &a->oom);
    t->file = report_path(a->rel, &a->oom);
    t->origin = report_text(origin, strlen(origin), &a->oom);
    t->line = line;
    if (!t->name || !t->description || !t->file || !t->origin) {
        report_free_tool(t);
        return NULL;
    }
    return t;
}

static void add_tool(PyAnalysis *a, ToolList *list, Norn__V1__ToolInfo *t)
{
    report_append_take((void ***)&list->items, &list->n, t, report_free_tool, &a->oom);
}

static void free_function(void *f)
{
    norn__v1__function_info__free_unpacked(f, NULL);
}

static void free_class(void *c)
{
    norn__v1__class_info__free_unpacked(c, NULL);
}

static void visit_function(Walk *w, TSNode fn)
{
    PyAnalysis *a = w->a;
    TSNode name = field(fn, "name"), params = field(fn, "parameters"), body = field(fn, "body");
    int is_tool = w->has_tool_definition && ts_node_eq(fn, w->tool_definition);
    if (is_tool)
        a->looks_like_agent = 1;
    if (!ts_node_is_null(params))
        check_parameter_defaults(a, params, name, is_tool);
    if (!a->full || !a->report || ts_node_is_null(name))
        return;

    size_t name_len, doc_len = 0;
    const char *fn_name = text(a, name, &name_len), *doc = NULL;
    int has_doc = !ts_node_is_null(body) && docstring_first_line(a, body, &doc, &doc_len);
    Norn__V1__DiscoveryReport *r = a->report;

    Norn__V1__FunctionInfo *f = malloc(sizeof *f);
    if (!f) {
        a->oom = 1;
        return;
    }
    norn__v1__function_info__init(f);
    f->name = report_text(fn_name, name_len, &a->oom);
    f->description = report_text(has_doc ? doc : "", doc_len, &a->oom);
    f->file = report_path(a->rel, &a->oom);
    f->line = line_of(fn);
    f->is_async = type_is(ts_node_child(fn, 0), "async");
    report_append_take((void ***)&r->functions, &r->n_functions, f, free_function, &a->oom);

    for (size_t e = 0; e < sizeof entry_function_names / sizeof entry_function_names[0]; e++) {
        if (text_is(a, name, entry_function_names[e]))
            report_add_unique(&r->entry_points, &r->n_entry_points, entry_function_names[e],
                              strlen(entry_function_names[e]), &a->oom);
    }
    if (!is_tool)
        return;

    if (!has_doc || !doc_len) {
        doc = "No description";
        doc_len = strlen(doc);
    }
    Norn__V1__ToolInfo *t = new_tool(a, fn_name, name_len, doc, doc_len, line_of(fn), "decorated");
    if (!t)
        return;
    uint32_t count = ts_node_is_null(params) ? 0 : ts_node_named_child_count(params);
    for (uint32_t i = 0; i < count; i++) {
        TSNode p = ts_node_named_child(params, i);
        if (ends_positional(p))
            break;
        size_t len;
        const char *pname = parameter_name(a, p, &len);
        if (pname && !(len == 4 && memcmp(pname, "self", 4) == 0))
            report_append_take((void ***)&t->parameters, &t->n_parameters,
                               report_text(pname, len, &a->oom), free, &a->oom);
    }
    add_tool(a, &a->decorated, t);
}

/* @tool, @tool(...), @strands.tool, @x.tool(...) */
static int decorator_is_tool(const PyAnalysis *a, TSNode decorator)
{
    TSNode e = ts_node_named_child(decorator, 0);
    if (type_is(e, "call"))
        e = field(e, "function");
    if (type_is(e, "attribute"))
        e = field(e, "attribute");
    return type_is(e, "identifier") && text_is(a, e, "tool");
}

static void visit_decorated(Walk *w, TSNode decorated)
{
    uint32_t count = ts_node_named_child_count(decorated);
    for (uint32_t i = 0; i < count; i++) {
        TSNode d = ts_node_named_child(decorated, i);
        if (type_is(d, "decorator") && decorator_is_tool(w->a, d)) {
            w->tool_definition = field(decorated, "definition");
            w->has_tool_definition = 1;
            return;
        }
    }
}

/* ---- classes -------------------------------------------------------------- */

/* a, a.b, a.b.c: only identifiers joined by attribute access (iterative:
 * a long chain in untrusted code must not exhaust the stack) */
static int dotted_name(TSNode n)
{
    while (type_is(n, "attribute")) {
        if (!type_is(field(n, "attribute"), "identifier"))
            return 0;
        n = field(n, "object");
    }
    return type_is(n, "identifier");
}

static void visit_class(PyAnalysis *a, TSNode cls)
{
    TSNode name = field(cls, "name"), body = field(cls, "body"), bases = field(cls, "superclasses");
    if (!a->full || !a->report || ts_node_is_null(name))
        return;
    Norn__V1__ClassInfo *c = malloc(sizeof *c);
    if (!c) {
        a->oom = 1;
        return;
    }
    norn__v1__class_info__init(c);
    const char *doc = "";
    size_t doc_len = 0;
    if (!ts_node_is_null(body))
        docstring_first_line(a, body, &doc, &doc_len);
    c->name = node_text_copy(a, name);
    c->description = report_text(doc, doc_len, &a->oom);
    c->file = report_path(a->rel, &a->oom);
    c->line = line_of(cls);
    uint32_t count = ts_node_is_null(bases) ? 0 : ts_node_named_child_count(bases);
    for (uint32_t i = 0; i < count; i++) {
        TSNode b = ts_node_named_child(bases, i);
        if (type_is(b, "keyword_argument") || type_is(b, "comment"))
            continue; /* metaclass=..., not a base */
        char *base = dotted_name(b) ? node_text_copy(a, b) : report_text("unknown", 7, &a->oom);
        report_append_take((void ***)&c->bases, &c->n_bases, base, free, &a->oom);
    }
    report_append_take((void ***)&a->report->classes, &a->report->n_classes, c, free_class,
                       &a->oom);
}

/* ---- imports -------------------------------------------------------------- */

static void note_import(PyAnalysis *a, TSNode module, int relative)
{
    size_t len;
    const char *name = text(a, module, &len);
    size_t root_len = 0;
    while (root_len < len && name[root_len] != '.')
        root_len++;
    for (size_t f = 0; f < sizeof agent_frameworks / sizeof agent_frameworks[0]; f++) {
        if (!relative && root_len == strlen(agent_frameworks[f]) &&
            memcmp(name, agent_frameworks[f], root_len) == 0)
            a->looks_like_agent = 1;
    }
    if (!a->full || !a->report)
        return;
    report_add_unique(&a->report->imports, &a->report->n_imports, name, len, &a->oom);
    if (!relative)
        report_add_unique(&a->dep_roots, &a->n_dep_roots, name, root_len, &a->oom);
}

static void visit_import(PyAnalysis *a, TSNode stmt)
{
    uint32_t count = ts_node_named_child_count(stmt);
    for (uint32_t i = 0; i < count; i++) {
        TSNode n = ts_node_named_child(stmt, i);
        if (type_is(n, "aliased_import"))
            n = field(n, "name");
        if (type_is(n, "dotted_name")) {
            note_import(a, n, 0);
            if (text_is(a, n, "strands") || text_is(a, n, "strands.agent"))
                a->strands_agent = 1;
        }
    }
}

/* from X import a, b as c — X is recorded; names become "import" tools when
 * X (lower-cased) mentions tool, amadeus or langchain (§8.5). */
static void visit_import_from(PyAnalysis *a, TSNode stmt)
{
    TSNode module = field(stmt, "module_name");
    int relative = type_is(module, "relative_import");
    if (relative) {
        TSNode inner = ts_node_named_child(module, 1); /* after the import_prefix dots */
        if (!type_is(inner, "dotted_name"))
            return; /* from . import x */
        module = inner;
    }
    if (!type_is(module, "dotted_name"))
        return;
    note_import(a, module, relative);

    size_t mlen;
    const char *mname = text(a, module, &mlen);
    char lower[DISCOVERY_MAX_TEXT + 1];
    size_t n = mlen < DISCOVERY_MAX_TEXT ? mlen : DISCOVERY_MAX_TEXT;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)(mname[i] >= 'A' && mname[i] <= 'Z' ? mname[i] + 32 : mname[i]);
    lower[n] = '\0';
    int strands = !relative && (!strcmp(lower, "strands") || !strncmp(lower, "strands.agent", 13));
    if (!relative && !strncmp(lower, "strands.agent", 13))
        a->strands_agent = 1;
    int tool_module =
        strstr(lower, "tool") || strstr(lower, "amadeus") || strstr(lower, "langchain");

    uint32_t count = ts_node_named_child_count(stmt);
    for (uint32_t i = 0; i < count; i++) {
        TSNode name = ts_node_named_child(stmt, i);
        if (ts_node_eq(name, field(stmt, "module_name")))
            continue;
        if (type_is(name, "aliased_import"))
            name = field(name, "name");
        if (!type_is(name, "dotted_name"))
            continue;
        if (strands && text_is(a, name, "Agent"))
            a->strands_agent = 1;
        if (!tool_module || !a->full || !a->report)
            continue;
        size_t len;
        const char *tname = text(a, name, &len);
        char description[DISCOVERY_MAX_TEXT + 1];
        snprintf(description, sizeof description, "Imported from %.*s", (int)n, mname);
        add_tool(
            a, &a->imported,
            new_tool(a, tname, len, description, strlen(description), line_of(name), "import"));
    }
}

/* ---- calls, assignments, conditions -------------------------------------- */

/* The name a tools=[...] element stands for: foo, foo(), mod.foo, mod.foo(). */
static int tool_element_name(const PyAnalysis *a, TSNode e, const char **name, size_t *len)
{
    if (type_is(e, "call"))
        e = field(e, "function");
    if (type_is(e, "attribute"))
        e = field(e, "attribute");
    if (!type_is(e, "identifier"))
        return 0;
    *name = text(a, e, len);
    return 1;
}

static void visit_call(PyAnalysis *a, TSNode call)
{
    TSNode fn = field(call, "function"), args = field(call, "arguments");
    size_t len;
    const char *name = type_is(fn, "identifier") ? text(a, fn, &len) : NULL;
    if (name && len == 5 && memcmp(name, "Agent", 5) == 0)
        a->looks_like_agent = 1;
    if (!a->full || !a->report)
        return;
    if (name && len > 4 && memcmp(name, "use_", 4) == 0) {
        char tool[DISCOVERY_MAX_TEXT + 1], description[DISCOVERY_MAX_TEXT + 1];
        int rest = (int)(len - 4 > 64 ? 64 : len - 4);
        snprintf(tool, sizeof tool, "%.*s_tools", rest, name + 4);
        snprintf(description, sizeof description, "Tools from %.*s package", rest, name + 4);
        add_tool(a, &a->package,
                 new_tool(a, tool, strlen(tool), description, strlen(description), line_of(call),
                          "package"));
    }
    uint32_t count = type_is(args, "argument_list") ? ts_node_named_child_count(args) : 0;
    for (uint32_t i = 0; i < count; i++) {
        TSNode kw = ts_node_named_child(args, i);
        if (!type_is(kw, "keyword_argument") || !text_is(a, field(kw, "name"), "tools"))
            continue;
        TSNode list = field(kw, "value");
        if (!type_is(list, "list"))
            continue;
        uint32_t n = ts_node_named_child_count(list);
        for (uint32_t k = 0; k < n; k++) {
            TSNode e = ts_node_named_child(list, k);
            const char *tname;
            size_t tlen;
            if (tool_element_name(a, e, &tname, &tlen))
                add_tool(a, &a->external,
                         new_tool(a, tname, tlen, "External tool", 13, line_of(e), "external"));
        }
    }
}

/* keyword arguments (api_key="..."): rule 2 of the credential check */
static void visit_keyword_argument(PyAnalysis *a, TSNode kw)
{
    TSNode name = field(kw, "name");
    size_t len;
    if (type_is(name, "identifier")) {
        const char *s = text(a, name, &len);
        check_named_literal(a, s, len, field(kw, "value"));
    }
}

/* {"password": "..."} */
static void visit_pair(PyAnalysis *a, TSNode pair)
{
    const char *key;
    size_t len;
    if (string_value(a, field(pair, "key"), &key, &len))
        check_named_literal(a, key, len, field(pair, "value"));
}

static int is_module_level(TSNode assignment)
{
    TSNode stmt = ts_node_parent(assignment);
    return type_is(stmt, "expression_statement") && type_is(ts_node_parent(stmt), "module");
}

static void visit_assignment(PyAnalysis *a, TSNode asg)
{
    TSNode left = field(asg, "left"), right = field(asg, "right");
    const char *name = NULL;
    size_t len = 0;
    if (type_is(left, "identifier"))
        name = text(a, left, &len);
    else if (type_is(left, "attribute") && type_is(field(left, "attribute"), "identifier"))
        name = text(a, field(left, "attribute"), &len);
    else if (type_is(left, "subscript"))
        string_value(a, field(left, "subscript"), &name, &len); /* os.environ["X_KEY"] = ... */
    if (!name || ts_node_is_null(right))
        return;
    check_named_literal(a, name, len, right);
    if (!type_is(left, "identifier") || len != 5 || memcmp(name, "agent", 5) != 0)
        return;
    a->looks_like_agent = 1;
    if (a->full && a->report && is_module_level(asg))
        report_add_unique(&a->report->entry_points, &a->report->n_entry_points, "agent (variable)",
                          16, &a->oom);
}

/* if __name__ == "__main__": (either operand order) */
static void visit_if(PyAnalysis *a, TSNode stmt)
{
    TSNode cond = field(stmt, "condition");
    if (!type_is(cond, "comparison_operator") || ts_node_named_child_count(cond) != 2)
        return;
    TSNode left = ts_node_named_child(cond, 0), right = ts_node_named_child(cond, 1);
    if (type_is(left, "identifier") && text_is(a, left, "__name__"))
        a->looks_like_agent = 1;
    if (!type_is(ts_node_child(cond, 1), "==") || !a->full || !a->report)
        return;
    int left_is_name = text_is(a, left, "__name__"), right_is_name = text_is(a, right, "__name__");
    if (!left_is_name && !right_is_name)
        return;
    const char *v;
    size_t n;
    if (string_value(a, left_is_name ? right : left, &v, &n) && n == 8 &&
        memcmp(v, "__main__", 8) == 0)
        report_add_unique(&a->report->entry_points, &a->report->n_entry_points, "__main__", 8,
                          &a->oom);
}

static void visit(Walk *w, TSNode n)
{
    PyAnalysis *a = w->a;
    const char *type = ts_node_type(n);
    if (!a->syntax_error && (ts_node_is_missing(n) || !strcmp(type, "ERROR"))) {
        a->syntax_error = 1;
        a->syntax_error_line = line_of(n);
    }
    if (!ts_node_is_named(n))
        return;
    if (!strcmp(type, "function_definition"))
        visit_function(w, n);
    else if (!strcmp(type, "decorated_definition"))
        visit_decorated(w, n);
    else if (!strcmp(type, "class_definition"))
        visit_class(a, n);
    else if (!strcmp(type, "import_statement"))
        visit_import(a, n);
    else if (!strcmp(type, "import_from_statement") || !strcmp(type, "future_import_statement"))
        visit_import_from(a, n);
    else if (!strcmp(type, "call"))
        visit_call(a, n);
    else if (!strcmp(type, "assignment"))
        visit_assignment(a, n);
    else if (!strcmp(type, "keyword_argument"))
        visit_keyword_argument(a, n);
    else if (!strcmp(type, "pair"))
        visit_pair(a, n);
    else if (!strcmp(type, "if_statement"))
        visit_if(a, n);
    else if (!strcmp(type, "string"))
        check_string_patterns(a, n);
}

int py_analyze(PyAnalysis *a, char *err, size_t errlen)
{
    if (a->len > UINT32_MAX) {
        snprintf(err, errlen, "%s: too large to parse", a->rel);
        return NORN_ERR_EXHAUSTED;
    }
    TSParser *parser = ts_parser_new();
    if (!parser)
        return NORN_ERR_NO_MEMORY;
    if (!ts_parser_set_language(parser, tree_sitter_python())) {
        snprintf(err, errlen,
                 "tree-sitter-python grammar ABI %u not accepted by the runtime (%d..%d)",
                 ts_language_version(tree_sitter_python()),
                 TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION, TREE_SITTER_LANGUAGE_VERSION);
        ts_parser_delete(parser);
        return NORN_ERR_INTERNAL;
    }
    TSTree *tree = ts_parser_parse_string(parser, NULL, a->src, (uint32_t)a->len);
    ts_parser_delete(parser);
    if (!tree)
        return NORN_ERR_NO_MEMORY;
    TSNode root = ts_tree_root_node(tree);

    const char *doc;
    size_t doc_len;
    if (a->full && docstring_first_line(a, root, &doc, &doc_len))
        a->module_doc = report_text(doc, doc_len, &a->oom);

    Walk w = {.a = a};
    TSTreeCursor cursor = ts_tree_cursor_new(root);
    for (int done = 0; !done;) {
        visit(&w, ts_tree_cursor_current_node(&cursor));
        if (ts_tree_cursor_goto_first_child(&cursor))
            continue;
        while (!ts_tree_cursor_goto_next_sibling(&cursor)) {
            if (!ts_tree_cursor_goto_parent(&cursor)) {
                done = 1;
                break;
            }
        }
    }
    ts_tree_cursor_delete(&cursor);
    if (!a->syntax_error && ts_node_has_error(root)) {
        a->syntax_error = 1;
        a->syntax_error_line = line_of(root);
    }
    ts_tree_delete(tree);
    return a->oom ? NORN_ERR_NO_MEMORY : 0;
}

static void free_tools(ToolList *list)
{
    for (size_t i = 0; i < list->n; i++)
        report_free_tool(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

void py_analysis_release(PyAnalysis *a)
{
    free_tools(&a->decorated);
    free_tools(&a->external);
    free_tools(&a->package);
    free_tools(&a->imported);
    for (size_t i = 0; i < a->n_dep_roots; i++)
        free(a->dep_roots[i]);
    free(a->dep_roots);
    a->dep_roots = NULL;
    a->n_dep_roots = 0;
    free(a->module_doc);
    a->module_doc = NULL;
}
