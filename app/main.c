/* wafer: the command-line entry point. Thin: parse the subcommand, call it. */
#include "commands.h"
#include "wafer/common.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: wafer run -c wafer.yaml [--daemon]   serve (foreground unless --daemon)\n"
            "       wafer -t -c wafer.yaml              check a configuration and exit 0 (valid) or 1\n"
            "       wafer classify -m MODEL_DIR [--backend cpu|cuda|auto] [--threads N] [--json] [--] [TEXT...]\n"
            "                                           print label probabilities (texts from stdin if none)\n"
            "       wafer scan [-m MODEL_DIR] [--format raw|lines|jsonl|nginx|json-log] [--output jsonl|summary]\n"
            "                  [--threads N] [--backend cpu|cuda|auto] [FILE|-]...\n"
            "                                           classify requests offline: a verdict per request;\n"
            "                                           exit 0 nothing found, 1 attack found, 2 error\n"
            "       wafer extract [--format raw|lines|jsonl|nginx|json-log] [--json] [--all] [FILE|-]...\n"
            "                                           print the model input text of every inspection unit\n"
            "       wafer misp -c wafer.yaml [--rounds N] [--interval MS] [--ip A] [--host H] [--url TARGET] [--ua UA]\n"
            "                  [--sightings]             import MISP indicators now and look values up\n"
            "       wafer --help | --version\n");
}

struct command {
    const char *name;
    int (*fn)(int, char **);
};

static const struct command commands[] = {
    { "run", wf_cmd_run },
    { "classify", wf_cmd_classify },
    { "extract", wf_cmd_extract },
    { "scan", wf_cmd_scan },
    { "misp", wf_cmd_misp },
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("wafer %s\n", WF_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "-t"))
        return wf_cmd_check(argc - 1, argv + 1);
    for (size_t i = 0; i < WF_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "wafer: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
