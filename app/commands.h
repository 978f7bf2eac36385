/* The wafer binary's subcommands: each lives in its own file under app/ and
 * does only argument handling; the work is in the library. */
#ifndef WAFER_APP_COMMANDS_H
#define WAFER_APP_COMMANDS_H

/* Each returns the process exit code. argv[0] is the subcommand's name. */
int wf_cmd_run(int argc, char **argv);
int wf_cmd_check(int argc, char **argv); /* wafer -t -c FILE */
int wf_cmd_classify(int argc, char **argv);
int wf_cmd_extract(int argc, char **argv);
int wf_cmd_scan(int argc, char **argv);
int wf_cmd_misp(int argc, char **argv);

#endif
