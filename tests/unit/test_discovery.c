/* test_discovery.c — static discovery of imported agents (server/importer):
 * entry-file detection, every report field on the sample agents under
 * tests/fixtures/agents, the credential and dangerous-default findings,
 * limits and symlinks, the pyproject.toml reader, and the time taken on a
 * 5,000-line file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "discovery.h"
#include "discovery_internal.h"
#include "error.h"

#define FIXTURES NORN_AGENT_FIXTURES

static const char *const fixture_site[] = {FIXTURES "/_site-packages", NULL};

enum {
    LOCAL = NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_LOCAL,
    INSTALLED = NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_INSTALLED,
    MISSING = NORN__V1__DEPENDENCY_STATUS__DEPENDENCY_STATUS_MISSING,
    LOW = NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_LOW,
    MEDIUM = NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_MEDIUM,
    HIGH = NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH,
};

typedef struct Run {
    Norn__V1__DiscoveryReport *report;
    char *name;
    char err[1024];
    int rc;
} Run;

static Run *run_fixture(const char *fixture, const char *main_file)
{
    Run *run = calloc(1, sizeof *run);
    char root[512];
    snprintf(root, sizeof root, "%s/%s", FIXTURES, fixture);
    DiscoveryOptions opts = {.site_dirs = fixture_site};
    run->rc = discovery_run_with(&opts, root, main_file, &run->report, &run->name, run->err,
                                 sizeof run->err);
    return run;
}

static void run_free(Run *run)
{
    if (run->report)
        norn__v1__discovery_report__free_unpacked(run->report, NULL);
    free(run->name);
    free(run);
}

static void check_tool(const Norn__V1__ToolInfo *t, const char *name, const char *description,
                       const char *file, unsigned line, const char *origin, const char *params)
{
    assert_string_equal(t->name, name);
    assert_string_equal(t->description, description);
    assert_string_equal(t->file, file);
    assert_int_equal(t->line, line);
    assert_string_equal(t->origin, origin);
    char joined[256] = "";
    for (size_t i = 0; i < t->n_parameters; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "," : "",
                 t->parameters[i]);
    assert_string_equal(joined, params);
}

static void check_function(const Norn__V1__FunctionInfo *f, const char *name,
                           const char *description, const char *file, unsigned line, int is_async)
{
    assert_string_equal(f->name, name);
    assert_string_equal(f->description, description);
    assert_string_equal(f->file, file);
    assert_int_equal(f->line, line);
    assert_int_equal(f->is_async, is_async);
}

static void check_class(const Norn__V1__ClassInfo *c, const char *name, const char *description,
                        unsigned line, const char *bases)
{
    assert_string_equal(c->name, name);
    assert_string_equal(c->description, description);
    assert_int_equal(c->line, line);
    char joined[256] = "";
    for (size_t i = 0; i < c->n_bases; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "," : "",
                 c->bases[i]);
    assert_string_equal(joined, bases);
}

static void check_strings(char **items, size_t n, const char *joined_want)
{
    char joined[512] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "," : "",
                 items[i]);
    assert_string_equal(joined, joined_want);
}

static void check_dep(const Norn__V1__Dependency *d, const char *name, int status, const char *path)
{
    assert_string_equal(d->name, name);
    assert_int_equal(d->status, status);
    assert_string_equal(d->path, path);
}

static void check_finding(const Norn__V1__Finding *f, const char *kind, int severity,
                          const char *file, unsigned line, const char *detail)
{
    assert_string_equal(f->kind, kind);
    assert_int_equal(f->severity, severity);
    assert_string_equal(f->file, file);
    assert_int_equal(f->line, line);
    assert_string_equal(f->detail, detail);
}

/* ---- the sample agents ---------------------------------------------------- */

