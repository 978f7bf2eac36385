/* wafer run / wafer -t: serve, or check a configuration. */
#include "commands.h"

#include <stdio.h>

/* The data plane is not in this build yet (issue: the data plane). */
int wf_cmd_run(int argc, char **argv)
{
    fprintf(stderr, "wafer run: the proxy is not built yet\n");
    return 2;
}

int wf_cmd_check(int argc, char **argv)
{
    fprintf(stderr, "wafer -t: configuration checking is not built yet\n");
    return 2;
}
