/* wafer run / wafer -t: serve, or check a configuration. */
#include "commands.h"
#include "wafer/proxy.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Finds -c FILE (or -cFILE, --config FILE, --config=FILE) and --daemon. */
static int parse_args(int argc, char **argv, const char **conf, bool *daemon, bool allow_daemon)
{
    *conf = NULL;
    *daemon = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wafer: %s needs a file\n", a);
                return -1;
            }
            *conf = argv[++i];
        } else if (!strncmp(a, "-c", 2) && a[2]) {
            *conf = a + 2;
        } else if (!strncmp(a, "--config=", 9)) {
            *conf = a + 9;
        } else if (allow_daemon && !strcmp(a, "--daemon")) {
            *daemon = true;
        } else {
            fprintf(stderr, "wafer: unknown argument '%s'\n", a);
            return -1;
        }
    }
    if (!*conf) {
        fprintf(stderr, "wafer: a configuration file is needed: -c wafer.yaml\n");
        return -1;
    }
    return 0;
}

int wf_cmd_run(int argc, char **argv)
{
    const char *conf;
    bool daemon;
    if (parse_args(argc, argv, &conf, &daemon, true))
        return 2;
    return wf_server_run(conf, daemon);
}

int wf_cmd_check(int argc, char **argv)
{
    const char *conf;
    bool daemon;
    if (parse_args(argc, argv, &conf, &daemon, false))
        return 2;
    wf_conf_err_t err;
    wf_server_conf_t *sc = NULL;
    if (wf_server_conf_load(conf, &sc, &err)) {
        fprintf(stderr, "wafer: %s\n", err.msg);
        return 1;
    }
    char msg[800];
    if (wf_server_conf_check(sc, msg, sizeof(msg))) {
        fprintf(stderr, "wafer: %s\n", msg);
        wf_server_conf_free(sc);
        return 1;
    }
    wf_server_conf_free(sc);
    printf("wafer: configuration %s is valid\n", conf);
    return 0;
}
