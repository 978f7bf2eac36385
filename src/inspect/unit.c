/* Units: kind and flag names, the fast-path rule and the model text
 * ("wafer-unit-v1"). docs/inspection.md explains each rule. */
#include "wafer/inspect.h"

#include <stdio.h>

static const char *const kind_names[WF_UNIT__COUNT] = {
    [WF_UNIT_PATH] = "path",           [WF_UNIT_SEGMENT] = "segment", [WF_UNIT_QUERY] = "query",
    [WF_UNIT_FORM] = "form",           [WF_UNIT_JSON] = "json",       [WF_UNIT_MULTIPART] = "multipart",
    [WF_UNIT_FILENAME] = "filename",   [WF_UNIT_COOKIE] = "cookie",   [WF_UNIT_HEADER] = "header",
    [WF_UNIT_BODY] = "body",
};

const char *wf_unit_kind_name(wf_unit_kind_t k)
{
    return (unsigned)k < WF_UNIT__COUNT ? kind_names[k] : "unknown";
}

static const struct {
    uint32_t bit;
    const char *name;
} flag_names[] = {
    { WF_UNIT_F_MULTI_DECODED, "multi_decoded" }, { WF_UNIT_F_DECODE_LIMIT, "decode_limit" },
    { WF_UNIT_F_PCT_U, "pct_u" },                 { WF_UNIT_F_OVERLONG, "overlong" },
    { WF_UNIT_F_BAD_UTF8, "bad_utf8" },           { WF_UNIT_F_CONTROL, "control" },
    { WF_UNIT_F_ENTITY, "entity" },               { WF_UNIT_F_UNICODE, "unicode" },
    { WF_UNIT_F_JSON_ESCAPE, "json_escape" },     { WF_UNIT_F_TRUNCATED, "truncated" },
    { WF_UNIT_F_CHUNK, "chunk" },                 { WF_UNIT_F_NAME_CUT, "name_cut" },
    { WF_UNIT_F_PERCENT, "percent" },             { WF_UNIT_F_SAFE, "safe" },
};

size_t wf_unit_flags_str(uint32_t flags, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < WF_ARRAY_LEN(flag_names); i++) {
        if (!(flags & flag_names[i].bit))
            continue;
        int k = snprintf(out + WF_MIN(w, cap), cap > w ? cap - w : 0, "%s%s", w ? "," : "", flag_names[i].name);
        w += (size_t)k;
    }
    if (!w)
        w = (size_t)snprintf(out, cap, "-");
    return w;
}

const char *wf_inspect_rflag_name(unsigned bit)
{
    static const char *const names[] = { "units_dropped", "bytes_cut", "body_cut", "json_invalid",
                                         "json_depth", "multipart_invalid", "multipart_parts" };
    return bit < WF_ARRAY_LEN(names) ? names[bit] : NULL;
}

/* ---- fast path ---- */

static bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static bool is_hex(unsigned char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* Words that are code on their own in some interpreter: SQL statements,
 * functions and time delays; shell commands; script sinks; prototype keys;
 * sensitive file names. A value or name with one of them as a whole letter run
 * goes to the model even when its charset is safe. Lower case, sorted (binary
 * search); compared ignoring case. */
typedef struct {
    const char *w;
    size_t n;
} word_t;
#define W(s) { s, sizeof(s) - 1 }

static const word_t deny_words[] = {
    W("alert"), W("alter"), W("ascii"), W("atob"), W("bash"), W("benchmark"), W("bfilename"), W("boot"), W("cat"),
    W("char"), W("chmod"), W("chr"), W("cmd"), W("cmdshell"), W("concat"), W("confirm"), W("constructor"),
    W("curl"), W("database"), W("dbms"), W("declare"), W("delay"), W("delete"), W("distinct"), W("document"),
    W("drop"), W("dumpfile"), W("echo"), W("etc"), W("eval"), W("exec"), W("execute"), W("exit"), W("expression"),
    W("extractvalue"), W("fromcharcode"), W("handler"), W("having"), W("htaccess"), W("htpasswd"), W("ifconfig"),
    W("iframe"), W("information"), W("insert"), W("ipconfig"), W("javascript"), W("livescript"), W("load"), W("ls"),
    W("nc"), W("ncat"), W("netcat"), W("netstat"), W("nslookup"), W("outfile"), W("passwd"), W("pg"), W("ping"),
    W("powershell"), W("procedure"), W("prompt"), W("proto"), W("prototype"), W("pwd"), W("rm"), W("schema"),
    W("script"), W("select"), W("sh"), W("shadow"), W("shutdown"), W("sleep"), W("substr"), W("substring"),
    W("sysinfo"), W("sysobjects"), W("systeminfo"), W("telnet"), W("tftp"), W("truncate"), W("uname"), W("union"),
    W("update"), W("updatexml"), W("utl"), W("vbscript"), W("version"), W("waitfor"), W("wget"), W("whoami"),
    W("win"), W("window"), W("xp"), W("xss"), W("zsh"),
};

static int word_cmp(const word_t *d, const char *w, size_t n)
{
    int c = memcmp(d->w, w, WF_MIN(d->n, n));
    return c ? c : (d->n > n) - (d->n < n);
}

static bool word_in(const word_t *list, size_t count, const char *w, size_t n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = word_cmp(&list[mid], w, n);
        if (!c)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* In paths only names of files that no site serves on purpose count. */
static const word_t deny_path_words[] = { W("cmdshell"), W("htaccess"), W("htpasswd"), W("passwd"), W("shadow"),
                                          W("whoami") };

static bool word_denied(const unsigned char *s, size_t n, bool whole, bool value, bool path)
{
    char w[24];
    /* event handler names (onload, onerror, onwebkitanimationiteration, ...) */
    if (value && n >= 5 && (s[0] | 0x20) == 'o' && (s[1] | 0x20) == 'n')
        return true;
    if (n >= sizeof(w))
        return false;
    for (size_t i = 0; i < n; i++)
        w[i] = (char)(s[i] | 0x20);
    w[n] = 0;
    if (path) {
        return word_in(deny_path_words, WF_ARRAY_LEN(deny_path_words), w, n);
    }
    if (word_in(deny_words, WF_ARRAY_LEN(deny_words), w, n))
        return true;
    /* a literal combined with something else is an expression: 1-true */
    if (!whole && (!strcmp(w, "true") || !strcmp(w, "false") || !strcmp(w, "null")))
        return true;
    return false;
}

/* Checks letter runs and hex literals shared by all rules. */
static bool words_ok(const unsigned char *s, size_t n, bool value, bool path)
{
    for (size_t i = 0; i < n;) {
        if (s[i] == '0' && i + 2 < n && (s[i + 1] | 0x20) == 'x' && is_hex(s[i + 2]))
            return false;
        if (!is_alpha(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && is_alpha(s[j]))
            j++;
        if (word_denied(s + i, j - i, i == 0 && j == n, value, path))
            return false;
        i = j;
    }
    return true;
}

/* Words that make an expression or a clause of words alone, with spaces and
 * no punctuation: SQL operators (1 or 1, 1 is not null, 1 div 0, 1 in users
 * in SQLite), clauses appended to a condition (order by 5, group by, limit,
 * offset, into), CASE expressions, literals; and commands that take words as
 * arguments (netsh firewall set opmode disable, net view, which gcc), beyond
 * those deny_words holds. A phrase with one of them as a
 * letter run goes to the model (as does any English sentence with "and",
 * "or", "is", "in": the phrase rule is for names, places and labels).
 * Lower case, sorted. */
static const word_t phrase_words[] = {
    W("against"), W("all"), W("and"), W("any"), W("as"), W("awk"), W("base64"), W("between"), W("binary"),
    W("bitsadmin"), W("by"), W("case"), W("certutil"), W("chown"), W("collate"), W("crontab"), W("cscript"),
    W("csh"), W("dash"), W("del"), W("dir"), W("div"), W("else"), W("end"), W("env"), W("escape"), W("exists"),
    W("export"), W("false"), W("find"), W("for"), W("from"), W("ftp"), W("gcc"), W("glob"), W("grep"), W("group"),
    W("halt"), W("id"), W("in"), W("into"), W("is"), W("join"), W("kill"), W("killall"), W("ksh"), W("like"),
    W("limit"), W("match"), W("mkdir"), W("mod"), W("mount"), W("mshta"), W("net"), W("netsh"), W("nmap"),
    W("node"), W("nohup"), W("not"), W("null"), W("offset"), W("on"), W("or"), W("order"), W("perl"), W("php"),
    W("python"), W("reboot"), W("reg"), W("regexp"), W("regsvr"), W("rlike"), W("ruby"), W("rundll"), W("sc"),
    W("schtasks"), W("scp"), W("sed"), W("similar"), W("some"), W("sounds"), W("ssh"), W("su"), W("sudo"), W("tar"),
    W("taskkill"), W("tasklist"), W("tcsh"), W("then"), W("true"), W("unknown"), W("useradd"), W("usermod"),
    W("when"), W("where"), W("which"), W("wmic"), W("wscript"), W("xor"), W("xterm"),
};

/* A Latin-1 letter in UTF-8 (U+00C0..U+00FF but the signs U+00D7 and U+00F7)
 * at s[i]: 2 (its length), or 0. */
static size_t latin1_letter(const unsigned char *s, size_t i, size_t n)
{
    if (s[i] != 0xc3 || i + 1 >= n || s[i + 1] < 0x80 || s[i + 1] > 0xbf || s[i + 1] == 0x97 || s[i + 1] == 0xb7)
        return 0;
    return 2;
}

/* Phrase rule, for a text with a space or a non-ASCII byte: words of ASCII
 * letters, digits and Latin-1 letters (names, places, labels: "Jamón
 * Ibérico", "Pasar por caja", "Calle Soria 164", "Ávila") separated by single
 * spaces, no space at either end, no other byte; every
 * ASCII letter run passes words_ok (so no listed word, no on... handler, no
 * true/false/null) and none is a phrase word. Without punctuation a phrase
 * cannot close a quote, start a tag, a path, a command or a template: only
 * SQL in a numeric context reads words alone, and phrase_words holds what it
 * can do with them. */
static bool phrase_safe(const unsigned char *s, size_t n)
{
    if (!n || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n;) {
        size_t k;
        if (is_alnum(s[i])) {
            i++;
        } else if (s[i] == ' ' && s[i - 1] != ' ') {
            i++;
        } else if ((k = latin1_letter(s, i, n))) {
            i += k;
        } else {
            return false;
        }
    }
    if (!words_ok(s, n, true, false))
        return false;
    for (size_t i = 0; i < n;) {
        if (!is_alpha(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        char w[16];
        while (j < n && is_alpha(s[j]))
            j++;
        if (j - i < sizeof(w)) {
            for (size_t t = i; t < j; t++)
                w[t - i] = (char)(s[t] | 0x20);
            if (word_in(phrase_words, WF_ARRAY_LEN(phrase_words), w, j - i))
                return false;
        }
        i = j;
    }
    return true;
}

/* Value rule: [A-Za-z0-9_.-], '.' only between digits (numbers, versions),
 * '-' only between letters or digits (no leading '-', no "--"), and not in
 * a value of digits and '-' alone (5739-5738 is arithmetic: a blind SQL
 * injection probe). */
static bool value_safe(const unsigned char *s, size_t n)
{
    bool letter = false, dash = false;
    for (size_t i = 0; i < n; i++) {
        letter |= is_alpha(s[i]);
        dash |= s[i] == '-';
    }
    if (dash && !letter)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (is_alnum(c) || c == '_')
            continue;
        if (c == '.' && i > 0 && i + 1 < n && is_digit(s[i - 1]) && is_digit(s[i + 1]))
            continue;
        if (c == '-' && i > 0 && i + 1 < n && is_alnum(s[i - 1]) && is_alnum(s[i + 1]))
            continue;
        return false;
    }
    return words_ok(s, n, true, false);
}

/* Path rule: [A-Za-z0-9_.~/-], no "..", no "//", no segment that starts
 * with '.' (.git, .env), no '-' at a segment start. */
static bool path_safe(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        bool seg_start = i == 0 || s[i - 1] == '/';
        if (is_alnum(c) || c == '_' || c == '~')
            continue;
        if (c == '/' && !(i > 0 && s[i - 1] == '/'))
            continue;
        if ((c == '.' || c == '-') && !seg_start && !(c == '.' && s[i - 1] == '.'))
            continue;
        return false;
    }
    return words_ok(s, n, false, true);
}

/* Name rule: [A-Za-z0-9_.-] and the brackets of a[b][0] / JSON paths. */
static bool name_safe(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (is_alnum(c) || c == '_' || c == '[' || c == ']')
            continue;
        if ((c == '.' || c == '-') && i > 0 && s[i - 1] != '.' && s[i - 1] != '-')
            continue;
        return false;
    }
    return words_ok(s, n, false, false);
}

bool wf_inspect_text_is_safe(wf_unit_kind_t kind, wf_str_t text, size_t max_len)
{
    const unsigned char *s = (const unsigned char *)text.p;
    if (kind == WF_UNIT_PATH || kind == WF_UNIT_SEGMENT)
        return text.n <= 4 * max_len && path_safe(s, text.n);
    if (text.n > max_len)
        return false;
    for (size_t i = 0; i < text.n; i++)
        if (s[i] == ' ' || s[i] >= 0x80)
            return phrase_safe(s, text.n);
    return value_safe(s, text.n);
}

bool wf_unit_is_safe(const wf_inspect_conf_t *conf, const wf_unit_t *u)
{
    if (u->flags & WF_UNIT_F_ANOMALY_MASK)
        return false;
    if (u->kind == WF_UNIT_BODY)
        return false;
    if (u->name.n > conf->safe_max_len || !name_safe((const unsigned char *)u->name.p, u->name.n))
        return false;
    return wf_inspect_text_is_safe(u->kind, u->text, conf->safe_max_len);
}

/* ---- model text ---- */

size_t wf_unit_text(const wf_unit_t *u, char *out, size_t cap)
{
    const char *kind = wf_unit_kind_name(u->kind);
    size_t kl = strlen(kind);
    size_t need = kl + (u->name.n ? 1 + u->name.n : 0) + 2 + u->text.n;
    size_t w = 0;
#define APPEND(p, n)                                                                                               \
    do {                                                                                                           \
        size_t k_ = WF_MIN((size_t)(n), cap > w ? cap - w : 0);                                                    \
        if (k_)                                                                                                    \
            memcpy(out + w, (p), k_);                                                                              \
        w += k_;                                                                                                   \
    } while (0)
    APPEND(kind, kl);
    if (u->name.n) {
        APPEND(" ", 1);
        APPEND(u->name.p, u->name.n);
    }
    APPEND(": ", 2);
    APPEND(u->text.p, u->text.n);
#undef APPEND
    return need;
}

size_t wf_unit_text_max(const wf_inspect_conf_t *conf)
{
    return 16 + conf->max_name_bytes + 2 + conf->max_unit_bytes;
}
