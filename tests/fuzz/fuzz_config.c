/* Fuzzes the whole server configuration: any YAML the loader accepts goes
 * through wf_server_conf_parse (every section: listen and TLS, upstream
 * pools, limits, policy, detection, events and their sinks, admin, misp,
 * rate limits). A parse either succeeds or fails with a message that names
 * the file; it never crashes, leaks or reads past its input. */
#include "wafer/conf.h"
#include "wafer/core.h"
#include "wafer/proxy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wf_log_set_level((wf_log_level_t)(WF_LOG_ERROR + 1)); /* refusals are expected; keep the run quiet */
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    if (wf_conf_load_string("fuzz.yaml", (const char *)data, size, &c, &err))
        return 0;
    wf_server_conf_t *sc = calloc(1, sizeof(*sc));
    if (!sc)
        abort();
    int rc = wf_server_conf_parse(c, sc, &err);
    if (rc && !strstr(err.msg, "fuzz.yaml"))
        abort(); /* every refusal names the file (and line) */
    wf_server_conf_free(sc);
    wf_conf_free(c);
    return 0;
}
