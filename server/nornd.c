/*
 * nornd.c — wiring of the daemon's parts (see nornd.h).
 */
#include "nornd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_service.h"
#include "agent_import.h"
#include "config.h"
#include "error.h"
#include "git_import.h"
#include "health.h"
#include "log.h"
#include "norn_descriptor_set.h"
#include "norn/v1/agent_service.grpc-c.h"
#include "norn/v1/audit_service.grpc-c.h"
#include "norn/v1/config_service.grpc-c.h"
#include "norn/v1/session_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"
#include "norn/v1/swarm_service.grpc-c.h"
#include "reflection.h"
#include "registry_service.h"
#include "retention.h"
#include "run_service.h"
#include "session_service.h"
#include "store.h"
#include "watch.h"

struct Nornd {
    RpcServer *srv;
    Store *store;
    ConfigHolder *config;
    SessionService *sessions;
    WatchHub *watch;
    AdminService *admin;
    Registry *registry;
    AgentImporter *importer;
    RunService *runs;
    int git_ready; /* git_import_global_init succeeded: shut it down in nornd_free */
    Evaluator *evaluator;
    SwarmAnalyzer *swarm_analyzer;
    Retention *retention;
    Health *health;
    Reflection *reflection;
    int64_t drain_grace_ms;
};

/* Services whose RPCs are not written yet: an empty handler table answers
 * every method with UNIMPLEMENTED. */

void nornd_config_init(NorndConfig *c)
{
    memset(c, 0, sizeof *c);
    rpc_server_options_init(&c->rpc);
    c->data_dir = "./norn-data";
    c->drain_grace_ms = 10000;
    c->run_uid = -1;
    c->run_gid = -1;
    evaluator_options_default(&c->eval);
}

static int ensure_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
    }
    snprintf(err, errlen, "data dir %s: %s", path, strerror(errno ? errno : ENOTDIR));
    return -1;
}

/* The AI judge. Region: AWS_REGION, else AWS_DEFAULT_REGION, else the
 * config; endpoint: NORN_BEDROCK_ENDPOINT, else the config, else the
 * regional one. Without credentials it exists but stays off, and says so. */
static int start_evaluator(Nornd *d, const NorndConfig *c, char *err, size_t errlen)
{
    Norn__V1__Config cfg;
    config_get(d->config, &cfg);
    EvaluatorOptions o = c->eval;
    const char *region = getenv("AWS_REGION");
    if (!region || !*region)
        region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region)
        region = cfg.bedrock_region;
    const char *endpoint = getenv("NORN_BEDROCK_ENDPOINT");
    if (!endpoint || !*endpoint)
        endpoint = cfg.bedrock_endpoint;
    snprintf(o.region, sizeof o.region, "%s", region);
    snprintf(o.endpoint, sizeof o.endpoint, "%s", endpoint ? endpoint : "");
    snprintf(o.model_id, sizeof o.model_id, "%s", cfg.bedrock_model_id);
    o.batch_size = cfg.bedrock_batch_size;
    o.batch_wait_ms = cfg.bedrock_batch_wait_ms;
    EvalCredentials creds;
    evaluator_credentials_from_env(&creds);
    EvaluatorHooks hooks;
    session_service_evaluator_hooks(d->sessions, &hooks);
    d->evaluator = evaluator_new(&o, &creds, &hooks);
    memset(&creds, 0, sizeof creds);
    if (!d->evaluator) {
        snprintf(err, errlen, "cannot start the AI evaluator (model id '%s')", o.model_id);
        return -1;
    }
    session_service_set_evaluator(d->sessions, d->evaluator);
    return 0;
}

/* The executor and the run RPCs. The wrapper is built next to nornd. */
static int start_runs(Nornd *d, const NorndConfig *c, char *err, size_t errlen)
{
    char wrapper[4096];
    if (c->run_wrapper) {
        snprintf(wrapper, sizeof wrapper, "%s", c->run_wrapper);
    } else {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
            snprintf(err, errlen, "cannot find nornd's own path: %s", strerror(errno));
            return -1;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        int len = snprintf(wrapper, sizeof wrapper, "%.4000s/norn-run-wrapper", self);
        if (len < 0 || (size_t)len >= sizeof wrapper) {
            snprintf(err, errlen, "nornd's own path is too long");
            return -1;
        }
    }
    RunServiceOptions ro = {
        .data_dir = c->data_dir,
        .wrapper_path = wrapper,
        .run_uid = c->run_uid,
        .run_gid = c->run_gid,
    };
    d->runs = run_service_new(&ro, d->store, d->config, d->sessions, err, errlen);
    if (!d->runs)
        return -1;
    registry_set_runs(d->registry, d->runs);
    admin_service_set_runs(d->admin, d->runs);
    return 0;
}

