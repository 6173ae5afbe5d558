/*
 * norn.c — the `norn` command-line client, on the generated stubs.
 *
 * Exit codes scripts can rely on:
 *   0  success (health: SERVING)
 *   1  the server answered with an error status
 *   2  usage error
 *   3  the server could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
 *   4  health: NOT_SERVING (or the service is unknown)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "rpc.h"

enum { EXIT_OK = 0, EXIT_RPC = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_NOT_SERVING = 4 };

typedef struct Globals {
    const char *server;
    RpcChannelOptions chan;
    int64_t timeout_ms;
    int json;
} Globals;

static void usage(FILE *out)
{
    fputs("usage: norn [global options] COMMAND [command options]\n"
          "\n"
          "Talks to a Norn server (nornd) over gRPC.\n"
          "\n"
          "commands:\n"
          "  health [--service NAME] [--watch]   ask the server's health (grpc.health.v1)\n"
          "\n"
          "global options:\n"
          "  --server ADDR        nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY        API key (NORN_API_KEY)\n"
          "  --tls                connect with TLS (system roots unless --ca-file)\n"
          "  --ca-file FILE       PEM roots that sign the server's certificate\n"
          "  --cert FILE          client certificate for mTLS (with --key)\n"
          "  --key FILE           client key for mTLS\n"
          "  --server-name NAME   name to check in the server's certificate\n"
          "  --timeout-ms N       deadline per call (default 10000; 0 = none)\n"
          "  -o, --output FORMAT  table (default) or json\n"
          "  -h, --help           this text\n"
          "\n"
          "exit codes: 0 ok, 1 error status from the server, 2 usage, 3 server unreachable,\n"
          "4 not serving\n",
          out);
}

static int exit_for(RpcCode code)
{
    if (code == RPC_OK)
        return EXIT_OK;
    if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED)
        return EXIT_UNREACHABLE;
    return EXIT_RPC;
}

static int report_error(const char *what, const RpcStatus *st)
{
    fprintf(stderr, "norn: %s: %s: %s\n", what, rpc_code_name(st->code),
            st->message ? st->message : "");
    return exit_for(st->code);
}

static const char *serving_name(Grpc__Health__V1__HealthCheckResponse__ServingStatus s)
{
    switch (s) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
    }
}

static void print_status(const Globals *g, const char *service,
                         Grpc__Health__V1__HealthCheckResponse__ServingStatus s)
{
    if (g->json)
        printf("{\"service\":\"%s\",\"status\":\"%s\"}\n", service, serving_name(s));
    else
        printf("%s\n", serving_name(s));
    fflush(stdout);
}

static int cmd_health(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"service", required_argument, NULL, 's'},
        {"watch", no_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *service = "";
    int watch = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "s:wh", opts, NULL)) != -1) {
        switch (opt) {
        case 's': service = optarg; break;
        case 'w': watch = 1; break;
        case 'h':
            puts("usage: norn health [--service NAME] [--watch]\n"
                 "  Prints SERVING or NOT_SERVING for the server (or one service).\n"
                 "  --watch streams every change until the server goes away.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    RpcCallOptions co = {.timeout_ms = g->timeout_ms};
    RpcStatus st;
    if (!watch) {
        Grpc__Health__V1__HealthCheckResponse *resp = NULL;
        RpcCode code = grpc__health__v1__health__check__call(ch, &req, &resp, &co, &st);
        int rc;
        if (code == RPC_OK) {
            print_status(g, service, resp->status);
            rc = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                     ? EXIT_OK
                     : EXIT_NOT_SERVING;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else if (code == RPC_NOT_FOUND) {
            print_status(g, service,
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
            rc = EXIT_NOT_SERVING;
        } else {
            rc = report_error("health", &st);
        }
        rpc_status_clear(&st);
        return rc;
    }
    co.timeout_ms = 0; /* a watch lasts until the server ends it */
    RpcClientCall *c = grpc__health__v1__health__watch__start(ch, &req, &co);
    if (!c) {
        fprintf(stderr, "norn: health: cannot start the call\n");
        return EXIT_RPC;
    }
    Grpc__Health__V1__HealthCheckResponse *msg;
    int last = -1;
    while (grpc__health__v1__health__watch__read(c, &msg) == 1) {
        last = msg->status;
        print_status(g, service, msg->status);
        protobuf_c_message_free_unpacked(&msg->base, NULL);
    }
    RpcCode code = rpc_stream_finish(c, &st);
    int rc = report_error("health watch ended", &st);
    rpc_status_clear(&st);
    (void)code;
    /* A drain ends the stream with UNAVAILABLE after NOT_SERVING. */
    return last == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
               ? EXIT_NOT_SERVING
               : rc;
}

int main(int argc, char **argv)
{
    Globals g;
    memset(&g, 0, sizeof g);
    g.server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051";
    g.chan.api_key = getenv("NORN_API_KEY");
    g.timeout_ms = 10000;
    static const struct option opts[] = {
        {"server", required_argument, NULL, 'S'},
        {"api-key", required_argument, NULL, 'k'},
        {"tls", no_argument, NULL, 'T'},
        {"ca-file", required_argument, NULL, 'C'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'K'},
        {"server-name", required_argument, NULL, 'N'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    /* '+' stops at the command word so command options stay its own. */
    while ((opt = getopt_long(argc, argv, "+o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'S': g.server = optarg; break;
        case 'k': g.chan.api_key = optarg; break;
        case 'T': g.chan.use_tls = 1; break;
        case 'C':
            g.chan.tls_ca_file = optarg;
            g.chan.use_tls = 1;
            break;
        case 'c': g.chan.tls_cert_file = optarg; break;
        case 'K': g.chan.tls_key_file = optarg; break;
        case 'N': g.chan.tls_server_name = optarg; break;
        case 't': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || v < 0) {
                fprintf(stderr, "norn: --timeout-ms must be a whole number >= 0\n");
                return EXIT_USAGE;
            }
            g.timeout_ms = v;
            break;
        }
        case 'o':
            if (strcmp(optarg, "json") == 0)
                g.json = 1;
            else if (strcmp(optarg, "table") != 0) {
                fprintf(stderr, "norn: --output must be table or json\n");
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "health") != 0) {
        fprintf(stderr, "norn: unknown command '%s' (see norn --help)\n", cmd);
        return EXIT_USAGE;
    }
    char err[256];
    RpcChannel *ch = rpc_channel_open(g.server, &g.chan, err, sizeof err);
    if (!ch) {
        fprintf(stderr, "norn: %s\n", err);
        return EXIT_USAGE;
    }
    int rc = cmd_health(&g, ch, argc - optind, argv + optind);
    rpc_channel_close(ch);
    return rc;
}