static void test_strands_agent(void **state)
{
    (void)state;
    Run *run = run_fixture("strands_agent", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    /* name: the module docstring (after a shebang and a comment) */
    assert_string_equal(run->name, "Research assistant that fetches pages and counts words.");
    assert_string_equal(r->agent_type, "Strands Agent");
    assert_string_equal(r->main_file, "agent.py");
    assert_string_equal(r->error, "");

    /* @tool functions, then tools=[...] names not already listed; the
     * strands_tools imports are those same external tools */
    assert_int_equal(r->n_tools, 4);
    check_tool(r->tools[0], "fetch_page", "Fetch a web page and return its text.", "agent.py", 13,
               "decorated", "url,timeout");
    check_tool(r->tools[1], "word_count", "No description", "agent.py", 22, "decorated", "text");
    check_tool(r->tools[2], "calculator", "External tool", "agent.py", 34, "external", "");
    check_tool(r->tools[3], "http_request", "External tool", "agent.py", 34, "external", "");

    assert_int_equal(r->n_functions, 3);
    check_function(r->functions[0], "fetch_page", "Fetch a web page and return its text.",
                   "agent.py", 13, 0);
    check_function(r->functions[1], "word_count", "", "agent.py", 22, 1);
    check_function(r->functions[2], "helper", "", "agent.py", 26, 0);

    assert_int_equal(r->n_classes, 1);
    check_class(r->classes[0], "ResearchAgent", "Wraps the Strands agent.", 30, "Agent");
    assert_string_equal(r->classes[0]->file, "agent.py");

    /* `from . import siblings` is no module name */
    check_strings(r->imports, r->n_imports, "os,requests,strands,strands_tools,helpers.text");

    /* stdlib left out; helpers/ is the repo's own; requests has a module
     * directory and strands-agents a dist-info in the site directory; the
     * requirements' -r line and git URL are not names */
    assert_int_equal(r->n_dependencies, 5);
    check_dep(r->dependencies[0], "requests", INSTALLED, "");
    check_dep(r->dependencies[1], "strands", MISSING, "");
    check_dep(r->dependencies[2], "strands_tools", MISSING, "");
    check_dep(r->dependencies[3], "helpers", LOCAL, "helpers");
    check_dep(r->dependencies[4], "strands-agents", INSTALLED, "");

    check_strings(r->entry_points, r->n_entry_points, "agent (variable),__main__");

    assert_int_equal(r->n_findings, 2);
    check_finding(r->findings[0], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: strands");
    check_finding(r->findings[1], "MISSING_TOOL_PACKAGES", LOW, "", 0,
                  "External tool packages not installed: strands_tools");
    assert_null(r->generated_task);
    run_free(run);
}

static void test_langchain_agent(void **state)
{
    (void)state;
    Run *run = run_fixture("langchain_agent", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    assert_string_equal(run->name, "Lc Helper"); /* [tool.poetry] name, Title Case */
    assert_string_equal(r->agent_type, "LangChain Agent");
    assert_string_equal(r->main_file, "main.py");
    assert_string_equal(r->error, "");

    /* tools=[...] of any call, use_<x>() packages, and §8.5's "import" rule
     * for names from a module mentioning langchain or tool */
    assert_int_equal(r->n_tools, 6);
    check_tool(r->tools[0], "search", "External tool", "main.py", 27, "external", "");
    check_tool(r->tools[1], "LookupTool", "External tool", "main.py", 27, "external", "");
    check_tool(r->tools[2], "browser_tools", "Tools from browser package", "main.py", 28, "package",
               "");
    check_tool(r->tools[3], "AgentExecutor", "Imported from langchain.agents", "main.py", 6,
               "import", "");
    check_tool(r->tools[4], "create_react_agent", "Imported from langchain.agents", "main.py", 6,
               "import", "");
    check_tool(r->tools[5], "BaseTool", "Imported from langchain_core.tools", "main.py", 7,
               "import", "");

    assert_int_equal(r->n_functions, 2);
    check_function(r->functions[0], "search", "Search the web.", "main.py", 21, 0);
    check_function(r->functions[1], "run", "", "main.py", 26, 0);

    /* Generic[T] is no plain name; metaclass= is no base */
    assert_int_equal(r->n_classes, 2);
    check_class(r->classes[0], "LookupTool", "", 13, "BaseTool,unknown");
    check_class(r->classes[1], "Planner", "", 17, "pkg.base.Base");

    check_strings(r->imports, r->n_imports, "typing,langchain.agents,langchain_core.tools,yaml");
    /* poetry's langchain is the imported langchain; python is no dependency */
    assert_int_equal(r->n_dependencies, 4);
    check_dep(r->dependencies[0], "langchain", MISSING, "");
    check_dep(r->dependencies[1], "langchain_core", MISSING, "");
    check_dep(r->dependencies[2], "yaml", MISSING, "");
    check_dep(r->dependencies[3], "PyYAML", MISSING, "");
    check_strings(r->entry_points, r->n_entry_points, "run");

    assert_int_equal(r->n_findings, 2);
    check_finding(r->findings[0], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: yaml, PyYAML");
    check_finding(r->findings[1], "MISSING_TOOL_PACKAGES", LOW, "", 0,
                  "External tool packages not installed: langchain, langchain_core");
    run_free(run);
}

static void test_pyproject_scripts_entry(void **state)
{
    (void)state;
    Run *run = run_fixture("pyproject_scripts", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    /* [project.scripts] weather_bot.cli:main -> src/weather_bot/cli.py, ahead
     * of the main.py at the root */
    assert_string_equal(r->main_file, "src/weather_bot/cli.py");
    assert_string_equal(run->name, "Weather Bot");
    assert_string_equal(r->agent_type, "Unknown");
    assert_string_equal(r->error, "");
    assert_int_equal(r->n_tools, 0);
    assert_int_equal(r->n_functions, 1);
    check_function(r->functions[0], "main", "", "src/weather_bot/cli.py", 4, 0);
    assert_int_equal(r->n_classes, 0);
    check_strings(r->imports, r->n_imports, "httpx");
    /* [project] dependencies: PEP 508 names, extras and markers dropped */
    assert_int_equal(r->n_dependencies, 2);
    check_dep(r->dependencies[0], "httpx", MISSING, "");
    check_dep(r->dependencies[1], "pydantic", MISSING, "");
    check_strings(r->entry_points, r->n_entry_points, "main");
    assert_int_equal(r->n_findings, 1);
    check_finding(r->findings[0], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: httpx, pydantic");
    run_free(run);
}

static void test_nested_agent_found_by_heuristic(void **state)
{
    (void)state;
    Run *run = run_fixture("nested", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    /* notes.py is no agent file, config.py and utils.py are excluded by
     * name, scripts/a/b/c/deep_agent.py is 5 components deep */
    assert_string_equal(r->main_file, "projects/bot/assistant.py");
    assert_string_equal(run->name, "Nested assistant");
    assert_string_equal(r->agent_type, "Unknown");
    assert_string_equal(r->error, "");
    assert_int_equal(r->n_tools, 0);
    assert_int_equal(r->n_functions, 0);
    assert_int_equal(r->n_classes, 0);
    check_strings(r->imports, r->n_imports, "openai");
    assert_int_equal(r->n_dependencies, 1);
    check_dep(r->dependencies[0], "openai", MISSING, "");
    assert_int_equal(r->n_entry_points, 0);
    assert_int_equal(r->n_findings, 2);
    check_finding(r->findings[0], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: openai");
    check_finding(r->findings[1], "NO_ENTRY_POINT", HIGH, "projects/bot/assistant.py", 0,
                  "No clear entry point found (main, run, agent variable)");
    run_free(run);
}

static void test_credentials_and_dangerous_defaults(void **state)
{
    (void)state;
    Run *run = run_fixture("secrets_agent", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    assert_string_equal(run->name, "Agent");
    assert_string_equal(r->agent_type, "Strands Agent");
    assert_string_equal(r->main_file, "agent.py");
    assert_string_equal(r->error, "");
    assert_int_equal(r->n_tools, 2);
    check_tool(r->tools[0], "fetch", "Fetch a URL.", "agent.py", 18, "decorated",
               "url,verify,timeout");
    check_tool(r->tools[1], "run_command", "Run a command.", "agent.py", 24, "decorated",
               "cmd,shell");
    assert_int_equal(r->n_functions, 4);
    check_function(r->functions[2], "connect", "", "agent.py", 29, 0);
    check_function(r->functions[3], "main", "", "agent.py", 33, 0);
    assert_int_equal(r->n_classes, 0);
    check_strings(r->imports, r->n_imports, "os,subprocess,strands");
    assert_int_equal(r->n_dependencies, 1);
    check_dep(r->dependencies[0], "strands", MISSING, "");
    check_strings(r->entry_points, r->n_entry_points, "main");

    /* Not flagged: "your-api-key" (placeholder), os.environ[...], "" ,
     * max_tokens = "1000", getenv's "" default, allow_redirects=True. No
     * value appears in full: at most 4 characters and "…". */
    assert_int_equal(r->n_findings, 11);
    check_finding(r->findings[0], "POTENTIAL_CREDENTIALS", HIGH, "agent.py", 6,
                  "Hard-coded AWS access key id (AKIA\u2026)");
    check_finding(r->findings[1], "POTENTIAL_CREDENTIALS", HIGH, "agent.py", 7,
                  "Hard-coded AWS secret access key-like value (wJal\u2026)");
    check_finding(r->findings[2], "POTENTIAL_CREDENTIALS", MEDIUM, "agent.py", 8,
                  "Hard-coded credential in `db_password` (hu\u2026)");
    check_finding(r->findings[3], "POTENTIAL_CREDENTIALS", MEDIUM, "agent.py", 13,
                  "Hard-coded credential in `client_secret` (s3cr\u2026)");
    check_finding(r->findings[4], "DANGEROUS_DEFAULT", HIGH, "agent.py", 18,
                  "Parameter `verify` of tool `fetch` defaults to False (TLS certificate "
                  "verification off)");
    check_finding(r->findings[5], "DANGEROUS_DEFAULT", HIGH, "agent.py", 24,
                  "Parameter `shell` of tool `run_command` defaults to True (commands run "
                  "through the shell)");
    check_finding(r->findings[6], "DANGEROUS_DEFAULT", MEDIUM, "agent.py", 29,
                  "Parameter `check_hostname` of function `connect` defaults to False (TLS host "
                  "name check off)");
    check_finding(r->findings[7], "POTENTIAL_CREDENTIALS", HIGH, "agent.py", 34,
                  "Hard-coded Anthropic API key (sk-a\u2026)");
    /* the other Python files are scanned for findings too */
    check_finding(r->findings[8], "POTENTIAL_CREDENTIALS", HIGH, "lib/extra.py", 1,
                  "Hard-coded GitHub token (ghp_\u2026)");
    check_finding(r->findings[9], "POTENTIAL_CREDENTIALS", HIGH, "lib/extra.py", 2,
                  "Hard-coded private key block (----\u2026)");
    check_finding(r->findings[10], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: strands");
    for (size_t i = 0; i < r->n_findings; i++) {
        assert_null(strstr(r->findings[i]->detail, "IOSFODNN"));
        assert_null(strstr(r->findings[i]->detail, "hunter"));
    }
    run_free(run);
}

static void test_syntax_error_gives_partial_report(void **state)
{
    (void)state;
    Run *run = run_fixture("syntax_error", NULL);
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    assert_string_equal(r->error, "Syntax error in agent.py near line 10");
    assert_string_equal(r->main_file, "agent.py");
    assert_string_equal(run->name, "Broken agent.");
    assert_string_equal(r->agent_type, "Strands Agent");
    /* what parses around the error is still reported */
    assert_int_equal(r->n_tools, 1);
    check_tool(r->tools[0], "ok", "No description", "agent.py", 6, "decorated", "x");
    assert_int_equal(r->n_functions, 3);
    check_function(r->functions[0], "ok", "", "agent.py", 6, 0);
    check_function(r->functions[2], "main", "", "agent.py", 14, 0);
    assert_int_equal(r->n_classes, 0);
    check_strings(r->imports, r->n_imports, "strands");
    assert_int_equal(r->n_dependencies, 1);
    check_dep(r->dependencies[0], "strands", MISSING, "");
    check_strings(r->entry_points, r->n_entry_points, "main");
    assert_int_equal(r->n_findings, 1);
    check_finding(r->findings[0], "MISSING_DEPENDENCIES", HIGH, "", 0,
                  "Missing dependencies: strands");
    run_free(run);
}

static void test_no_python_files(void **state)
{
    (void)state;
    Run *run = run_fixture("no_python", NULL);
    assert_int_equal(run->rc, NORN_ERR_NOT_FOUND);
    assert_string_equal(run->err, "No agent files detected. Available Python files: none");
    assert_null(run->report);
    assert_null(run->name);
    run_free(run);

    /* Python files, none of them an agent: listed, __init__.py left out */
    run = run_fixture("no_agent", NULL);
    assert_int_equal(run->rc, NORN_ERR_NOT_FOUND);
    assert_string_equal(run->err, "No agent files detected. Available Python files: notes.py");
    run_free(run);
}

static void test_explicit_main_file(void **state)
{
    (void)state;
    Run *run = run_fixture("strands_agent", "helpers/text.py");
    assert_int_equal(run->rc, 0);
    Norn__V1__DiscoveryReport *r = run->report;
    assert_string_equal(r->main_file, "helpers/text.py");
    assert_string_equal(run->name, "Text");
    assert_string_equal(r->agent_type, "Unknown");
    assert_int_equal(r->n_functions, 1);
    check_function(r->functions[0], "clean", "", "helpers/text.py", 1, 0);
    /* requirements.txt of the root still counts */
    assert_int_equal(r->n_dependencies, 2);
    check_dep(r->dependencies[0], "strands-agents", INSTALLED, "");
    check_dep(r->dependencies[1], "requests", INSTALLED, "");
    assert_int_equal(r->n_findings, 1);
    check_finding(r->findings[0], "NO_ENTRY_POINT", HIGH, "helpers/text.py", 0,
                  "No clear entry point found (main, run, agent variable)");
    run_free(run);

    run = run_fixture("strands_agent", "missing.py");
    assert_int_equal(run->rc, NORN_ERR_NOT_FOUND);
    assert_string_equal(run->err, "entry file not found in the agent directory: missing.py");
    run_free(run);
    run = run_fixture("strands_agent", "../secrets_agent/agent.py");
    assert_int_equal(run->rc, NORN_ERR_INVALID);
    run_free(run);
    run = run_fixture("strands_agent", "/etc/passwd");
    assert_int_equal(run->rc, NORN_ERR_INVALID);
    run_free(run);
    run = run_fixture("does_not_exist", NULL);
    assert_int_equal(run->rc, NORN_ERR_NOT_FOUND);
    assert_non_null(strstr(run->err, "agent directory not found"));
    run_free(run);
}

static void test_limits(void **state)
{
    (void)state;
    char root[512], err[512];
    snprintf(root, sizeof root, "%s/strands_agent", FIXTURES);
    Norn__V1__DiscoveryReport *r;
    char *name;
    /* 5 entries: agent.py, helpers, helpers/__init__.py, helpers/text.py,
     * requirements.txt */
    DiscoveryOptions few_files = {.max_files = 4, .site_dirs = fixture_site};
    assert_int_equal(discovery_run_with(&few_files, root, NULL, &r, &name, err, sizeof err),
                     NORN_ERR_EXHAUSTED);
    assert_string_equal(err, "more than 4 files in the agent directory");
    assert_null(r);
    few_files.max_files = 5;
    assert_int_equal(discovery_run_with(&few_files, root, NULL, &r, &name, err, sizeof err), 0);
    norn__v1__discovery_report__free_unpacked(r, NULL);
    free(name);

    DiscoveryOptions small_files = {.max_file_bytes = 100, .site_dirs = fixture_site};
    assert_int_equal(discovery_run_with(&small_files, root, "agent.py", &r, &name, err, sizeof err),
                     NORN_ERR_EXHAUSTED);
    assert_string_equal(err, "entry file agent.py: larger than the parse limit");

    /* depth 1: root and its sub-directories, not theirs (projects/bot/) */
    DiscoveryOptions shallow = {.max_depth = 1, .site_dirs = fixture_site};
    snprintf(root, sizeof root, "%s/nested", FIXTURES);
    assert_int_equal(discovery_run_with(&shallow, root, NULL, &r, &name, err, sizeof err),
                     NORN_ERR_NOT_FOUND);
    assert_string_equal(err, "No agent files detected. Available Python files: notes.py, "
                             "projects/utils.py");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_symlinks_stay_inside_root(void **state)
{
    (void)state;
    char base[] = "/tmp/test_discovery_XXXXXX";
    assert_non_null(mkdtemp(base));
    char outside[600], root[600], path[700], target[700], err[512];
    snprintf(outside, sizeof outside, "%s/outside", base);
    snprintf(root, sizeof root, "%s/agent", base);
    assert_int_equal(mkdir(outside, 0700), 0);
    assert_int_equal(mkdir(root, 0700), 0);
    snprintf(path, sizeof path, "%s/agent.py", outside);
    write_file(path, "from strands import Agent\nagent = Agent()\n");
    /* a symlinked file and a symlinked directory that both lead out */
    snprintf(target, sizeof target, "%s/main.py", root);
    assert_int_equal(symlink(path, target), 0);
    snprintf(target, sizeof target, "%s/linked", root);
    assert_int_equal(symlink(outside, target), 0);

    Norn__V1__DiscoveryReport *r;
    char *name;
    assert_int_equal(discovery_run(root, "main.py", &r, &name, err, sizeof err), NORN_ERR_INVALID);
    assert_string_equal(err, "entry file leaves the agent directory: main.py");
    assert_int_equal(discovery_run(root, NULL, &r, &name, err, sizeof err), NORN_ERR_NOT_FOUND);
    assert_string_equal(err, "No agent files detected. Available Python files: none");

    /* a symlink that stays inside root is followed */
    snprintf(path, sizeof path, "%s/real_agent.py", root);
    write_file(path, "def main():\n    pass\n");
    snprintf(target, sizeof target, "%s/main.py", root);
    assert_int_equal(unlink(target), 0);
    assert_int_equal(symlink(path, target), 0);
    assert_int_equal(discovery_run(root, NULL, &r, &name, err, sizeof err), 0);
    assert_string_equal(r->main_file, "main.py");
    assert_string_equal(name, "Main");
    check_strings(r->entry_points, r->n_entry_points, "main");
    norn__v1__discovery_report__free_unpacked(r, NULL);
    free(name);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

/* ---- credential rules ------------------------------------------------------ */

static void test_secret_patterns(void **state)
{
    (void)state;
    size_t at, len;
#define FIND(s) secret_find_pattern(s, strlen(s), &at, &len)
    assert_string_equal(FIND("key=AKIAIOSFODNN7EXAMPLE;"), "AWS access key id");
    assert_int_equal(at, 4);
    assert_int_equal(len, 20);
    assert_string_equal(FIND("ASIAABCDEFGHIJKLMNOP"), "AWS access key id");
    assert_null(FIND("AKIAIOSFODNN7EXAMPLEX")); /* 17 characters */
    assert_null(FIND("AKIAiosfodnn7example"));  /* lower case */
    assert_null(FIND("XAKIAIOSFODNN7EXAMPLE")); /* inside a word */
    assert_string_equal(FIND("xoxb-1234567890-abcdef"), "Slack token");
    assert_null(FIND("xoxb-123"));
    assert_string_equal(FIND("github_pat_11ABCDEFG0123456789_abcdefghij"), "GitHub token");
    assert_null(FIND("ghp_short"));
    assert_string_equal(FIND("sk-proj-abcdefghijklmnopqrstuv"), "OpenAI API key");
    assert_null(FIND("task-abcdefghijklmnopqrstuvwxyz")); /* "sk-" inside a word */
    assert_string_equal(
        FIND("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
        "private key block");
    /* the marker alone, as a parser that looks for keys would hold it */
    assert_null(FIND("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert_null(FIND("-----BEGIN CERTIFICATE-----"));
    /* a 40-character secret needs all of upper, lower and digits: a git
     * commit id (hex) is not one */
    assert_null(FIND("0123456789abcdef0123456789abcdef01234567"));
    assert_null(FIND("just an ordinary sentence, nothing else"));
#undef FIND
}

static void test_secret_named_credential(void **state)
{
    (void)state;
#define NAMED(n, v) secret_named_credential(n, strlen(n), v, strlen(v))
    assert_true(NAMED("api_key", "abc123def456"));
    assert_true(NAMED("OPENAI_API_KEY", "abcdefghijklmnop"));
    assert_true(NAMED("clientSecret", "s3cr3tvalue"));
    assert_true(NAMED("DB_PASSWORD", "hunter2"));
    assert_true(NAMED("passwd", "abcd"));
    assert_true(NAMED("auth_token", "t0k3n-value"));
    assert_false(NAMED("passwd", "abc")); /* too short */
    assert_false(NAMED("password", ""));  /* empty */
    assert_false(NAMED("api_key", "your-api-key"));
    assert_false(NAMED("api_key", "<API_KEY>"));
    assert_false(NAMED("api_key", "xxxxxxxxxxxxxxxx"));
    assert_false(NAMED("api_key", "${API_KEY}"));
    assert_false(NAMED("password", "change me"));
    assert_false(NAMED("max_tokens", "1000"));       /* "tokens" is not "token" */
    assert_false(NAMED("sort_key", "created_at"));   /* no digit, short */
    assert_false(NAMED("monkey", "abc123def456"));   /* last word is not key */
    assert_false(NAMED("secret_name", "prod-db-1")); /* a name, not a secret */
    /* values that name a variable or setting rather than hold a secret */
    assert_false(NAMED("ACCESS_KEY", "AWS_ACCESS_KEY_ID"));
    assert_false(NAMED("_key", "python.xml.sax.parser"));
    assert_true(NAMED("password", "correct-horse-9"));
#undef NAMED
    char out[16];
    secret_mask(out, sizeof out, "AKIAIOSFODNN7EXAMPLE", 20);
    assert_string_equal(out, "AKIA\u2026");
    secret_mask(out, sizeof out, "hunter22", 8);
    assert_string_equal(out, "hu\u2026");
    secret_mask(out, sizeof out, "abc", 3);
    assert_string_equal(out, "\u2026");
}

/* ---- the TOML subset -------------------------------------------------------- */

static void test_toml_subset(void **state)
{
    (void)state;
    static const char text[] = "# comment\n"
                               "title = \"top\" # trailing comment\n"
                               "[project]\n"
                               "name = \"my-agent\"\n"
                               "version = '1.0'\n"
                               "readme.file = \"README.md\"\n"
                               "description = \"\"\"\nline one\nline \\\"two\\\"\"\"\"\n"
                               "dependencies = [\n"
                               "  \"requests>=2\",  # why\n"
                               "  'boto3',\n"
                               "  [\"nested\"], 42,\n"
                               "]\n"
                               "escaped = \"tab\\there \\u00e9\"\n"
                               "[project.scripts]\n"
                               "run-it = \"pkg.cli:main\"\n"
                               "\"quoted key\" = \"x\"\n"
                               "[[tool.mypy.overrides]]\n"
                               "module = \"hidden\"\n"
                               "[tool.poetry.dependencies]\n"
                               "python = \"^3.11\"\n"
                               "langchain = { version = \"^0.2\", extras = [\"all\"] }\n"
                               "this line is not toml at all\n"
                               "PyYAML = \"^6\"\n"
                               "[tool.\"quoted\".x]\n"
                               "a = true\n"
                               "broken = \"unterminated\n"
                               "after = \"still read\"\n";
    TomlDoc *doc = toml_parse(text, sizeof text - 1);
    assert_non_null(doc);
    assert_string_equal(toml_get_string(doc, "", "title"), "top");
    assert_string_equal(toml_get_string(doc, "project", "name"), "my-agent");
    assert_string_equal(toml_get_string(doc, "project", "version"), "1.0");
    assert_string_equal(toml_get_string(doc, "project.readme", "file"), "README.md");
    assert_string_equal(toml_get_string(doc, "project", "description"), "line one\nline \"two\"");
    assert_string_equal(toml_get_string(doc, "project", "escaped"), "tab\there \xc3\xa9");
    const char *const *items;
    assert_int_equal(toml_get_array(doc, "project", "dependencies", &items), 2);
    assert_string_equal(items[0], "requests>=2");
    assert_string_equal(items[1], "boto3");
    assert_string_equal(toml_get_string(doc, "project.scripts", "run-it"), "pkg.cli:main");
    assert_string_equal(toml_get_string(doc, "project.scripts", "quoted key"), "x");
    assert_string_equal(toml_table_key(doc, "project.scripts", 0), "run-it");
    assert_string_equal(toml_table_key(doc, "project.scripts", 1), "quoted key");
    assert_null(toml_table_key(doc, "project.scripts", 2));
    assert_null(toml_get_string(doc, "tool.mypy.overrides", "module")); /* array table */
    assert_string_equal(toml_table_key(doc, "tool.poetry.dependencies", 0), "python");
    assert_string_equal(toml_table_key(doc, "tool.poetry.dependencies", 1), "langchain");
    assert_string_equal(toml_table_key(doc, "tool.poetry.dependencies", 2), "PyYAML");
    assert_string_equal(toml_get_string(doc, "tool.poetry.dependencies.langchain", "version"),
                        "^0.2");
    assert_null(toml_get_string(doc, "tool.quoted.x", "a")); /* a boolean, not a string */
    assert_null(toml_get_string(doc, "tool.quoted.x", "broken"));
    assert_string_equal(toml_get_string(doc, "tool.quoted.x", "after"), "still read");
    assert_int_equal(toml_get_array(doc, "project", "name", &items), 0);
    assert_null(toml_get_string(doc, "project", "absent"));
    toml_free(doc);

    /* nothing readable, still a document */
    doc = toml_parse("[[[\n= = =\n\"", 11);
    assert_non_null(doc);
    assert_null(toml_table_key(doc, "", 0));
    toml_free(doc);
}

/* ---- speed ------------------------------------------------------------------- */

static void test_time_on_5000_lines(void **state)
{
    (void)state;
    char base[] = "/tmp/test_discovery_XXXXXX";
    assert_non_null(mkdtemp(base));
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/agent.py", base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("\"\"\"Big agent.\"\"\"\nfrom strands import Agent, tool\nimport requests\n", f);
    size_t lines = 3;
    for (int i = 0; lines < 5000; i++) {
        fprintf(f,
                "\n\n@tool\ndef fetch_%d(url: str, timeout: int = 30, verify=True) -> str:\n"
                "    \"\"\"Fetch page %d.\"\"\"\n"
                "    headers = {\"User-Agent\": \"norn\", \"Accept\": \"text/html\"}\n"
                "    for attempt in range(3):\n"
                "        response = requests.get(url, headers=headers, timeout=timeout)\n"
                "        if response.ok:\n"
                "            return response.text[:1000]\n"
                "    return \"\"\n"
                "\n\nclass Helper%d(Base):\n"
                "    \"\"\"Helper %d.\"\"\"\n"
                "    def run_%d(self, x, y=None):\n"
                "        return [v * 2 for v in range(x) if v %% 3 == 0]\n",
                i, i, i, i, i);
        lines += 17;
    }
    fputs("\nagent = Agent(tools=[fetch_0])\n", f);
    fclose(f);

    Norn__V1__DiscoveryReport *r;
    char *name;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = discovery_run(base, NULL, &r, &name, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("discovery of a %zu-line file: %.1f ms\n", lines + 2, ms);
    assert_int_equal(rc, 0);
    assert_int_equal(r->n_tools, 294);
    assert_int_equal(r->n_functions, 588);
    assert_int_equal(r->n_classes, 294);
    assert_string_equal(r->error, "");
    assert_true(ms < 5000); /* generous: a loaded 2-core box under sanitizers */
    norn__v1__discovery_report__free_unpacked(r, NULL);
    free(name);
    unlink(path);
    rmdir(base);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strands_agent),
        cmocka_unit_test(test_langchain_agent),
        cmocka_unit_test(test_pyproject_scripts_entry),
        cmocka_unit_test(test_nested_agent_found_by_heuristic),
        cmocka_unit_test(test_credentials_and_dangerous_defaults),
        cmocka_unit_test(test_syntax_error_gives_partial_report),
        cmocka_unit_test(test_no_python_files),
        cmocka_unit_test(test_explicit_main_file),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_symlinks_stay_inside_root),
        cmocka_unit_test(test_secret_patterns),
        cmocka_unit_test(test_secret_named_credential),
        cmocka_unit_test(test_toml_subset),
        cmocka_unit_test(test_time_on_5000_lines),
    };
    return cmocka_run_group_tests_name("discovery", tests, NULL, NULL);
}