Nornd *nornd_start(const NorndConfig *c, char *err, size_t errlen)
{
    if (ensure_dir(c->data_dir, err, errlen) != 0)
        return NULL;
    Nornd *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->drain_grace_ms = c->drain_grace_ms;
    char store_dir[4096];
    snprintf(store_dir, sizeof store_dir, "%s/db", c->data_dir);
    StoreOptions so;
    store_options_init(&so);
    so.sync_writes = c->sync_writes;
    if (store_open(store_dir, &so, &d->store, err, errlen) != NORN_OK) {
        nornd_free(d);
        return NULL;
    }
    Norn__V1__Config defaults, *saved = NULL;
    config_defaults(&defaults);
    int have_saved = store_config_get(d->store, &saved) == NORN_OK;
    d->config = config_holder_new(have_saved ? saved : &defaults);
    if (saved)
        norn__v1__config__free_unpacked(saved, NULL);
    d->sessions = session_service_new(d->store, d->config);
    d->watch = watch_hub_new(d->store, d->config, NULL);
    if (!d->sessions || !d->watch) {
        snprintf(err, errlen, "cannot start the session service");
        nornd_free(d);
        return NULL;
    }
    session_service_on_commit(d->sessions, watch_hub_publish, d->watch);
    session_service_set_watch(d->sessions, d->watch);
    if (start_evaluator(d, c, err, errlen) != 0) {
        nornd_free(d);
        return NULL;
    }
    d->admin = admin_service_new(d->store, d->config);
    admin_service_set_evaluator(d->admin, d->evaluator);
    d->registry = registry_new(d->store, d->config, d->sessions);
    d->swarm_analyzer = swarm_analyzer_new(d->evaluator);
    registry_set_swarm_analyzer(d->registry, d->swarm_analyzer);
    if (git_import_global_init() != 0) {
        snprintf(err, errlen, "cannot initialise libgit2");
        nornd_free(d);
        return NULL;
    }
    d->git_ready = 1;
    AgentImportOptions io = {
        .data_dir = c->data_dir,
        .max_bytes = c->import_max_bytes,
        .max_seconds = c->import_max_seconds,
    };
    d->importer = agent_importer_new(&io, d->store, d->evaluator, err, errlen);
    if (!d->importer) {
        nornd_free(d);
        return NULL;
    }
    registry_set_importer(d->registry, d->importer);
    if (start_runs(d, c, err, errlen) != 0) {
        nornd_free(d);
        return NULL;
    }
    d->health = health_new();
    d->reflection = reflection_new(norn_descriptor_set, norn_descriptor_set_count);
    if (!d->health || !d->reflection) {
        snprintf(err, errlen, "cannot index the embedded API descriptors");
        nornd_free(d);
        return NULL;
    }
    d->srv = rpc_server_create(&c->rpc, err, errlen);
    if (!d->srv) {
        nornd_free(d);
        return NULL;
    }
    const RpcService *norn_services[] = {
        &norn__v1__session_service__rpc, &norn__v1__agent_service__rpc,
        &norn__v1__swarm_service__rpc,   &norn__v1__audit_service__rpc,
        &norn__v1__config_service__rpc,  &norn__v1__stats_service__rpc,
    };
    int rc = session_service_register(d->sessions, d->srv) |
             registry_register(d->registry, d->srv) | admin_service_register(d->admin, d->srv) |
             health_register(d->health, d->srv) | reflection_register(d->reflection, d->srv);
    if (rc != 0) {
        snprintf(err, errlen, "cannot register services");
        nornd_free(d);
        return NULL;
    }
    health_set(d->health, "", HEALTH_SERVING);
    for (size_t i = 0; i < sizeof norn_services / sizeof norn_services[0]; i++) {
        health_set(d->health, norn_services[i]->name, HEALTH_SERVING);
        reflection_add_service(d->reflection, norn_services[i]->name);
    }
    reflection_add_service(d->reflection, "grpc.health.v1.Health");
    reflection_add_service(d->reflection, "grpc.reflection.v1.ServerReflection");
    reflection_add_service(d->reflection, "grpc.reflection.v1alpha.ServerReflection");
    if (rpc_server_start(d->srv, err, errlen) != 0) {
        nornd_free(d);
        return NULL;
    }
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "127.0.0.1:%d", nornd_port(d));
    run_service_set_endpoint(d->runs, endpoint);
    d->retention = retention_start(d->store, d->config, d->sessions, c->retention_interval_ms);
    return d;
}

int nornd_port(const Nornd *d)
{
    return rpc_server_port(d->srv);
}

void nornd_drain(Nornd *d)
{
    health_set_all(d->health, HEALTH_NOT_SERVING);
    int cancelled = rpc_server_shutdown(d->srv, d->drain_grace_ms);
    log_info("drained", "cancelled_calls=%d", cancelled);
}

void nornd_free(Nornd *d)
{
    if (!d)
        return;
    retention_stop(d->retention);
    /* While the server exists: import workers hold call references. */
    agent_importer_stop(d->importer);
    /* Pending AnalyzeSwarm calls hold call references: end them while the
     * RPC server still exists. */
    evaluator_stop(d->evaluator);
    rpc_server_destroy(d->srv);
    /* Before the session service, the judge and the hub: killed runs
     * complete their sessions. */
    run_service_free(d->runs);
    /* Before the hub: applying a judgement commits and publishes. */
    /* Pending analyses end (the evaluator tells them it is shutting down)
     * before the analyzer and its cache go. */
    evaluator_free(d->evaluator);
    swarm_analyzer_free(d->swarm_analyzer);
    watch_hub_free(d->watch);
    session_service_free(d->sessions);
    admin_service_free(d->admin);
    registry_free(d->registry);
    agent_importer_free(d->importer);
    if (d->git_ready)
        git_import_global_shutdown();
    config_holder_free(d->config);
    store_close(d->store);
    reflection_free(d->reflection);
    health_free(d->health);
    free(d);
}
