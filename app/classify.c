/* wafer classify: print label probabilities for texts. */
#include "commands.h"

#include <stdio.h>

/* The inference engine is not in this build yet (issue: the inference engine). */
int wf_cmd_classify(int argc, char **argv)
{
    fprintf(stderr, "wafer classify: the inference engine is not built yet\n");
    return 2;
}
