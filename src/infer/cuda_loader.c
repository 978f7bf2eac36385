/* Loads the CUDA module (wafer-cuda.so) on first need; see infer/cuda_module.h. */
#ifdef WAFER_HAVE_CUDA
#include "infer/cuda_module.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WAFER_CUDA_LIBDIR
#error "WAFER_CUDA_LIBDIR (the install dir of wafer-cuda.so) must be defined by the build"
#endif

static const wf_cuda_host_t g_host = {
    WF_CUDA_MODULE_ABI,
    wf_logv,
    wf_log_get_level,
    wf_arch_dims,
    wf_model_get_config,
    wf_model_get_weights_refs,
    wf_tensor_to_f32,
    wf_ring_get_opts,
    wf_ring_get_region,
    wf_ring_consumed,
    wf_ring_status,
    wf_ring_layout,
    wf_ring_region_host,
    wf_ring_region_device,
    wf_session_backend,
    wf_session_backend_ops,
    wf_session_backend_state,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const wf_cuda_module_t *g_mod;
static char g_why[512];

/* dlopen + entry point of one path: 1 loaded, 0 failed (reason in g_why). */
static int try_load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_why, sizeof(g_why), "cannot load the CUDA module: %s", e ? e : path);
        return 0;
    }
    wf_cuda_module_get_fn get = (wf_cuda_module_get_fn)dlsym(h, WF_CUDA_MODULE_ENTRY);
    const wf_cuda_module_t *m = get ? get(&g_host) : NULL;
    if (!m || m->abi != WF_CUDA_MODULE_ABI) {
        snprintf(g_why, sizeof(g_why), "the CUDA module %s is not this version of wafer's (%s)", path,
                 get ? "interface version differs" : "no " WF_CUDA_MODULE_ENTRY);
        dlclose(h);
        return 0;
    }
    g_mod = m; /* never unloaded: sessions and regions may outlive any caller */
    return 1;
}

static void load_once(void)
{
    const char *env = getenv("WAFER_CUDA_MODULE");
    if (env && *env) {
        try_load(env);
        return;
    }
    /* Next to the executable (a build tree, a bundle), then the install dir. */
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof(path), "%s/" WF_CUDA_MODULE_NAME, exe);
            if (access(path, F_OK) == 0)
                if (try_load(path))
                    return;
        }
    }
    const char *inst = WAFER_CUDA_LIBDIR "/" WF_CUDA_MODULE_NAME;
    if (access(inst, F_OK) == 0) {
        try_load(inst);
        return;
    }
    if (!g_why[0])
        snprintf(g_why, sizeof(g_why),
                 "the CUDA module " WF_CUDA_MODULE_NAME " was found neither next to the executable nor in "
                 WAFER_CUDA_LIBDIR " (set WAFER_CUDA_MODULE to its path)");
}

const wf_cuda_module_t *wf_cuda_module(char *why, size_t whylen)
{
    pthread_once(&g_once, load_once);
    if (!g_mod && why && whylen)
        snprintf(why, whylen, "%s", g_why);
    return g_mod;
}

int wf_cuda_probe(char *why, size_t whylen)
{
    const wf_cuda_module_t *m = wf_cuda_module(why, whylen);
    return m ? m->probe(why, whylen) : 0;
}

uint64_t wf_cuda_host_calls(void)
{
    pthread_once(&g_once, load_once);
    return g_mod ? g_mod->host_calls() : 0;
}
#endif
